"""Lightning callbacks: the only place (with the CLI) that touches the Trainer."""

from lightly_unlearn.callbacks.audit import AuditCallback
from lightly_unlearn.callbacks.holdout_stopping import HoldoutAlignmentStopping
from lightly_unlearn.callbacks.receipt import ReceiptCallback
from lightly_unlearn.callbacks.unlearn import UnlearnCallback

__all__ = [
    "AuditCallback",
    "HoldoutAlignmentStopping",
    "ReceiptCallback",
    "UnlearnCallback",
]
