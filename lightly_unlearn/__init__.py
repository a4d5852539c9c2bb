"""lightly-unlearn: machine unlearning for contrastive models, as a lightly / Lightning plugin.

Public names: ``ForgetRetainDataModule``, ``UnlearnCallback``, ``AuditCallback``,
``AlignmentCalibrationLoss``, the relearning test ``relearn``, and ``CLIPModule`` /
``PLCLIPModule`` (imported lazily: open_clip is only loaded when they are used).
"""

import importlib
from typing import Any

__version__ = "0.1.0"

# Public names are imported on first use (PEP 562): ``import lightly_unlearn`` and the
# ``lightly-unlearn`` command start without loading torch or Lightning, and open_clip is only
# loaded when the CLIP classes are used.
_LAZY = {
    "AlignmentCalibrationLoss": "lightly_unlearn.losses.alignment_calibration",
    "AuditCallback": "lightly_unlearn.callbacks.audit",
    "CLIPModule": "lightly_unlearn.clip.module",
    "ForgetRetainDataModule": "lightly_unlearn.data.datamodule",
    "HoldoutAlignmentStopping": "lightly_unlearn.callbacks.holdout_stopping",
    "ModuleRoles": "lightly_unlearn.roles",
    "PLCLIPModule": "lightly_unlearn.clip.module",
    "ReceiptCallback": "lightly_unlearn.callbacks.receipt",
    "RelearnResult": "lightly_unlearn.attacks.relearn",
    "UnlearnCallback": "lightly_unlearn.callbacks.unlearn",
    "relearn": "lightly_unlearn.attacks.relearn",
}
_MOVED = ("ForgetSetError", "NonFiniteLossError")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        importlib.import_module("lightly_unlearn.namespaces")  # namespace-mismatch hints
        globals()[name] = value
        return value
    from lightly_unlearn.deprecation import moved_names  # errors live in lightly_unlearn.errors

    return moved_names(__name__, dict.fromkeys(_MOVED, "lightly_unlearn.errors"))(name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "AlignmentCalibrationLoss",
    "CLIPModule",
    "AuditCallback",
    "ForgetRetainDataModule",
    "HoldoutAlignmentStopping",
    "ModuleRoles",
    "PLCLIPModule",
    "ReceiptCallback",
    "RelearnResult",
    "UnlearnCallback",
    "__version__",
    "relearn",
]
