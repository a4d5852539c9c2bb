"""How to reach a user module's parts without editing it.

lightly's examples fix a de-facto contract: ``backbone``, ``projection_head``, ``criterion`` (an
``NTXentLoss``), ``forward(x) = projection_head(backbone(x).flatten(1))`` and, for MoCo,
``backbone_momentum`` / ``projection_head_momentum`` / ``forward_momentum``. This module reads
that contract and fails with an error that says what is missing and how to adapt.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lightly_unlearn.errors import ModuleContractError
from lightly_unlearn.roles import EmbedFn, ModuleRoles, find_submodule, resolve_roles

_HOW_TO_ADAPT = (
    "lightly-unlearn expects a lightly-style module: attributes `backbone`, `projection_head` and "
    "`criterion` (a lightly `NTXentLoss`), and `forward(x)` returning projection-head outputs, as in "
    "lightly's SimCLR/MoCo examples. Either add the missing attribute to your module, or pass "
    "`embed_fn=` (a callable images -> embeddings) to the callback."
)


def require(module: nn.Module, *names: str) -> None:
    missing = [n for n in names if not hasattr(module, n)]
    if missing:
        raise ModuleContractError(
            f"{type(module).__name__} has no attribute(s) {', '.join(map(repr, missing))}. "
            + _HOW_TO_ADAPT
        )


def backbone_embed_fn(module: nn.Module, roles: ModuleRoles | None = None) -> EmbedFn:
    """Images -> flattened backbone features (what audits read by default).

    The backbone is ``roles.backbone`` (default: ``backbone``, or DINO's ``student_backbone``).
    """
    if hasattr(module, "encode_image") and not hasattr(module, "backbone"):  # CLIP
        return lambda x: module.encode_image(x)
    backbone = resolve_roles(module, roles).backbone_module(module)
    return lambda x: backbone(x).flatten(1)


def head_embed_fn(module: nn.Module, roles: ModuleRoles | None = None) -> EmbedFn:
    """Images -> projection-head outputs, ``head(backbone(x).flatten(1))``.

    Backbone and head are ``roles.backbone`` / ``roles.head`` (default: ``backbone`` and
    ``projection_head``, or DINO's ``student_backbone`` and ``student_head``).
    """
    if hasattr(module, "encode_image") and not hasattr(module, "projection_head"):
        return lambda x: module.encode_image(x)
    resolved = resolve_roles(module, roles)
    backbone, head = resolved.backbone_module(module), resolved.head_module(module)
    return lambda x: head(backbone(x).flatten(1))


@torch.no_grad()
def _refresh_weight_norm(child: nn.Module) -> None:
    """Carry a fresh ``weight`` into the parameters of an ``nn.utils.weight_norm`` layer.

    Such a layer's ``weight`` is recomputed from ``weight_g``/``weight_v`` before each forward,
    so ``reset_parameters`` writing into ``weight`` changes nothing that lasts (lightly's
    ``DINOProjectionHead.last_layer``). ``weight_v`` takes the fresh values and a trainable
    ``weight_g`` their norm, as ``weight_norm`` sets them; a frozen ``weight_g`` (DINO's
    ``norm_last_layer``) was never trained and keeps its value.
    """
    from torch.nn.utils.weight_norm import WeightNorm

    for hook in list(child._forward_pre_hooks.values()):
        if isinstance(hook, WeightNorm):
            fresh = getattr(child, hook.name)
            g, v = getattr(child, hook.name + "_g"), getattr(child, hook.name + "_v")
            v.copy_(fresh)
            if g.requires_grad:
                g.copy_(torch.norm_except_dim(fresh, 2, hook.dim))
            setattr(child, hook.name, hook.compute_weight(child))


def _part(module: nn.Module, name: str) -> nn.Module:
    part = find_submodule(module, name)
    if part is None:
        raise ModuleContractError(
            f"{type(module).__name__} has no sub-module {name!r} to re-initialise. Name a "
            "sub-module by its attribute path (dotted for nested ones, e.g. 'backbone.7')."
        )
    return part


@torch.no_grad()
def reinitialise(
    module: nn.Module, roles: ModuleRoles | None = None, parts: Sequence[str] | None = None
) -> int:
    """Re-initialise every sub-module that has ``reset_parameters`` (Retrain). Returns the count.

    A module that knows how to re-create its weights defines ``reinitialise_parameters()``
    (``CLIPModule``: open_clip's own initialisation of embeddings and projections); it is called
    instead, and the count is 1.

    Also calls ``_reset_parameters`` (``nn.MultiheadAttention``), resets BatchNorm statistics
    and carries fresh weights into ``weight_norm`` layers. Momentum copies and teachers (the
    ``momentum_pairs`` of ``roles``) are then overwritten with the re-initialised online /
    student weights, as the user's ``__init__`` creates them (``deepcopy(online)``), and memory
    banks are refilled. A parameter that no reset covers (e.g. a ViT's class token set directly
    on a module) would keep its trained value, so that is an error telling the user to define
    ``reinitialise_parameters()`` on the module.

    ``parts`` (dotted sub-module names, e.g. ``["projection_head", "backbone.7"]``) limits the
    re-initialisation to those sub-modules (partial re-initialisation); the copies are then
    synced from the online weights as a whole, so they stay copies of what trains.
    """
    own = getattr(module, "reinitialise_parameters", None)
    if parts is None and callable(own):
        own()
        return 1
    resolved = resolve_roles(module, roles)
    targets = [module] if parts is None else [_part(module, name) for name in parts]
    count, covered = _reset_modules(module, targets)
    if parts is None:
        for _, copy in resolved.momentum_pairs or ():
            covered.update(id(p) for p in module.get_submodule(copy).parameters())
        owned = list(module.named_parameters())
    else:
        owned = [(f"{n}.{k}", p) for n, t in zip(parts, targets) for k, p in t.named_parameters()]
    missed = [n for n, p in owned if id(p) not in covered]
    if missed:
        raise _not_covered(module, parts, missed)
    resolved.sync_pairs(module)
    resolved.reset_memory_banks(module)
    return count


def _reset_modules(module: nn.Module, targets: list[nn.Module]) -> tuple[int, set[int]]:
    """Reset every sub-module of ``targets`` that can reset itself, and BatchNorm statistics.
    Returns the count and the ids of the parameters the resets covered."""
    count, covered = 0, set()
    for target in targets:
        for child in target.modules():
            reset = getattr(child, "reset_parameters", None) or getattr(child, "_reset_parameters", None)
            if callable(reset) and child is not module:
                reset()
                _refresh_weight_norm(child)
                count += 1
                covered.update(id(p) for p in child.parameters(recurse=False))
            reset_stats = getattr(child, "reset_running_stats", None)
            if callable(reset_stats):
                reset_stats()
    return count, covered


def _not_covered(module: nn.Module, parts: Sequence[str] | None, missed: list[str]) -> ModuleContractError:
    """The error for parameters that no reset covers: they would keep trained values."""
    names = f"({', '.join(missed[:5])}{', ...' if len(missed) > 5 else ''}): no sub-module with "
    if parts is None:
        return ModuleContractError(
            f"Retrain cannot re-initialise {len(missed)} parameter(s) of {type(module).__name__} "
            f"{names}`reset_parameters` owns them, so they would keep values trained on the forget set. "
            "Define `reinitialise_parameters()` on your module (re-create all weights as in "
            "__init__); UnlearnCallback calls it instead."
        )
    return ModuleContractError(
        f"Cannot re-initialise {len(missed)} parameter(s) of {', '.join(parts)} "
        f"{names}`reset_parameters` owns them, so they would keep values trained on the forget set. "
        "Name sub-modules built from standard layers (nn.Linear, nn.Conv2d, norms), or use "
        "method 'retrain'."
    )


def check_trainable(module: nn.Module) -> None:
    """Refuse, before training, a module unlearning cannot change.

    * a parameter or buffer on the ``meta`` device holds no values (an ``empty_init`` or
      ``init_empty_weights`` model whose weights were never loaded): nothing to unlearn from;
    * no parameter with ``requires_grad=True``: every optimizer step would be a no-op, yet the
      run (and its receipt) would look like unlearning.

    A module that builds its layers in ``configure_model`` (sharded strategies) is checked only
    for what exists already; its layers appear after callbacks' ``setup``.
    """
    meta = [n for n, t in [*module.named_parameters(), *module.named_buffers()] if t.is_meta]
    if meta:
        # Lightning's clean-up after any error moves the module to the CPU, which fails on meta
        # tensors with torch's "Cannot copy out of meta tensor" and hides this message: give the
        # (value-less) tensors CPU storage first; they held no data, so nothing is lost.
        module.to_empty(device="cpu")
        raise ModuleContractError(
            f"{type(module).__name__} has {len(meta)} tensor(s) on the 'meta' device (e.g. "
            f"{', '.join(meta[:3])}), which hold no values: there are no weights to unlearn. "
            "Load the pretrained weights first: `module.to_empty(device='cpu')` then "
            "`module.load_state_dict(...)` (or build the model without empty/meta initialisation)."
        )
    params = list(module.parameters())
    builds_later = any(  # a user-defined configure_model may still add trainable layers
        "configure_model" in vars(cls) and not cls.__module__.startswith(("lightning", "pytorch_lightning"))
        for cls in type(module).__mro__
    )
    if not builds_later and not any(p.requires_grad for p in params):
        raise ModuleContractError(
            f"{type(module).__name__} has no trainable parameter ({len(params)} parameter(s), all "
            "with requires_grad=False): unlearning would change nothing. Unfreeze the layers to "
            "unlearn, e.g. `for p in model.backbone.parameters(): p.requires_grad_(True)`."
        )
