"""Partial re-initialisation: fresh projection head (and last backbone stages), then fine-tune.

Approximate methods that only *train* from the given weights tend to hide membership rather than
remove it: a few epochs of ordinary training on the retain set bring it back (arXiv 2505.22310).
Weights that are drawn afresh hold nothing of the forget set; this method re-initialises the
projection head and, optionally, the last ``stages`` stages of the backbone, then trains the
whole model on the retain set with the ordinary loss. It is the contrastive counterpart of
EU-k / CF-k (Goel, Prabhu, Sanyal, Lim, Torr, Kumaraguru, "Towards Adversarial Evaluation of
Machine Unlearning", arXiv 2201.06640: re-initialise resp. fine-tune the last k layers on the
retain set, the rest frozen); here nothing is frozen.

How backbone stages are found (:func:`backbone_stages`), else the method refuses:

* a backbone with children ``layer1``, ``layer2``, ... (torchvision's ResNet): those, in order;
* an ``nn.Sequential`` backbone (lightly's examples, e.g. ``nn.Sequential(*resnet.children()[:-1])``
  or an MLP): its children that hold parameters, a normalisation layer (BatchNorm, LayerNorm,
  GroupNorm, InstanceNorm) counting with the layer before it (conv + BN is one stage).

``modules`` names the sub-modules to re-initialise explicitly instead. Momentum encoders /
teachers become copies of the online weights after the re-initialisation (so their re-initialised
parts are the same fresh draws) and memory banks are refilled, through ``ModuleRoles``.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

import torch
from torch import nn

from lightly_unlearn.adapters import reinitialise
from lightly_unlearn.errors import ModuleContractError
from lightly_unlearn.methods.finetune import FineTune

if TYPE_CHECKING:
    from lightly_unlearn.roles import ModuleRoles

log = logging.getLogger(__name__)

_NORMS = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm)


def backbone_stages(backbone: nn.Module) -> list[list[str]]:
    """The backbone's stages, first to last, each a list of child names (see the module
    docstring for the rule). Raises ``ModuleContractError`` when the rule does not apply."""
    children = dict(backbone.named_children())
    layers = sorted((int(m.group(1)), n) for n in children if (m := re.fullmatch(r"layer(\d+)", n)))
    if layers:
        return [[n] for _, n in layers]
    if not isinstance(backbone, nn.Sequential):
        raise ModuleContractError(
            f"partial_reinit cannot tell the stages of a {type(backbone).__name__} backbone (not "
            "an nn.Sequential, no layer1..layerN children). Name the sub-modules to re-initialise: "
            "UnlearnCallback('partial_reinit', modules='projection_head,backbone.<name>')."
        )
    stages: list[list[str]] = []
    for name, child in children.items():
        if not any(True for _ in child.parameters()):
            continue
        if isinstance(child, _NORMS) and stages:
            stages[-1].append(name)
        else:
            stages.append([name])
    return stages


class PartialReinit(FineTune):
    name = "partial_reinit"
    summary = (
        "Re-initialise the projection head (and the last `stages` backbone stages), then "
        "fine-tune on D_retain (EU-k/CF-k-style partial retraining)."
    )
    prepare_changes_weights = True
    defaults = {"stages": 1, "modules": "", "seed": 0}
    help = {
        "stages": "how many of the backbone's last stages to re-initialise with the head (0: the "
        "head only); stages: layer1..layerN of a ResNet, else the parameterised children of an "
        "nn.Sequential backbone (a norm layer counts with the layer before it)",
        "modules": "comma-separated sub-module names to re-initialise instead of head + stages "
        "(e.g. 'projection_head,backbone.blocks.11')",
        "seed": "seed of the fresh weights (the same on every device)",
    }

    def parts(self, module: nn.Module, roles: ModuleRoles) -> list[str]:
        """Dotted names of the sub-modules to re-initialise on ``module``."""
        if self.hparams["modules"].strip():
            return [n.strip() for n in self.hparams["modules"].split(",") if n.strip()]
        if roles.head is None:
            raise ModuleContractError(
                f"partial_reinit: {type(module).__name__} has no projection head to re-initialise "
                "(e.g. a CLIP model). Name the sub-modules to re-initialise: "
                "UnlearnCallback('partial_reinit', modules='<dotted name>,<dotted name>'), or name "
                "the head with roles=ModuleRoles(head='<attribute>')."
            )
        roles.head_module(module)
        head = str(roles.head)
        k = self.hparams["stages"]
        if k == 0:
            return [head]
        roles.backbone_module(module)  # refuses a module without a backbone
        stages = backbone_stages(module.get_submodule(roles.backbone))
        if k > len(stages):
            raise ValueError(
                f"partial_reinit: stages={k}, but the backbone {roles.backbone!r} has "
                f"{len(stages)} stage(s) ({', '.join('+'.join(s) for s in stages)}). Choose at "
                "most that many, or method 'retrain' for all weights."
            )
        return [head] + [f"{roles.backbone}.{n}" for stage in stages[-k:] for n in stage]

    def prepare(self, module: nn.Module, roles: ModuleRoles) -> None:
        parts = self.parts(module, roles)
        cuda = sorted({p.device.index or 0 for p in module.parameters() if p.device.type == "cuda"})
        with torch.random.fork_rng(devices=cuda):  # the user's RNG streams stay untouched
            torch.manual_seed(self.hparams["seed"])
            reinitialise(module, roles, parts=parts)  # syncs momentum copies, refills banks
        self.reinitialised = tuple(parts)
        log.info("partial_reinit: re-initialised %s", ", ".join(parts))
