"""NegGrad: descend on retain rows and ascend on forget rows of mixed batches."""

from __future__ import annotations

from torch import Tensor

from lightly_unlearn.losses.rows import normalise, row_mask
from lightly_unlearn.methods.base import StepContext, UnlearningMethod


class NegGrad(UnlearningMethod):
    name = "neggrad"
    summary = "(Σ_retain rows ℓ − λ·Σ_forget rows ℓ) / #rows on mixed batches."
    data = "mixed"
    defaults = {"lam": 1.0}
    help = {"lam": "weight λ of the ascent on forget rows (1.0 in the reference)"}

    def objective(self, ctx: StepContext) -> Tensor:
        loss = ctx.terms.loss
        rows = row_mask(ctx.forget.to(loss.device), ctx.terms.rows_per_sample)
        total = loss[~rows].sum() - self.hparams["lam"] * loss[rows].sum()
        return normalise(total, loss.new_tensor(float(loss.numel())))
