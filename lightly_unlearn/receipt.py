"""Unlearning receipts: a JSON record of what was removed, how, and from which weights.

A receipt lets the model owner show a data owner (or an auditor) which forget set was unlearned,
with which method and hyper-parameters, starting from which checkpoint and producing which
checkpoint, together with the audits run before and after. Files are identified by SHA-256 of
their bytes; the forget set by the SHA-256 of its sorted positions written as ASCII
``"3,17,42"`` (:func:`lightly_unlearn.data.datamodule.forget_set_sha256`). The receipt carries
the SHA-256 of its own canonical JSON (``receipt_sha256``), so an edited receipt is detected.

A receipt is evidence about *files*, not a proof of forgetting: the audits in it are the
evidence about the model's behaviour.
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Mapping
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from lightly_unlearn.io import atomic_write_json, sha256_bytes, sha256_file

FORMAT = "lightly-unlearn-receipt/1"
FORGET_HASH_OF = "sha256 of the sorted forget positions joined by ',' (ASCII), e.g. '3,17,42'"
_PACKAGES = ("lightly-unlearn", "torch", "lightly", "lightning", "pytorch-lightning", "open_clip_torch")


class ReceiptError(ValueError):
    """A receipt cannot be read or is not a lightly-unlearn receipt."""


def now() -> str:
    """UTC timestamp, ISO 8601 with seconds."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def library_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def file_record(path: str | os.PathLike | None) -> dict[str, Any] | None:
    """``{"path", "sha256", "bytes"}`` of an existing file, ``None`` for no path."""
    if path is None:
        return None
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Cannot hash {path}: no such file.")
    return {"path": str(path), "sha256": sha256_file(path), "bytes": path.stat().st_size}


def _canonical(receipt: Mapping[str, Any]) -> bytes:
    body = {k: v for k, v in receipt.items() if k != "receipt_sha256"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def seal(receipt: dict[str, Any]) -> dict[str, Any]:
    """Add ``receipt_sha256``: the SHA-256 of the receipt's canonical JSON without that field."""
    receipt = json.loads(json.dumps(receipt, allow_nan=False))  # plain JSON types only
    receipt["receipt_sha256"] = sha256_bytes(_canonical(receipt))
    return receipt


def build_receipt(
    *,
    method: str,
    hyperparameters: Mapping[str, Any],
    forget_sha256: str,
    num_forget: int,
    num_samples: int,
    input_checkpoint: Mapping[str, Any] | None = None,
    output_checkpoint: Mapping[str, Any] | None = None,
    audits: Mapping[str, Any] | None = None,
    training: Mapping[str, Any] | None = None,
    started_at: str | None = None,
    finished_at: str | None = None,
) -> dict[str, Any]:
    """Assemble and seal a receipt (see module docstring for the fields)."""
    return seal(
        {
            "format": FORMAT,
            "method": method,
            "hyperparameters": dict(hyperparameters),
            "forget_set": {
                "sha256": forget_sha256,
                "hash_of": FORGET_HASH_OF,
                "num_forget": int(num_forget),
                "num_samples": int(num_samples),
            },
            "input_checkpoint": None if input_checkpoint is None else dict(input_checkpoint),
            "output_checkpoint": None if output_checkpoint is None else dict(output_checkpoint),
            "audits": None if audits is None else dict(audits),
            "training": dict(training or {}),
            "versions": library_versions(),
            "started_at": started_at,
            "finished_at": finished_at or now(),
        }
    )


def write_receipt(path: str | os.PathLike, receipt: Mapping[str, Any]) -> Path:
    """Write atomically (temporary file + ``os.replace``)."""
    return atomic_write_json(path, receipt)


def read_receipt(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    try:
        receipt = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise ReceiptError(f"No receipt at {path}.") from err
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ReceiptError(f"{path} is not a readable JSON receipt: {err}") from err
    if not isinstance(receipt, dict) or receipt.get("format") != FORMAT:
        raise ReceiptError(
            f"{path} is not a lightly-unlearn receipt (expected \"format\": \"{FORMAT}\")."
        )
    return receipt


def verify_receipt(
    receipt: Mapping[str, Any] | str | os.PathLike, checkpoint: str | os.PathLike
) -> tuple[bool, str]:
    """Check that ``checkpoint`` is the receipt's output checkpoint and the receipt is intact.

    Returns ``(ok, message)``; the message says what matched or what did not.
    """
    if not isinstance(receipt, Mapping):
        receipt = read_receipt(receipt)
    sealed = receipt.get("receipt_sha256")
    if sealed != sha256_bytes(_canonical(receipt)):
        return False, (
            "The receipt was modified after it was written (its receipt_sha256 does not match "
            "its content); it cannot vouch for any checkpoint."
        )
    out = receipt.get("output_checkpoint")
    if not out or not out.get("sha256"):
        return False, (
            "The receipt records no output checkpoint (the run wrote none, or the receipt was "
            "written before saving). Write it with ReceiptCallback.write(trainer, checkpoint_path) "
            "after trainer.save_checkpoint(checkpoint_path)."
        )
    path = Path(checkpoint)
    if not path.is_file():
        return False, f"Checkpoint {path} does not exist."
    actual = sha256_file(path)
    if actual != out["sha256"]:
        return False, (
            f"MISMATCH: {path} has sha256 {actual}, but the receipt's output checkpoint "
            f"({out.get('path')}) has sha256 {out['sha256']}. This is not the checkpoint the "
            "unlearning run produced (or it was modified since)."
        )
    forget = receipt.get("forget_set", {})
    return True, (
        f"OK: {path} is the output of {receipt.get('method')} unlearning "
        f"{forget.get('num_forget')} of {forget.get('num_samples')} samples "
        f"(forget-set sha256 {str(forget.get('sha256'))[:16]}…), finished {receipt.get('finished_at')}."
    )
