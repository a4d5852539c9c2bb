"""Retrain: the gold standard — re-initialise and train on the retain set with the usual loss."""

from __future__ import annotations

from torch import Tensor

from lightly_unlearn.losses.rows import normalise
from lightly_unlearn.methods.base import StepContext, UnlearningMethod


def mean_row_loss(ctx: StepContext) -> Tensor:
    """The criterion's ordinary loss: mean over all rows (globally normalised under DDP)."""
    loss = ctx.terms.loss
    return normalise(loss.sum(), loss.new_tensor(float(loss.numel())))


class Retrain(UnlearningMethod):
    name = "retrain"
    summary = "Re-initialise all weights and train on D_retain with the original recipe (gold standard)."
    data = "retain"
    reinitialise = True

    def objective(self, ctx: StepContext) -> Tensor:
        return mean_row_loss(ctx)
