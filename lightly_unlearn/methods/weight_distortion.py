"""Weight distortion: perturb the weights with Gaussian noise, then repair on the retain set.

One of the weight-space methods of Siddiqui, Weller, Krueger, Dziugaite, Mozer, Triantafillou,
"From Dormant to Deleted: Tamper-Resistant Unlearning Through Weight-Space Regularization"
(arXiv 2505.22310): how far the unlearned weights lie from the original ones (L2 distance, linear
mode connectivity) predicts whether retain-only training brings the forget set back, so the
weights are first moved away at random and then fine-tuned on the retain set. As in the reference
code (github.com/shoaibahmed/vision_relearning, ``weight_distortion``: i.i.d. noise of absolute
standard deviation ``std`` on every parameter, 0.02 there): here on every *trainable* parameter,
with momentum / teacher copies then copied from the distorted online weights and memory banks
refilled; the repair is the ordinary contrastive loss instead of cross-entropy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from lightly_unlearn.methods.finetune import FineTune

if TYPE_CHECKING:
    from lightly_unlearn.roles import ModuleRoles


class WeightDistortion(FineTune):
    name = "weight_distortion"
    summary = (
        "Add Gaussian noise (std) to every trainable weight, then fine-tune on D_retain "
        "(Siddiqui et al., arXiv 2505.22310)."
    )
    prepare_changes_weights = True
    defaults = {"std": 0.02, "seed": 0}
    help = {
        "std": "standard deviation of the noise added to every trainable weight (absolute, as "
        "in the reference: 0.02)",
        "seed": "seed of the noise (the same on every device)",
    }

    @torch.no_grad()
    def prepare(self, module: nn.Module, roles: ModuleRoles) -> None:
        generator = torch.Generator().manual_seed(self.hparams["seed"])
        for param in module.parameters():
            if param.requires_grad:
                noise = torch.randn(param.shape, generator=generator, dtype=param.dtype)
                param.add_(noise.to(param.device), alpha=self.hparams["std"])
        roles.sync_pairs(module)
        roles.reset_memory_banks(module)
