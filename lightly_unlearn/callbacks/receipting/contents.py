"""What a receipt records about a run: its weights and checkpoint files, its audits, its
training loop."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lightly_unlearn.audits.runner import flat_metrics
from lightly_unlearn.errors import ConfigurationError
from lightly_unlearn.receipt import file_record
from lightly_unlearn.weights_digest import checkpoint_state_dict, state_dict_sha256

if TYPE_CHECKING:
    import lightning.pytorch as pl

    from lightly_unlearn.callbacks.audit import AuditCallback


def module_state_dict(trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
    """The LightningModule's state dict as ``trainer.save_checkpoint`` stores it (collective
    under sharded strategies: call on every rank)."""
    strategy = getattr(trainer, "strategy", None)
    if strategy is not None and getattr(strategy, "lightning_module", None) is not None:
        return strategy.lightning_module_state_dict()
    return pl_module.state_dict()


def holds_weights(path: str | os.PathLike, sha256: str) -> bool:
    """Whether the checkpoint file holds the weights whose digest is ``sha256``."""
    try:
        return state_dict_sha256(checkpoint_state_dict(path)) == sha256
    except ConfigurationError:
        return False


def saved_final_checkpoint(trainer: pl.Trainer, sha256: str) -> str | None:
    """The ``ModelCheckpoint`` file (last, else best) that holds the final weights, if any."""
    ckpt_cb = getattr(trainer, "checkpoint_callback", None)
    for attr in ("last_model_path", "best_model_path"):
        candidate = getattr(ckpt_cb, attr, "") if ckpt_cb is not None else ""
        if candidate and Path(candidate).is_file() and holds_weights(candidate, sha256):
            return candidate
    return None


def output_record(
    checkpoint_path: str | os.PathLike, sha256: str, output_name: str | None = None
) -> dict[str, Any]:
    """The output checkpoint's ``file_record``, after checking it holds the final weights;
    ``output_name``: the path to record when the file is written elsewhere first."""
    if state_dict_sha256(checkpoint_state_dict(checkpoint_path)) != sha256:
        raise ConfigurationError(
            f"{checkpoint_path} does not hold the weights this unlearning run ended with, "
            "so the receipt cannot name it as the output checkpoint. Save the trained "
            "module (trainer.save_checkpoint) and pass that file."
        )
    record = file_record(checkpoint_path)
    if output_name is not None:
        record["path"] = output_name
    return record


def input_record_at_end(record: dict[str, Any] | None) -> dict[str, Any] | None:
    """The input checkpoint's record taken at fit start, with ``unchanged``: whether the file
    still has the same SHA-256 (a warning when it does not)."""
    if record is None:
        return None
    current = file_record(record["path"])
    record = {**record, "unchanged": current["sha256"] == record["sha256"]}
    if not record["unchanged"]:
        warnings.warn(
            f"The input checkpoint {record['path']} changed during the run "
            "(another process or a checkpoint callback wrote to it).",
            stacklevel=3,
        )
    return record


def audit_section(audit: AuditCallback | None) -> dict[str, Any] | None:
    """The audit numbers, and the verdict the ``AuditCallback`` kept for its "after" audit
    (an epoch audit's verdict is not the final one)."""
    if audit is None or (audit.before is None and audit.after is None):
        return None
    verdict = audit.verdict if audit.after else None
    return {
        "before": flat_metrics(audit.before) if audit.before else None,
        "after": flat_metrics(audit.after) if audit.after else None,
        "warnings": verdict.warnings if verdict else [],  # worst first
        "verdict": verdict.line if verdict else None,
    }


def training_section(trainer: pl.Trainer) -> dict[str, Any]:
    """Where the training loop ended."""
    return {
        "current_epoch": int(trainer.current_epoch),
        "global_step": int(trainer.global_step),
        "world_size": int(getattr(trainer, "world_size", 1) or 1),
        "max_epochs": trainer.max_epochs,
    }
