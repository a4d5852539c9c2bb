"""Data: the forget/retain split, lightly-shaped samples and AC's view pairing."""

from lightly_unlearn.data.datamodule import ForgetRetainDataModule
from lightly_unlearn.deprecation import moved_names

__all__ = ["ForgetRetainDataModule"]

# errors live in lightly_unlearn.errors only
__getattr__ = moved_names(__name__, {"ForgetSetError": "lightly_unlearn.errors"})
