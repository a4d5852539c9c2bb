"""CLIP audit features: one image pass and one caption pass per pair, computed once.

CLIP audits read image *and* text embeddings, which the image-only feature cache
(:class:`~lightly_unlearn.audits.features.SplitFeatures`) does not hold. :func:`compute_clip_inputs`
embeds a seeded sample of each split's pairs (``(image, caption[, target])`` items) with the
model's deterministic image transform and its tokenizer, plus — when class names and prompt
templates are given — one zero-shot text embedding per class (the mean of its unit-normalised
template embeddings, renormalised, as ``open_clip.build_zero_shot_classifier`` does). The result
is an :class:`AuditInputs` whose ``cache["clip"]`` is a :class:`CLIPFeatures` and whose splits
also carry the image features as ``clean`` features, so the image-side audits that read clean
features (linear probe, CMIA) can run on the same pass.

Under multi-device training each rank embeds a strided shard of every split, as the image audits
do (:func:`~lightly_unlearn.audits.features.shard`); the shards are gathered, de-duplicated by
key and put back in the seeded sample order, so every rank ends with the same features as one
process would compute.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from lightly_unlearn.audits.features import AuditInputs, SplitFeatures, dedupe, eval_mode, shard
from lightly_unlearn.audits.runner import sample_keys
from lightly_unlearn.data.views import split_pair
from lightly_unlearn.errors import AuditInputError

CLIP_CACHE_KEY = "clip"


@dataclass
class PairFeatures:
    """Unit-normalised embeddings of ``n`` image–caption pairs of one split.

    ``caption_ids[i]`` numbers distinct captions within the split (equal ids = identical token
    sequences): retrieval counts retrieving an identical caption as correct.
    """

    keys: Tensor
    targets: Tensor
    image: Tensor
    text: Tensor
    caption_ids: Tensor
    #: The captions' token rows, kept by :func:`embed_pairs` so that shards can be merged and their
    #: captions numbered over the whole split; :func:`gather_pairs` drops them.
    tokens: Tensor | None = None

    def __len__(self) -> int:
        return len(self.keys)

    def subset(self, positions: Tensor | Sequence[int] | slice) -> PairFeatures:
        if not isinstance(positions, slice):
            positions = torch.as_tensor(positions, dtype=torch.long)
        return PairFeatures(
            self.keys[positions],
            self.targets[positions],
            self.image[positions],
            self.text[positions],
            self.caption_ids[positions],
            None if self.tokens is None else self.tokens[positions],
        )

    def pair_scores(self) -> Tensor:
        """``cos(image_i, text_i)``: the CLIP alignment score of each pair."""
        return (self.image * self.text).sum(-1)


@dataclass
class CLIPFeatures:
    forget: PairFeatures
    retain: PairFeatures | None = None
    holdout: PairFeatures | None = None
    class_text: Tensor | None = None
    classnames: list[str] | None = None

    def splits(self) -> dict[str, PairFeatures]:
        """Available splits by their report names (``test`` is the holdout)."""
        out = {"forget": self.forget}
        if self.retain is not None:
            out["retain"] = self.retain
        if self.holdout is not None:
            out["test"] = self.holdout
        return out


def clip_features(inputs: AuditInputs, audit_name: str) -> CLIPFeatures:
    """The CLIP features of ``inputs`` or an :class:`AuditInputError` saying how to compute them."""
    feats = inputs.cache.get(CLIP_CACHE_KEY)
    if not isinstance(feats, CLIPFeatures):
        raise AuditInputError(
            f"The {audit_name!r} audit reads image and caption embeddings: build its inputs with "
            "lightly_unlearn.audits.clip_features.compute_clip_inputs(module, forget=..., "
            "retain=..., holdout=..., image_transform=..., tokenizer=...)."
        )
    return feats


def _caption_ids(tokens: Tensor) -> Tensor:
    _, inverse = torch.unique(tokens, dim=0, return_inverse=True)
    return inverse


@torch.no_grad()
def embed_pairs(
    encode_image: Callable[[Tensor], Tensor],
    encode_text: Callable[[Tensor], Tensor],
    dataset: Dataset,
    keys: Sequence[int] | Tensor,
    image_transform: Callable[[Any], Tensor],
    tokenizer: Callable[[list[str]], Tensor],
    batch_size: int = 256,
    device: torch.device | str | None = None,
) -> PairFeatures:
    """Embed ``dataset[keys]`` pairs: one deterministic image pass and one caption pass (the
    token rows are kept in ``tokens``)."""
    keys = torch.as_tensor(keys, dtype=torch.long).flatten()
    if len(keys) == 0:
        raise AuditInputError("A split to audit is empty.")
    images, texts, tokens, targets = [], [], [], []
    for start in range(0, len(keys), batch_size):
        chunk = keys[start : start + batch_size].tolist()
        items = [split_pair(dataset[k]) for k in chunk]
        x = torch.stack([image_transform(image) for image, _, _ in items])
        t = tokenizer([caption for _, caption, _ in items])
        if device is not None:
            x, t = x.to(device), t.to(device)
        images.append(F.normalize(encode_image(x).float(), dim=-1).cpu())
        texts.append(F.normalize(encode_text(t).float(), dim=-1).cpu())
        tokens.append(t.cpu())
        targets.extend(int(target) if target is not None else -1 for _, _, target in items)
    return PairFeatures(
        keys=keys,
        targets=torch.as_tensor(targets, dtype=torch.long),
        image=torch.cat(images),
        text=torch.cat(texts),
        caption_ids=_caption_ids(torch.cat(tokens)),
        tokens=torch.cat(tokens),
    )


def gather_pairs(
    pairs: PairFeatures,
    order: Tensor,
    all_gather: Callable[[Tensor], Tensor] | None = None,
    world_size: int = 1,
) -> PairFeatures:
    """Merge every rank's shard of a split (``all_gather`` as in
    :func:`~lightly_unlearn.audits.features.gather_split`): each key once, rows in ``order`` (the
    split's sampled keys), captions numbered over the whole split, tokens dropped."""
    if pairs.tokens is None:
        raise ValueError("gather_pairs needs the caption tokens that embed_pairs keeps.")
    if world_size > 1 and all_gather is None:
        raise ValueError("world_size > 1 needs all_gather (e.g. trainer.strategy.all_gather).")

    def gathered(t: Tensor) -> Tensor:
        if all_gather is None or world_size <= 1:
            return t
        return all_gather(t).reshape(-1, *t.shape[1:]).cpu()

    merged = dedupe(PairFeatures(*(gathered(t) for t in (
        pairs.keys, pairs.targets, pairs.image, pairs.text, pairs.caption_ids, pairs.tokens
    ))))  # fmt: skip
    merged = merged.subset(torch.searchsorted(merged.keys, order))  # keys are sorted by dedupe
    merged.caption_ids, merged.tokens = _caption_ids(merged.tokens), None
    return merged


@torch.no_grad()
def class_text_embeddings(
    encode_text: Callable[[Tensor], Tensor],
    tokenizer: Callable[[list[str]], Tensor],
    classnames: Sequence[str],
    templates: Sequence[str],
    device: torch.device | str | None = None,
) -> Tensor:
    """``(C, d)`` zero-shot weights: per class, the renormalised mean of its unit template embeddings.

    Templates use ``{name}`` (class name) and ``{label}`` (class index), or ``{}`` for the name.
    """
    weights = []
    for c, name in enumerate(classnames):
        prompts = [t.format(name, name=name, label=c) for t in templates]
        tok = tokenizer(prompts)
        if device is not None:
            tok = tok.to(device)
        emb = F.normalize(encode_text(tok).float(), dim=-1).mean(0)
        weights.append(F.normalize(emb, dim=-1).cpu())
    return torch.stack(weights)


def compute_clip_inputs(
    module: nn.Module,
    *,
    forget: Dataset,
    retain: Dataset | None = None,
    holdout: Dataset | None = None,
    image_transform: Callable[[Any], Tensor],
    tokenizer: Callable[[list[str]], Tensor] | None = None,
    classnames: Sequence[str] | None = None,
    templates: Sequence[str] | None = None,
    num_samples: int = 10_000,
    seed: int = 0,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    rank: int = 0,
    world_size: int = 1,
    all_gather: Callable[[Tensor], Tensor] | None = None,
) -> AuditInputs:
    """Embed each split's pairs once (seeded sample of ``num_samples``) for the CLIP audits.

    Args:
        module: a ``CLIPModule`` or an open_clip model (``encode_image``/``encode_text``); put in
            eval mode during the passes and restored after.
        forget, retain, holdout: datasets of ``(image, caption[, target])`` items (e.g. a
            ``ForgetRetainDataModule``'s ``forget``/``retain``/``holdout``).
        image_transform: deterministic image transform (open_clip's ``preprocess_val``).
        tokenizer: default ``module.tokenizer``.
        classnames, templates: enable zero-shot classification (``{name}``/``{label}``).
        rank, world_size, all_gather: under multi-device training, this rank embeds its shard of
            each split and ``all_gather`` (e.g. ``trainer.strategy.all_gather``) merges them;
            the class-name prompts are embedded on every rank (one batch per class).
    """
    tokenizer = tokenizer or getattr(module, "tokenizer", None)
    if tokenizer is None:
        raise AuditInputError("CLIP audits need a tokenizer: pass tokenizer= (open_clip.get_tokenizer).")
    if world_size > 1 and all_gather is None:
        raise ValueError("world_size > 1 needs all_gather (e.g. trainer.strategy.all_gather).")
    if device is None:
        try:
            device = next(module.parameters()).device
        except StopIteration:  # pragma: no cover
            device = None

    def one(split: str, dataset: Dataset | None) -> PairFeatures | None:
        if dataset is None:
            return None
        keys = sample_keys(len(dataset), num_samples, seed, split)
        mine = embed_pairs(
            module.encode_image, module.encode_text, dataset, shard(keys, rank, world_size),
            image_transform, tokenizer, batch_size, device,
        )
        return gather_pairs(mine, keys, all_gather, world_size)

    with eval_mode(module):
        feats = CLIPFeatures(forget=one("forget", forget), retain=one("retain", retain),
                             holdout=one("holdout", holdout))
        if classnames is not None:
            feats.classnames = list(classnames)
            feats.class_text = class_text_embeddings(
                module.encode_text, tokenizer, classnames, templates or ("a photo of a {name}",), device
            )

    def as_split(p: PairFeatures | None) -> SplitFeatures | None:
        return None if p is None else SplitFeatures(keys=p.keys, targets=p.targets, clean=p.image)

    inputs = AuditInputs(retain=as_split(feats.retain), forget=as_split(feats.forget),
                         holdout=as_split(feats.holdout))
    inputs.cache[CLIP_CACHE_KEY] = feats
    return inputs
