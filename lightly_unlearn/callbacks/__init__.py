"""Lightning callbacks: the only place (with the CLI) that touches the Trainer."""

from lightly_unlearn.callbacks.unlearn import NonFiniteLossError, UnlearnCallback

__all__ = ["NonFiniteLossError", "UnlearnCallback"]
