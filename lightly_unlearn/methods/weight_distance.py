"""Weight-distance regularisation: fine-tune on the retain set while moving away from the original.

One of the weight-space methods of Siddiqui, Weller, Krueger, Dziugaite, Mozer, Triantafillou,
"From Dormant to Deleted: Tamper-Resistant Unlearning Through Weight-Space Regularization"
(arXiv 2505.22310): unlearned weights far from the original ones resist relearning, so the retain
loss is minimised together with minus the distance to the original weights θ₀. As in the
reference code (github.com/shoaibahmed/vision_relearning, ``weight_dist_reg``, alpha 1.0):
``loss − α · sqrt(mean((θ − θ₀)²) + 1e-8)`` over the trainable parameters (a root-mean-square
distance, so α does not scale with the model size); the loss is the ordinary contrastive loss
instead of cross-entropy. θ₀ is the weights the run starts from; a resumed run is refused (θ₀ is
not in the checkpoint).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from lightly_unlearn.methods.base import StepContext, UnlearningMethod, mean_row_loss

if TYPE_CHECKING:
    from lightly_unlearn.roles import ModuleRoles


class WeightDistance(UnlearningMethod):
    name = "weight_distance"
    summary = (
        "Contrastive loss on D_retain − α·RMS(θ − θ₀): fine-tune while moving away from the "
        "original weights (Siddiqui et al., arXiv 2505.22310)."
    )
    data = "retain"
    defaults = {"alpha": 1.0}
    help = {"alpha": "weight α of minus the root-mean-square distance to the original weights "
            "(1.0 in the reference)"}

    def __init__(self, **hyperparameters) -> None:
        super().__init__(**hyperparameters)
        self._origin: list[tuple[Tensor, Tensor]] | None = None

    def prepare(self, module: nn.Module, roles: ModuleRoles) -> None:
        self._origin = [(p, p.detach().clone()) for p in module.parameters() if p.requires_grad]

    def objective(self, ctx: StepContext) -> Tensor:
        return mean_row_loss(ctx)

    def regularizer(self, module: nn.Module, progress: float) -> Tensor | None:
        if self._origin is None:
            raise RuntimeError(
                "weight_distance: the original weights were not recorded (a resumed run, or the "
                "method used outside UnlearnCallback); restart the unlearning run from the "
                "original weights instead of resuming it."
            )
        if self.hparams["alpha"] == 0 or not self._origin:
            return None
        squares = torch.stack([(p - p0).pow(2).sum() for p, p0 in self._origin]).sum()
        count = sum(p0.numel() for _, p0 in self._origin)
        return -self.hparams["alpha"] * torch.sqrt(squares / count + 1e-8)
