"""Fine-tune: continue training on the retain set only (catastrophic forgetting of D_forget)."""

from __future__ import annotations

from torch import Tensor

from lightly_unlearn.methods.base import StepContext, UnlearningMethod, mean_row_loss


class FineTune(UnlearningMethod):
    name = "finetune"
    summary = "Ordinary contrastive loss on D_retain for a few epochs, from the given weights."
    data = "retain"

    def objective(self, ctx: StepContext) -> Tensor:
        return mean_row_loss(ctx)
