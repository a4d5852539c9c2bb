"""A digest of model weights that does not depend on the file they are stored in.

A receipt binds the unlearned *weights*, not one file: a Lightning checkpoint from
``trainer.save_checkpoint``, a ``ModelCheckpoint`` file and ``torch.save(model.state_dict())``
hold the same weights in different bytes. :func:`state_dict_sha256` hashes the state dict
itself (``SCHEME``, also in ``docs/receipts.md``)::

    SHA-256( "lightly-unlearn-weights/1\\n"
             + for each name in sorted(state_dict) (Python string order):
                 JSON [name, dtype, shape] + "\\n"      e.g. ["backbone.0.weight","float32",[32,192]]
                 + the tensor's bytes: contiguous, row-major, little-endian )

``dtype`` is torch's name without ``torch.``. The bytes are taken on the CPU from a contiguous
copy, so device and memory layout do not change the digest; a NaN is its bit pattern. Every
entry must be a plain (strided) tensor: quantized, sparse or meta tensors and non-tensor
``_extra_state`` are refused rather than hashed in some guessed form.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from lightly_unlearn.errors import ConfigurationError, UntrustedCheckpointError
from lightly_unlearn.io import checkpoint_weights, load_checkpoint

__all__ = [
    "SCHEME",
    "check_digestible",
    "checkpoint_state_dict",
    "state_dict_sha256",
    "tensor_bytes",
    "tensor_content_sha256",
    "weights_record",
]

SCHEME = "lightly-unlearn-weights/1"


def _dtype_name(tensor: torch.Tensor) -> str:
    return str(tensor.dtype).removeprefix("torch.")


def _why_not_digestible(value: Any) -> str | None:
    if not isinstance(value, torch.Tensor):
        return f"a {type(value).__name__}, not a tensor"
    if value.is_quantized:
        return "a quantized tensor"
    if value.layout != torch.strided:
        return f"a {value.layout} tensor"
    if value.is_meta:
        return "a tensor on the meta device (no values)"
    if getattr(value, "is_nested", False):
        return "a nested tensor"
    return None


def check_digestible(state_dict: Mapping[str, Any], what: str = "the model's state_dict") -> None:
    """Raise :class:`ConfigurationError` naming the first entry :func:`state_dict_sha256` cannot
    hash (cheap: reads types only, so callers can refuse before any work)."""
    if not isinstance(state_dict, Mapping) or not state_dict:
        raise ConfigurationError(f"{what} holds no tensors; there are no weights to digest.")
    for name, value in state_dict.items():
        if not isinstance(name, str):
            raise ConfigurationError(f"{what} has a key {name!r:.60} that is not a string.")
        why = _why_not_digestible(value)
        if why is not None:
            raise ConfigurationError(
                f"{what}: entry {name!r} is {why}; the receipt's weights digest covers plain "
                "tensors only (see docs/receipts.md)."
            )


def tensor_bytes(tensor: torch.Tensor) -> memoryview:
    """The tensor's values as contiguous, row-major, little-endian bytes (on the CPU)."""
    t = tensor.detach().cpu().resolve_conj().resolve_neg().contiguous().reshape(-1)
    raw = t.view(torch.uint8).numpy()
    if sys.byteorder == "big" and t.element_size() > 1:  # swap each (real) component
        size = t.element_size() // (2 if t.is_complex() else 1)
        raw = raw.reshape(-1, size)[:, ::-1].copy().reshape(-1)
    return memoryview(raw)


def _header(name: str | None, tensor: torch.Tensor) -> bytes:
    fields = ([] if name is None else [name]) + [_dtype_name(tensor), list(tensor.shape)]
    return (json.dumps(fields, separators=(",", ":"), ensure_ascii=True) + "\n").encode("ascii")


def state_dict_sha256(state_dict: Mapping[str, torch.Tensor]) -> str:
    """Hex SHA-256 of ``state_dict`` in the encoding of the module docstring."""
    check_digestible(state_dict)
    digest = hashlib.sha256((SCHEME + "\n").encode("ascii"))
    for name in sorted(state_dict):
        tensor = state_dict[name]
        digest.update(_header(name, tensor))
        digest.update(tensor_bytes(tensor))
    return digest.hexdigest()


def tensor_content_sha256(tensor: torch.Tensor) -> bytes:
    """SHA-256 (raw 32 bytes) of one tensor: JSON ``[dtype, shape]``, a newline, its bytes.

    The content hash of a forget item that is a tensor or an array (see
    :mod:`lightly_unlearn.forget_commitment`).
    """
    why = _why_not_digestible(tensor)
    if why is not None:
        raise ConfigurationError(f"cannot hash {why}.")
    digest = hashlib.sha256(_header(None, tensor))
    digest.update(tensor_bytes(tensor))
    return digest.digest()


def weights_record(state_dict: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """The receipt's ``weights`` field: scheme, SHA-256, number of tensors and of values."""
    return {
        "scheme": SCHEME,
        "sha256": state_dict_sha256(state_dict),
        "num_tensors": len(state_dict),
        "num_elements": int(sum(t.numel() for t in state_dict.values())),
    }


def checkpoint_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The weights held by a checkpoint file, loaded with ``torch.load(weights_only=True)``.

    Accepts a Lightning checkpoint (its ``state_dict``: ``trainer.save_checkpoint``,
    ``ModelCheckpoint``) or a plain state dict (``torch.save(model.state_dict(), path)``).

    Raises:
        ConfigurationError: The file is missing, cannot be loaded safely, or holds no state dict;
            the message names the file and what to do.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigurationError(f"checkpoint {path}: no such file.")
    try:
        data = load_checkpoint(path, mmap=True)  # read on use: large files need no copy
    except UntrustedCheckpointError as err:
        raise ConfigurationError(
            f"checkpoint {path} cannot be loaded with torch.load(weights_only=True) (it holds "
            "pickled Python objects, which could run code). Save the weights alone, "
            "torch.save(model.state_dict(), 'weights.pt'), and check that file."
        ) from err
    except Exception as err:  # torch raises UnpicklingError, RuntimeError, EOFError, ... on junk
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigurationError(
            f"checkpoint {path} is not a readable torch checkpoint ({first:.200})."
        ) from err
    state = checkpoint_weights(data)
    if not isinstance(state, Mapping) or not state or not all(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        raise ConfigurationError(
            f"checkpoint {path} holds no state dict (expected a Lightning checkpoint with a "
            "'state_dict' entry, or the dict that torch.save(model.state_dict(), path) writes)."
        )
    check_digestible(state, what=f"checkpoint {path}")
    return dict(state)
