"""How to reach a user module's parts without editing it.

lightly's examples fix a de-facto contract: ``backbone``, ``projection_head``, ``criterion`` (an
``NTXentLoss``), ``forward(x) = projection_head(backbone(x).flatten(1))`` and, for MoCo,
``backbone_momentum`` / ``projection_head_momentum`` / ``forward_momentum``. This module reads
that contract and fails with an error that says what is missing and how to adapt.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from lightly_unlearn.errors import ModuleContractError  # noqa: F401  (re-exported)

EmbedFn = Callable[[Tensor], Tensor]

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


def backbone_embed_fn(module: nn.Module) -> EmbedFn:
    """Images -> flattened backbone features (what audits read by default, SPEC §4)."""
    if hasattr(module, "encode_image") and not hasattr(module, "backbone"):  # CLIP
        return lambda x: module.encode_image(x)
    require(module, "backbone")
    return lambda x: module.backbone(x).flatten(1)


def head_embed_fn(module: nn.Module) -> EmbedFn:
    """Images -> projection-head outputs (what the contrastive loss sees)."""
    if hasattr(module, "encode_image") and not hasattr(module, "projection_head"):
        return lambda x: module.encode_image(x)
    require(module, "backbone", "projection_head")
    return lambda x: module.projection_head(module.backbone(x).flatten(1))


def momentum_pairs(module: nn.Module) -> list[tuple[nn.Module, nn.Module]]:
    """``(online, momentum)`` pairs found by the ``<name>_momentum`` naming convention."""
    pairs = []
    for name, child in module.named_children():
        if name.endswith("_momentum"):
            online = getattr(module, name[: -len("_momentum")], None)
            if isinstance(online, nn.Module):
                pairs.append((online, child))
    return pairs


@torch.no_grad()
def copy_online_to_momentum(module: nn.Module) -> int:
    """Overwrite every momentum copy with its online weights; returns how many pairs were synced."""
    pairs = momentum_pairs(module)
    for online, momentum in pairs:
        momentum.load_state_dict(online.state_dict())
    return len(pairs)


def memory_banks(module: nn.Module) -> list[nn.Module]:
    """lightly ``MemoryBankModule`` instances with a non-empty bank anywhere in ``module``."""
    banks = []
    for child in module.modules():
        size = getattr(child, "size", None)
        if hasattr(child, "_init_memory_bank") and isinstance(size, tuple) and len(size) == 2:
            if size[0] > 0:
                banks.append(child)
    return banks


@torch.no_grad()
def reset_memory_banks(module: nn.Module) -> int:
    """Re-initialise memory banks (random unit rows): they may hold keys of forget samples."""
    banks = memory_banks(module)
    for bank in banks:
        bank._init_memory_bank(size=bank.size)  # type_as keeps device and dtype
    return len(banks)


@torch.no_grad()
def reinitialise(module: nn.Module) -> int:
    """Re-initialise every sub-module that has ``reset_parameters`` (Retrain). Returns the count.

    Also calls ``_reset_parameters`` (``nn.MultiheadAttention``) and resets BatchNorm statistics.
    Momentum copies are then synced from the re-initialised online weights, as a fresh MoCo
    starts with ``momentum = deepcopy(online)``. A parameter that no reset covers (e.g. a ViT's
    class token set directly on a module) would keep its trained value, so that is an error
    telling the user to define ``reinitialise_parameters()`` on the module.
    """
    count, covered = 0, set()
    for child in module.modules():
        reset = getattr(child, "reset_parameters", None) or getattr(child, "_reset_parameters", None)
        if callable(reset) and child is not module:
            reset()
            count += 1
            covered.update(id(p) for p in child.parameters(recurse=False))
        reset_stats = getattr(child, "reset_running_stats", None)
        if callable(reset_stats):
            reset_stats()
    pairs = momentum_pairs(module)
    for _, momentum in pairs:
        covered.update(id(p) for p in momentum.parameters())
    missed = [n for n, p in module.named_parameters() if id(p) not in covered]
    if missed:
        raise ModuleContractError(
            f"Retrain cannot re-initialise {len(missed)} parameter(s) of {type(module).__name__} "
            f"({', '.join(missed[:5])}{', ...' if len(missed) > 5 else ''}): no sub-module with "
            "`reset_parameters` owns them, so they would keep values trained on the forget set. "
            "Define `reinitialise_parameters()` on your module (re-create all weights as in "
            "__init__); UnlearnCallback calls it instead."
        )
    copy_online_to_momentum(module)
    reset_memory_banks(module)
    return count


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
