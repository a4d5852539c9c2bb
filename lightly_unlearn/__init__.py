"""lightly-unlearn: machine unlearning for contrastive models, as a lightly / Lightning plugin.

Public names: ``ForgetRetainDataModule``, ``UnlearnCallback``, ``AlignmentCalibrationLoss``.
"""

from lightly_unlearn.callbacks.unlearn import NonFiniteLossError, UnlearnCallback
from lightly_unlearn.data.datamodule import ForgetRetainDataModule
from lightly_unlearn.data.validation import ForgetSetError
from lightly_unlearn.losses.alignment_calibration import AlignmentCalibrationLoss

__version__ = "0.1.0"

__all__ = [
    "AlignmentCalibrationLoss",
    "ForgetRetainDataModule",
    "ForgetSetError",
    "NonFiniteLossError",
    "UnlearnCallback",
    "__version__",
]
