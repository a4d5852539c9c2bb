"""Gradient ascent: maximise the contrastive loss of the forget samples."""

from __future__ import annotations

from torch import Tensor

from lightly_unlearn.methods.base import StepContext, UnlearningMethod, mean_row_loss


class GradientAscent(UnlearningMethod):
    name = "gradient_ascent"
    summary = "Minus the contrastive loss on D_forget (diverges easily: keep epochs and lr small)."
    data = "forget"

    def objective(self, ctx: StepContext) -> Tensor:
        # retain samples in the forget stream only complete batches (negatives): not counted
        return -mean_row_loss(ctx, forget_only=True)
