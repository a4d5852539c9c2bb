"""``CLIPModule``: a thin Lightning module around an open_clip model, trained with ``ClipLoss``.

open_clip trains outside Lightning (``open_clip_train``); this module reproduces its step so a
CLIP user can pretrain or fine-tune with a Lightning ``Trainer`` and then unlearn with the same
``UnlearnCallback`` and audits as SimCLR users:

* ``batch = ((images, tokens), targets, keys)`` as served by
  ``ForgetRetainDataModule(..., tokenizer=...)``;
* ``model(images, tokens)`` -> L2-normalised features and ``logit_scale.exp()``;
* ``criterion`` is ``open_clip.ClipLoss``, rebuilt in :meth:`setup` with the trainer's global
  rank and world size (open_clip reads them from its constructor, not from torch.distributed),
  ``local_loss=True, gather_with_grad=True`` by default (open_clip's recommended DDP setting);
* the logit scale is clamped to ``[0, ln 100]`` after every optimizer step, as open_clip does.

``CLIPModule`` is a ``lightning.pytorch.LightningModule`` (use ``lightning.pytorch.Trainer``);
``PLCLIPModule`` is the same class on ``pytorch_lightning`` (lightly's namespace, for
``pytorch_lightning.Trainer``). A Trainer rejects a module of the other namespace.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping
from typing import Any

import lightning.pytorch as L
import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from lightly_unlearn.clip.loading import create_clip, create_tokenizer, load_clip_weights

MAX_LOGIT_SCALE = math.log(100.0)


#: open_clip's SigLIP ``init_logit_bias`` (its model configs; ``CLIP.__init__`` defaults to none).
SIGLIP_LOGIT_BIAS = -10.0


def _init_text_tower(m: nn.Module) -> set[int]:
    """open_clip's own ``TextTransformer.init_parameters`` on a text tower, or on a ``CLIP``
    that holds the tower's parts as its own attributes (built-in text tower)."""
    from types import SimpleNamespace

    from open_clip.transformer import TextTransformer

    parts = SimpleNamespace(
        token_embedding=m.token_embedding,
        positional_embedding=m.positional_embedding,
        cls_emb=getattr(m, "cls_emb", None),
        transformer=m.transformer,
        text_projection=getattr(m, "text_projection", None),
    )
    TextTransformer.init_parameters(parts)
    return {id(p) for p in (parts.positional_embedding, parts.cls_emb, parts.text_projection)
            if isinstance(p, nn.Parameter)}  # fmt: skip


def _init_vision_tokens(m: nn.Module) -> set[int]:
    """A ViT tower's class / positional embeddings and projection, drawn as open_clip's
    ``VisionTransformer.__init__`` draws them (``width ** -0.5`` Gaussians; its
    ``init_parameters`` leaves them alone)."""
    scale = m.class_embedding.shape[-1] ** -0.5
    params = [m.class_embedding, m.positional_embedding]
    if isinstance(getattr(m, "proj", None), nn.Parameter):
        params.append(m.proj)
    for p in params:
        p.normal_(std=scale)
    return {id(p) for p in params}


def _init_logit_parameters(model: nn.Module) -> set[int]:
    """The logit scale (and SigLIP bias) at the constructor's defaults."""
    import inspect

    covered = set()
    if isinstance(getattr(model, "logit_scale", None), nn.Parameter):
        default = inspect.signature(type(model).__init__).parameters.get("init_logit_scale")
        value = default.default if default is not None else math.log(1 / 0.07)
        model.logit_scale.fill_(float(value))
        covered.add(id(model.logit_scale))
    if isinstance(getattr(model, "logit_bias", None), nn.Parameter):
        model.logit_bias.fill_(SIGLIP_LOGIT_BIAS)
        covered.add(id(model.logit_bias))
    return covered


def _not_reinitialised(model: nn.Module, covered: set[int]) -> list[str]:
    """Names of parameters neither a layer's ``reset_parameters`` nor the towers' init drew."""
    missed = []
    for name, p in model.named_parameters():
        if id(p) in covered:
            continue
        if "." not in name:
            missed.append(name)
            continue
        owner, leaf = name.rsplit(".", 1)
        if (not callable(getattr(model.get_submodule(owner), "reset_parameters", None))
                and leaf not in ("in_proj_weight", "in_proj_bias")
                and "token_embedding" not in name):  # fmt: skip
            missed.append(name)
    return missed


@torch.no_grad()
def init_open_clip_parameters(model: nn.Module) -> list[str]:
    """Re-initialise an open_clip ``CLIP`` / ``CustomTextCLIP`` in place, as at construction.

    Used by Retrain when the module was given a model object (no recipe to rebuild it). Calls
    ``reset_parameters`` of every layer and open_clip's own ``init_parameters`` of the towers
    (also for a ``CLIP`` whose text tower is built in), redraws the ViT class/positional
    embeddings and projection as open_clip's constructor does, and resets the logit scale to
    the constructor's default (``ln(1/0.07)``) and a SigLIP bias. Returns the names of
    parameters it could not re-initialise (a warning is raised for them).
    """
    covered: set[int] = set()
    for m in model.modules():
        if callable(getattr(m, "reset_parameters", None)) and m is not model:
            m.reset_parameters()
            covered.update(id(p) for p in m.parameters(recurse=False))
    for m in model.modules():
        init = getattr(m, "init_parameters", None)
        if callable(init) and m is not model:
            init()
        if hasattr(m, "class_embedding") and hasattr(m, "conv1"):
            covered |= _init_vision_tokens(m)
        elif hasattr(m, "token_embedding") and hasattr(m, "transformer"):
            covered |= _init_text_tower(m)
    covered |= _init_logit_parameters(model)
    missed = _not_reinitialised(model, covered)
    if missed:
        warnings.warn(
            f"Retrain could not re-initialise {len(missed)} parameter(s) of the open_clip model "
            f"({', '.join(missed[:5])}{', ...' if len(missed) > 5 else ''}); build CLIPModule from "
            "model_name/model_kwargs so it can rebuild the model from scratch.",
            stacklevel=2,
        )
    return missed


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """open_clip_train's split: no weight decay on gains, biases, embeddings of rank < 2, logit scale."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        exclude = p.ndim < 2 or "bn" in name or "ln" in name or "bias" in name or "logit_scale" in name
        (no_decay if exclude else decay).append(p)
    return [
        {"params": no_decay, "weight_decay": 0.0},
        {"params": decay, "weight_decay": weight_decay},
    ]


class _CLIPModuleBody:
    """Lightning wrapper of an open_clip model, trained with open_clip's ``ClipLoss``.

    Build it from a model object, or from a name and config overrides (then
    ``CLIPModule.load_from_checkpoint(path)`` can rebuild it without arguments)::

        module = CLIPModule(model_name="ViT-B-32", model_kwargs=dict(embed_dim=32, ...))
        module = CLIPModule(model, tokenizer)                   # an existing open_clip model
        module = CLIPModule(model_name="ViT-B-32", checkpoint="epoch_32.pt")   # offline weights

    Args:
        model: an open_clip model (``CLIP``/``CustomTextCLIP``). Omit to build from ``model_name``.
        tokenizer: texts -> ``LongTensor (n, context_length)``; default: open_clip's tokenizer for
            ``model_name`` with the model's context length.
        model_name: open_clip architecture name (built-in or added with ``add_model_config``).
        model_kwargs: config overrides for ``create_model`` (``embed_dim``, ``vision_cfg``, ...).
        pretrained: ``None``, a local weights file, or a *cached* tag (an uncached tag fails fast
            with ``PretrainedWeightsUnavailable``; nothing is downloaded). Not saved in hparams.
        checkpoint: open_clip checkpoint file or state dict loaded into the model. Not saved.
        lr, weight_decay, betas, eps: AdamW, with open_clip_train's no-decay parameter groups.
        local_loss, gather_with_grad, cache_labels: ``ClipLoss`` options.

    Attributes:
        model, tokenizer, criterion, preprocess_train, preprocess_val (the latter two only when
        built from ``model_name``; the module's image transforms, single view).
    """

    def __init__(
        self,
        model: nn.Module | None = None,
        tokenizer: Any = None,
        *,
        model_name: str | None = None,
        model_kwargs: Mapping[str, Any] | None = None,
        pretrained: str | None = None,
        checkpoint: str | os.PathLike | Mapping[str, Any] | None = None,
        lr: float = 5e-4,
        weight_decay: float = 0.1,
        betas: tuple[float, float] = (0.9, 0.98),
        eps: float = 1e-6,
        local_loss: bool = True,
        gather_with_grad: bool = True,
        cache_labels: bool = True,
    ) -> None:
        super().__init__()
        import open_clip

        self.save_hyperparameters(ignore=["model", "tokenizer", "pretrained", "checkpoint"])
        self.preprocess_train = self.preprocess_val = None
        if model is None:
            if model_name is None:
                raise TypeError("CLIPModule needs an open_clip `model` or a `model_name`.")
            model, self.preprocess_train, self.preprocess_val = create_clip(
                model_name, pretrained, **dict(model_kwargs or {})
            )
        else:
            if pretrained is not None:
                raise TypeError(
                    "`pretrained` only applies when CLIPModule builds the model; use checkpoint=."
                )
            # the model's own preprocessing (size, mean, std), as create_model_and_transforms does
            cfg = open_clip.get_model_preprocess_cfg(model)
            self.preprocess_train, self.preprocess_val = (
                open_clip.image_transform(cfg["size"], is_train=train, mean=cfg.get("mean"),
                                          std=cfg.get("std"))
                for train in (True, False)
            )
        if checkpoint is not None:
            load_clip_weights(model, checkpoint)
        if not hasattr(model, "encode_image") or not hasattr(model, "encode_text"):
            raise TypeError(
                f"model must be an open_clip model with encode_image/encode_text; got {type(model).__name__}."
            )
        self.model = model
        if tokenizer is None:
            tokenizer = create_tokenizer(model_name or "", getattr(model, "context_length", None))
        self.tokenizer = tokenizer
        # rank / world size are set from the trainer in setup()
        self.criterion = open_clip.ClipLoss(
            local_loss=local_loss, gather_with_grad=gather_with_grad, cache_labels=cache_labels
        )

    # -- distributed-aware loss --------------------------------------------------------------
    def setup(self, stage: str) -> None:
        """Give ``ClipLoss`` the trainer's global rank and world size.

        The criterion object is configured *in place* (``ClipLoss`` holds no parameters or
        buffers, only these attributes and a label cache), not replaced: a callback's patch of
        ``criterion.forward`` (``UnlearnCallback`` runs its ``setup`` before the module's) and
        references to the criterion stay valid.
        """
        trainer = self._trainer
        criterion = self.criterion
        criterion.rank = int(getattr(trainer, "global_rank", 0)) if trainer is not None else 0
        criterion.world_size = int(getattr(trainer, "world_size", 1)) if trainer is not None else 1
        criterion.local_loss = bool(self.hparams.local_loss)
        criterion.gather_with_grad = bool(self.hparams.gather_with_grad)
        criterion.cache_labels = bool(self.hparams.cache_labels)
        criterion.prev_num_logits = 0
        criterion.labels = {}

    # -- encoders (used by audits and by AC's extra caption) --------------------------------
    def forward(self, images: Tensor, texts: Tensor) -> Any:
        return self.model(images, texts)

    def encode_image(self, images: Tensor, normalize: bool = False) -> Tensor:
        return self.model.encode_image(images, normalize=normalize)

    def encode_text(self, texts: Tensor, normalize: bool = False) -> Tensor:
        return self.model.encode_text(texts, normalize=normalize)

    def tokenize(self, texts: list[str]) -> Tensor:
        return self.tokenizer(list(texts))

    @staticmethod
    def features(out: Any) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """``model(images, texts)`` output (tuple or dict) -> ``(image, text, scale, bias)``."""
        if isinstance(out, Mapping):
            return out["image_features"], out["text_features"], out["logit_scale"], out.get("logit_bias")
        bias = out[3] if len(out) > 3 else None
        return out[0], out[1], out[2], bias

    # -- training ------------------------------------------------------------------------------
    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        images, texts = batch[0]
        image_features, text_features, logit_scale, logit_bias = self.features(self(images, texts))
        if logit_bias is None:
            loss = self.criterion(image_features, text_features, logit_scale)
        else:
            loss = self.criterion(image_features, text_features, logit_scale, logit_bias)
        self.log("train_loss", loss, prog_bar=True, batch_size=images.shape[0])
        self.log("logit_scale", logit_scale.detach().mean(), batch_size=images.shape[0])
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> Tensor:
        images, texts = batch[0][0], batch[0][1]
        image_features, text_features, logit_scale, logit_bias = self.features(self(images, texts))
        args = (image_features, text_features, logit_scale) + ((logit_bias,) if logit_bias is not None else ())
        loss = self.criterion(*args)
        self.log("val_loss", loss, batch_size=images.shape[0], sync_dist=True)
        return loss

    def on_train_batch_end(self, *args: Any, **kwargs: Any) -> None:
        # open_clip_train clamps after every optimizer step; clamping again after a batch without
        # a step (gradient accumulation) changes nothing.
        with torch.no_grad():
            self.model.logit_scale.clamp_(0, MAX_LOGIT_SCALE)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        hp = self.hparams
        return torch.optim.AdamW(
            _param_groups(self.model, hp.weight_decay), lr=hp.lr, betas=tuple(hp.betas), eps=hp.eps
        )

    # -- Retrain --------------------------------------------------------------------------------
    @torch.no_grad()
    def reinitialise_parameters(self) -> None:
        """Fresh weights, as a new model would have (``UnlearnCallback(method="retrain")``).

        Built from ``model_name``: a new model is created from the same config and its weights
        copied in (exactly open_clip's initialisation). Given a model object: see
        :func:`init_open_clip_parameters`.
        """
        name = self.hparams.get("model_name")
        if name is not None:
            fresh = create_clip(name, None, with_transforms=False, **dict(self.hparams.get("model_kwargs") or {}))
            self.model.load_state_dict(fresh.state_dict())
        else:
            init_open_clip_parameters(self.model)


class CLIPModule(_CLIPModuleBody, L.LightningModule):
    __doc__ = _CLIPModuleBody.__doc__ + "\n    Namespace: ``lightning.pytorch`` (train with ``lightning.pytorch.Trainer``).\n"


class PLCLIPModule(_CLIPModuleBody, pl.LightningModule):
    __doc__ = _CLIPModuleBody.__doc__ + "\n    Namespace: ``pytorch_lightning`` (train with ``pytorch_lightning.Trainer``).\n"
