"""Data: the forget/retain split, lightly-shaped samples and AC's view pairing."""

from lightly_unlearn.data.datamodule import ForgetRetainDataModule
from lightly_unlearn.data.validation import ForgetSetError

__all__ = ["ForgetRetainDataModule", "ForgetSetError"]
