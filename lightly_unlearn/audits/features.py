"""Audit features: one clean pass and ``K`` seeded augmented passes per sample, computed once.

Every audit reads from a :class:`SplitFeatures` (one per split: retain sample, forget, holdout):

* ``clean`` ``(n, d)``: one forward pass on the deterministic ``eval_transform`` (linear probe,
  CMIA);
* ``views`` ``(n, K, d)``: ``K`` forward passes on random training augmentations (alignment
  score, EMIA, alignment matrices).

Augmentation ``k`` of sample ``key`` is drawn from a seed derived from ``(seed, split, key, k)``
(torch, NumPy and ``random`` are all seeded, as lightly's blur and solarisation use NumPy), so the
*same* augmentations are used before and after unlearning, on every device and in any batch
order. The global random state is restored afterwards: auditing does not perturb training.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from lightly_unlearn.data.views import split_item
from lightly_unlearn.roles import EmbedFn

#: What audits embed: ``"backbone"`` (flattened backbone features), ``"head"`` (projection-head
#: outputs) or a callable images -> embeddings.
EmbedSpec = str | EmbedFn
EMBED_NAMES = ("backbone", "head")

#: Split names and the small integers mixed into the augmentation and sampling seeds.
SPLIT_CODES = {"retain": 0, "forget": 1, "holdout": 2}


def split_code(split: str | int, default: int | None = None) -> int:
    """The integer of a split name (:data:`SPLIT_CODES`); an unknown name gives ``default``, or,
    without one, a code derived from its letters. Integers pass through."""
    if not isinstance(split, str):
        return int(split)
    if split in SPLIT_CODES:
        return SPLIT_CODES[split]
    return default if default is not None else sum(map(ord, split))


def check_embed_spec(spec: Any, what: str = "embed_fn") -> EmbedSpec:
    """``spec`` if it is ``"backbone"``, ``"head"`` or a callable; a clear error otherwise."""
    if callable(spec) or spec in EMBED_NAMES:
        return spec
    from lightly_unlearn.errors import ConfigurationError

    raise ConfigurationError(f"{what} must be 'backbone', 'head' or a callable; got {spec!r}.")


def resolve_embed_fn(spec: EmbedSpec, module: nn.Module, roles: Any = None) -> EmbedFn:
    """The images -> embeddings function that ``spec`` names for ``module``.

    ``"backbone"`` and ``"head"`` read the module's parts through ``roles`` (a ``ModuleRoles``;
    default: lightly's example attribute names); a callable is returned as is.
    """
    from lightly_unlearn.adapters import backbone_embed_fn, head_embed_fn

    spec = check_embed_spec(spec)
    if callable(spec):
        return spec
    return backbone_embed_fn(module, roles) if spec == "backbone" else head_embed_fn(module, roles)


@dataclass
class SplitFeatures:
    """Cached features of one split. ``keys`` identify samples (positions in the split's dataset)."""

    keys: Tensor
    targets: Tensor
    clean: Tensor | None = None
    views: Tensor | None = None

    def __len__(self) -> int:
        return len(self.keys)

    def subset(self, positions: Tensor | Sequence[int] | slice) -> SplitFeatures:
        """Rows ``positions`` of every cached tensor."""
        if not isinstance(positions, slice):
            positions = torch.as_tensor(positions, dtype=torch.long)
        return SplitFeatures(
            keys=self.keys[positions],
            targets=self.targets[positions],
            clean=None if self.clean is None else self.clean[positions],
            views=None if self.views is None else self.views[positions],
        )


@dataclass
class AuditInputs:
    """What every audit receives: cached features of each split, plus a per-run scratch cache.

    ``cache`` lets audits share work within one run (CMIA reuses the linear probe's fit).
    """

    retain: SplitFeatures | None
    forget: SplitFeatures
    holdout: SplitFeatures | None = None
    cache: dict[str, Any] = field(default_factory=dict)


def view_seed(seed: int, split: str | int, key: int, view: int) -> int:
    """The seed of augmentation ``view`` of sample ``key``: independent of batch, rank and order."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, split_code(split), int(key), int(view)])
    return int(state.generate_state(1)[0])


@contextlib.contextmanager
def preserved_rng() -> Iterator[None]:
    """Restore torch (CPU), NumPy and ``random`` global states on exit."""
    np_state, py_state = np.random.get_state(), random.getstate()
    with torch.random.fork_rng(devices=[]):
        try:
            yield
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)


def seeded_call(transform: Callable[[Any], Tensor], image: Any, seed: int) -> Tensor:
    """``transform(image)`` with every global RNG seeded by ``seed`` (call inside :func:`preserved_rng`)."""
    torch.default_generator.manual_seed(seed)  # CPU only: torch.manual_seed also seeds CUDA (slow)
    np.random.seed(seed % 2**32)
    random.seed(seed)
    return transform(image)


@contextlib.contextmanager
def eval_mode(module: nn.Module | None) -> Iterator[None]:
    """``module.eval()`` and ``torch.no_grad()`` inside, the previous training flags restored after."""
    if module is None:
        with torch.no_grad():
            yield
        return
    flags = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for m, was_training in flags:
            m.training = was_training


def _as_target(target: Any) -> int:
    if isinstance(target, Tensor):
        return int(target.item()) if target.numel() == 1 else -1
    try:
        return int(target)
    except (TypeError, ValueError):
        return -1


def _embed(embed_fn: EmbedFn, batch: list[Tensor], device: torch.device | str | None) -> Tensor:
    images = torch.stack(batch)
    if device is not None:
        images = images.to(device)
    out = embed_fn(images)
    if not isinstance(out, Tensor) or out.dim() < 2 or out.shape[0] != len(batch):
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(
            f"The embedding function returned {shape} for a batch of {len(batch)} images; expected "
            f"a tensor of shape ({len(batch)}, dim). Make it map images (B, C, H, W) to one "
            "embedding per image (e.g. `lambda x: model.backbone(x).flatten(1)`)."
        )
    out = out.detach().flatten(1).float().cpu()
    if not torch.isfinite(out).all():
        raise ValueError("The embedding function returned NaN or infinite values.")
    return out


class _AuditViews(Dataset):
    """Item ``i``: the clean tensor and the ``K`` seeded views of ``dataset[keys[i]]``, made from
    one decoded image (runs in DataLoader workers: each image is read and decoded once)."""

    def __init__(self, dataset, keys, eval_transform, view_transform, num_views, seed, split):
        self.dataset, self.keys = dataset, [int(k) for k in keys]
        self.eval_transform, self.view_transform = eval_transform, view_transform
        self.num_views, self.seed, self.split = num_views, seed, split

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i: int) -> tuple[int, Any, Any]:
        key = self.keys[i]
        image, target = split_item(self.dataset[key])
        tensors = []
        if self.eval_transform is not None:
            tensors.append(self.eval_transform(image))
        if self.view_transform is not None:
            # seeds every global RNG: the caller restores the main process's (preserved_rng)
            tensors += [
                seeded_call(self.view_transform, image, view_seed(self.seed, self.split, key, k))
                for k in range(self.num_views)
            ]
        return _as_target(target), tensors, key


def _collate(items: list) -> tuple[list[int], list[list[Tensor]], list[int]]:
    return [t for t, _, _ in items], [x for _, x, _ in items], [k for _, _, k in items]


def extract_features(
    embed_fn: EmbedFn,
    dataset: Dataset,
    *,
    keys: Sequence[int] | Tensor | None = None,
    eval_transform: Callable[[Any], Tensor] | None = None,
    view_transform: Callable[[Any], Tensor] | None = None,
    num_views: int = 10,
    seed: int = 0,
    split: str = "retain",
    batch_size: int = 256,
    module: nn.Module | None = None,
    device: torch.device | str | None = None,
    progress: Callable[[int], Any] | None = None,
    num_workers: int = 0,
) -> SplitFeatures:
    """Embed ``dataset[keys]`` once cleanly and ``num_views`` times augmented, in one sweep.

    Each image is read and decoded once; its clean tensor and its ``num_views`` seeded views
    are all made from the decoded image (in ``num_workers`` DataLoader worker processes when
    ``num_workers > 0``), and the clean and augmented tensors of a group of samples go through
    the model together, in forward passes of at most ``batch_size`` images.

    Args:
        embed_fn: images ``(B, C, H, W)`` -> embeddings ``(B, d)`` (backbone features by default,
            see :func:`lightly_unlearn.adapters.backbone_embed_fn`).
        dataset: map-style dataset of raw items ``(image, target, ...)`` (or bare images).
        keys: which positions to embed (default: all). Keys seed the augmentations.
        eval_transform: deterministic image -> tensor; ``None`` skips the clean pass.
        view_transform: one random training augmentation, image -> tensor; ``None`` skips the
            ``num_views`` augmented passes.
        module: put in eval mode (and back) around the passes; ``None`` for black boxes.
        progress: called with the number of images embedded after each batch (e.g. tqdm.update).
        num_workers: DataLoader worker processes for reading and transforming images (as the
            training loader's ``num_workers``); 0 reads in this process.
    """
    if eval_transform is None and view_transform is None:
        raise ValueError("Nothing to compute: pass eval_transform and/or view_transform.")
    if view_transform is not None and num_views < 2:
        raise ValueError(f"num_views must be >= 2 for alignment scores; got {num_views}.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size}.")
    keys = torch.arange(len(dataset)) if keys is None else torch.as_tensor(keys, dtype=torch.long)
    keys = keys.flatten()
    if len(keys) == 0:
        raise ValueError(f"The {split} split is empty: there is nothing to audit.")
    n_clean = int(eval_transform is not None)
    n_views = num_views if view_transform is not None else 0
    per_sample = n_clean + n_views
    source = _AuditViews(dataset, keys.tolist(), eval_transform, view_transform, num_views, seed, split)
    targets, clean, views = [], [], []
    with eval_mode(module), preserved_rng():  # DataLoader draws a base seed from torch's RNG
        loader = torch.utils.data.DataLoader(
            source,
            batch_size=max(1, batch_size // per_sample),
            shuffle=False,
            num_workers=int(num_workers),
            collate_fn=_collate,
        )
        for batch_targets, tensors, _ in loader:
            b = len(tensors)
            flat = [t for sample in tensors for t in sample]  # sample-major: clean, view 0..K-1
            out = torch.cat([
                _embed(embed_fn, flat[i : i + batch_size], device)
                for i in range(0, len(flat), batch_size)
            ]).reshape(b, per_sample, -1)  # fmt: skip
            targets += batch_targets
            if n_clean:
                clean.append(out[:, 0])
            if n_views:
                views.append(out[:, n_clean:])
            if progress is not None:
                progress(len(flat))
    return SplitFeatures(
        keys=keys,
        targets=torch.as_tensor(targets, dtype=torch.long),
        clean=torch.cat(clean) if clean else None,
        views=torch.cat(views) if views else None,
    )


def gather_split(
    features: SplitFeatures, all_gather: Callable[[Tensor], Tensor], world_size: int
) -> SplitFeatures:
    """Gather a split's features from every rank and drop duplicated keys (sampler padding).

    ``all_gather`` maps a rank's tensor ``(m, ...)`` to ``(world_size, m, ...)`` (as
    ``trainer.strategy.all_gather`` does); every rank must hold the same ``m`` (pad by repeating
    a key). Rows are returned sorted by key, each key once.
    """
    if world_size <= 1:
        return dedupe(features)

    def gathered(t: Tensor | None) -> Tensor | None:
        if t is None:
            return None
        return all_gather(t).reshape(-1, *t.shape[1:]).cpu()

    merged = SplitFeatures(
        keys=gathered(features.keys),
        targets=gathered(features.targets),
        clean=gathered(features.clean),
        views=gathered(features.views),
    )
    return dedupe(merged)


def dedupe(features: SplitFeatures) -> SplitFeatures:
    """Keep the first row of every key, rows sorted by key."""
    keys = features.keys.cpu()
    order = torch.argsort(keys, stable=True)
    sorted_keys = keys[order]
    first = torch.ones_like(sorted_keys, dtype=torch.bool)
    first[1:] = sorted_keys[1:] != sorted_keys[:-1]
    return features.subset(order[first])


def shard(keys: Tensor, rank: int, world_size: int) -> Tensor:
    """This rank's share of ``keys`` (strided), padded by repetition to equal length on all ranks."""
    if world_size <= 1:
        return keys
    if len(keys) == 0:
        return keys
    per_rank = -(-len(keys) // world_size)
    padded = keys.repeat(-(-per_rank * world_size // len(keys)))[: per_rank * world_size]
    return padded[rank::world_size]
