"""Retrain: the gold standard — re-initialise and train on the retain set with the usual loss."""

from __future__ import annotations

from torch import Tensor

from lightly_unlearn.methods.base import StepContext, UnlearningMethod, mean_row_loss

__all__ = ["Retrain", "mean_row_loss"]  # mean_row_loss re-exported for plugins importing it here


class Retrain(UnlearningMethod):
    name = "retrain"
    summary = "Re-initialise all weights and train on D_retain with the original recipe (gold standard)."
    data = "retain"
    reinitialise = True

    def objective(self, ctx: StepContext) -> Tensor:
        return mean_row_loss(ctx)
