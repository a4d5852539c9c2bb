"""ℓ1-sparse: fine-tune on the retain set with an ℓ1 penalty on the weights."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lightly_unlearn.methods.base import StepContext, UnlearningMethod, mean_row_loss


class L1Sparse(UnlearningMethod):
    name = "l1_sparse"
    summary = "Contrastive loss on D_retain + λ·‖θ‖₁ over trainable parameters."
    data = "retain"
    defaults = {"lam": 5e-5, "schedule": "constant"}
    help = {
        "lam": "ℓ1 weight λ",
        "schedule": "'constant' (the contrastive reference) or 'linear' (λ decays to 0, as in "
        "the original ℓ1-sparse paper)",
    }

    def validate(self) -> None:
        super().validate()
        if self.hparams["schedule"] not in ("constant", "linear"):
            raise ValueError(
                f"l1_sparse: schedule must be 'constant' or 'linear'; got {self.hparams['schedule']!r}."
            )

    def objective(self, ctx: StepContext) -> Tensor:
        return mean_row_loss(ctx)

    def regularizer(self, module: nn.Module, progress: float) -> Tensor | None:
        lam = self.hparams["lam"]
        if self.hparams["schedule"] == "linear":
            lam = lam * (1.0 - progress)
        params = [p for p in module.parameters() if p.requires_grad]
        if not params or lam == 0:
            return None
        return lam * torch.stack([p.abs().sum() for p in params]).sum()
