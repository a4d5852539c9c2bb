"""Building and loading open_clip models without network access.

* :func:`create_clip` builds an open_clip model by name with config overrides (``**model_kwargs``
  update the built-in config, e.g. a tiny ``vision_cfg``/``text_cfg``), randomly initialised or
  from *local* weights: a checkpoint file, a state dict, or a pretrained tag that is already in
  the local cache.
* A pretrained tag whose weights are not cached locally fails **before** open_clip is called,
  with a :class:`PretrainedWeightsUnavailable` that says where the weights would come from and
  how to provide them — instead of waiting on Hugging Face Hub retries without network.
* :func:`load_clip_weights` loads an open_clip checkpoint file (``{"state_dict": ...}`` written
  by ``open_clip_train``, with or without the DDP ``module.`` prefix; ``.safetensors``) or an
  in-memory state dict (an open_clip one, or a ``CLIPModule`` one whose keys start with
  ``model.``) into a model.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from lightly_unlearn.errors import PretrainedWeightsUnavailable
from lightly_unlearn.io import checkpoint_weights, load_checkpoint


def _hf_cached(repo_id: str, filename: str, cache_dir: str | None) -> str | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub ships with open_clip
        return None
    candidates = [filename]
    if filename.endswith((".bin", ".pth")):
        candidates.insert(0, filename[:-4] + ".safetensors")
    for name in candidates:
        path = try_to_load_from_cache(repo_id, name, cache_dir=cache_dir)
        if isinstance(path, str) and os.path.isfile(path):
            return path
    return None


def resolve_pretrained(model_name: str, pretrained: str, cache_dir: str | None = None) -> str:
    """A local file for ``pretrained`` (a path, or a tag whose weights are cached), else raise.

    Never touches the network: checks ``open_clip.list_pretrained()`` metadata, the Hugging Face
    cache and open_clip's URL cache (``~/.cache/clip``) only.
    """
    import open_clip
    from open_clip import pretrained as oc_pretrained

    if os.path.isfile(pretrained):
        return pretrained
    if model_name.startswith(("hf-hub:", "local-dir:")):
        raise PretrainedWeightsUnavailable(
            f"{model_name!r} names a remote/local-dir model; lightly-unlearn loads open_clip models "
            "offline from a checkpoint file: create the architecture by name and pass "
            "`checkpoint=` (or `pretrained=` a file path)."
        )
    cfg = oc_pretrained.get_pretrained_cfg(model_name, pretrained)
    if not cfg:
        tags = open_clip.list_pretrained_tags_by_model(model_name)
        raise PretrainedWeightsUnavailable(
            f"pretrained={pretrained!r} is neither an existing file nor a known open_clip tag for "
            f"{model_name!r} (known tags: {', '.join(tags) or 'none'})."
        )
    if cfg.get("file") and os.path.isfile(cfg["file"]):
        return cfg["file"]
    hf_hub = cfg.get("hf_hub", "")
    if hf_hub:
        repo_id, filename = os.path.split(hf_hub)
        found = _hf_cached(repo_id, filename or "open_clip_pytorch_model.bin", cache_dir)
        if found:
            return found
    url = cfg.get("url", "")
    if url:
        local = os.path.join(cache_dir or os.path.expanduser("~/.cache/clip"), os.path.basename(url))
        if os.path.isfile(local):
            return local
    source = f"hf-hub:{hf_hub}" if hf_hub else (url or "an unknown source")
    raise PretrainedWeightsUnavailable(
        f"open_clip weights {model_name}:{pretrained} are not in the local cache and would have to "
        f"be downloaded from {source}. This machine is treated as offline "
        f"(HF_HUB_OFFLINE={os.environ.get('HF_HUB_OFFLINE', 'unset')}), so nothing was attempted. "
        f"Download them on a machine with network access (open_clip.create_model({model_name!r}, "
        f"pretrained={pretrained!r}) fills the cache), copy the file here and pass its path as "
        "`pretrained=` or `checkpoint=`, or use pretrained=None for a random initialisation."
    )


def _strip_prefix(state_dict: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    if state_dict and all(k.startswith(prefix) for k in state_dict):
        return {k[len(prefix) :]: v for k, v in state_dict.items()}
    return dict(state_dict)


def load_clip_weights(
    model: nn.Module, checkpoint: str | os.PathLike | Mapping[str, Any], strict: bool = True
) -> Any:
    """Load an open_clip checkpoint file or a state dict into ``model``; returns the key report.

    Files go through ``open_clip.load_checkpoint`` (format conversion, positional-embedding
    resizing, ``module.`` prefix). A mapping may be a bare state dict, ``{"state_dict": ...}``
    (open_clip_train or a Lightning checkpoint dict of a :class:`CLIPModule`; its ``model.``
    prefix is removed).
    """
    import open_clip

    if isinstance(checkpoint, (str, os.PathLike)):
        path = Path(checkpoint)
        if not path.is_file():
            raise FileNotFoundError(f"open_clip checkpoint {str(path)!r} does not exist.")
        sd = load_checkpoint(path) if path.suffix == ".ckpt" else None
        if sd is None:
            return open_clip.load_checkpoint(model, str(path), strict=strict)
        checkpoint = sd
    if not isinstance(checkpoint, Mapping):
        raise TypeError(f"checkpoint must be a path or a state dict; got {type(checkpoint).__name__}.")
    state_dict = checkpoint_weights(checkpoint)
    state_dict = _strip_prefix(state_dict, "module.")
    if any(k.startswith("model.") for k in state_dict):  # a CLIPModule (Lightning) state dict
        state_dict = {k[6:]: v for k, v in state_dict.items() if k.startswith("model.")}
    if "logit_scale" in state_dict and state_dict["logit_scale"].shape != model.logit_scale.shape:
        state_dict["logit_scale"] = state_dict["logit_scale"].reshape(model.logit_scale.shape)
    return model.load_state_dict(state_dict, strict=strict)


def create_clip(
    model_name: str,
    pretrained: str | None = None,
    *,
    checkpoint: str | os.PathLike | Mapping[str, Any] | None = None,
    cache_dir: str | None = None,
    with_transforms: bool = True,
    **model_kwargs: Any,
) -> Any:
    """``open_clip.create_model_and_transforms`` that never waits on the network.

    Args:
        model_name: a built-in open_clip name (``"ViT-B-32"``, ...) or one added with
            ``open_clip.add_model_config``.
        pretrained: ``None`` (random init), a local file, or a tag whose weights are already
            cached; an uncached tag raises :class:`PretrainedWeightsUnavailable` immediately.
        checkpoint: open_clip checkpoint file or state dict loaded after creation.
        with_transforms: return ``(model, preprocess_train, preprocess_val)``; else the model.
        **model_kwargs: config overrides (``embed_dim=32, vision_cfg={...}, text_cfg={...}``)
            and ``create_model`` options (``force_context_length``, ``output_dict``, ...).
    """
    import open_clip

    weights = None if pretrained is None else resolve_pretrained(model_name, pretrained, cache_dir)
    if with_transforms:
        model, preprocess_train, preprocess_val = open_clip.create_model_and_transforms(
            model_name, pretrained=weights, cache_dir=cache_dir, **model_kwargs
        )
    else:
        model = open_clip.create_model(model_name, pretrained=weights, cache_dir=cache_dir, **model_kwargs)
    if checkpoint is not None:
        load_clip_weights(model, checkpoint)
    return (model, preprocess_train, preprocess_val) if with_transforms else model


def create_tokenizer(model_name: str = "", context_length: int | None = None) -> Any:
    """open_clip's tokenizer for ``model_name`` (the wheel's BPE vocabulary: works offline).

    HF-tokenizer configs would download a vocabulary; they raise a clear error instead.
    """
    import open_clip

    cfg = open_clip.get_model_config(model_name) if model_name else None
    text_cfg = (cfg or {}).get("text_cfg", {})
    if text_cfg.get("hf_tokenizer_name"):
        raise PretrainedWeightsUnavailable(
            f"{model_name!r} uses the Hugging Face tokenizer {text_cfg['hf_tokenizer_name']!r}, "
            "which needs a download; pass a tokenizer object (e.g. open_clip.SimpleTokenizer) "
            "instead."
        )
    return open_clip.get_tokenizer(model_name, context_length=context_length)
