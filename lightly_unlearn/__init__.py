"""lightly-unlearn: machine unlearning for contrastive models, as a lightly / Lightning plugin.

Public names: ``ForgetRetainDataModule``, ``UnlearnCallback``, ``AuditCallback``,
``AlignmentCalibrationLoss``, and ``CLIPModule`` / ``PLCLIPModule`` (imported lazily: open_clip
is only loaded when they are used).
"""

from typing import Any

from lightly_unlearn.callbacks.audit import AuditCallback
from lightly_unlearn.callbacks.holdout_stopping import HoldoutAlignmentStopping
from lightly_unlearn.callbacks.receipt import ReceiptCallback
from lightly_unlearn.callbacks.unlearn import NonFiniteLossError, UnlearnCallback
from lightly_unlearn.data.datamodule import ForgetRetainDataModule
from lightly_unlearn.data.validation import ForgetSetError
from lightly_unlearn.losses.alignment_calibration import AlignmentCalibrationLoss

__version__ = "0.1.0"

_LAZY = {"CLIPModule": "lightly_unlearn.clip.module", "PLCLIPModule": "lightly_unlearn.clip.module"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lightly_unlearn' has no attribute {name!r}")


__all__ = [
    "AlignmentCalibrationLoss",
    "CLIPModule",
    "AuditCallback",
    "ForgetRetainDataModule",
    "ForgetSetError",
    "HoldoutAlignmentStopping",
    "NonFiniteLossError",
    "PLCLIPModule",
    "ReceiptCallback",
    "UnlearnCallback",
    "__version__",
]
