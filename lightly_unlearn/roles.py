"""``ModuleRoles``: which parts of the user's module play which role in unlearning.

Unlearning needs to know a few things about a module it must not edit: where the backbone and
the projection head are (audits read their outputs), which sub-modules are momentum / teacher
copies of which online / student sub-modules (synced at the end; re-created as copies by
Retrain), which memory banks may hold keys of forget samples (re-initialised), and how to embed
one view the way the criterion sees it (Alignment Calibration's extra view).

Every field left ``None`` is found by lightly's example conventions, so lightly's example modules
need no roles argument:

* backbone: ``backbone`` (SimCLR, MoCo, BYOL, SimSiam) or ``student_backbone`` (DINO);
* head: ``projection_head`` or ``student_head``;
* momentum pairs: ``<name>`` / ``<name>_momentum`` (MoCo, BYOL) and ``student_<x>`` /
  ``teacher_<x>`` (DINO), for every direct child of the module;
* memory banks: every lightly ``MemoryBankModule`` (or a module with the same ``bank`` /
  ``bank_ptr`` buffers) with a non-empty bank, e.g. ``criterion.memory_bank`` of a MoCo
  ``NTXentLoss(memory_bank_size=...)``;
* criterion: ``criterion`` (the loss object ``training_step`` calls, as in lightly's examples);
* embedding: ``forward_momentum`` (MoCo, BYOL), else ``forward_teacher`` (DINO), else
  ``forward``. When it returns a tuple (lightly's SimSiam: ``forward(x) -> (z.detach(), p)``),
  the loss adapter picks the element its loss compares (``RowTermsAdapter.extra_embedding``;
  for SimSiam the stop-gradient target ``z``), unless ``output_index`` names one. Momentum /
  teacher forwards (``*_momentum``, ``*_teacher``) run without gradient.

Pass a ``ModuleRoles`` with some fields set to override just those.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from lightly_unlearn.errors import ModuleContractError

#: Images -> embeddings: how a view is embedded (``ModuleRoles.embed``, audits' ``embed_fn``).
EmbedFn = Callable[[Tensor], Tensor]

#: Attribute names tried, in order, for the backbone and the projection head.
BACKBONE_NAMES = ("backbone", "student_backbone")
HEAD_NAMES = ("projection_head", "student_head")
#: Methods tried, in order, to embed one view as the criterion sees it.
EMBED_NAMES = ("forward_momentum", "forward_teacher", "forward")
#: The online (query / student) encoder's embedding, for an extra view trained through.
ONLINE_EMBED = "forward"


def find_submodule(module: nn.Module, name: str) -> nn.Module | None:
    """``module.<dotted name>`` if that is a proper sub-module of ``module``, else ``None``."""
    try:
        found = module.get_submodule(name)
    except AttributeError:
        return None
    return found if isinstance(found, nn.Module) and found is not module else None


def _child(module: nn.Module, name: str, role: str) -> nn.Module:
    """``module.<dotted name>`` as a sub-module, or an error naming the role."""
    found = find_submodule(module, name)
    if found is None:
        raise ModuleContractError(
            f"ModuleRoles names {name!r} as the {role}, but {type(module).__name__} has no "
            f"sub-module {name!r}. Use the attribute name of a sub-module (dotted for nested "
            "ones, e.g. 'encoder.backbone')."
        )
    return found


def is_memory_bank(module: nn.Module) -> bool:
    """A lightly ``MemoryBankModule`` (or a module with its ``bank``/``bank_ptr`` buffers) whose
    bank holds at least one entry."""
    buffers = dict(module.named_buffers(recurse=False))
    bank = buffers.get("bank")
    return bank is not None and "bank_ptr" in buffers and bank.dim() == 2 and bank.shape[0] > 0


@torch.no_grad()
def reset_memory_bank(bank: nn.Module) -> None:
    """Refill a memory bank with random unit rows and rewind its pointer, in place.

    This is the state lightly gives a new ``MemoryBankModule``; writing in place keeps device,
    dtype and any reference to the buffers. A module without the ``bank`` buffers but with a
    ``reset()`` method is reset by calling it.
    """
    buffers = dict(bank.named_buffers(recurse=False))
    if "bank" in buffers and "bank_ptr" in buffers:
        values = buffers["bank"]
        values.copy_(nn.functional.normalize(torch.randn_like(values), dim=-1))
        buffers["bank_ptr"].zero_()
        return
    reset = getattr(bank, "reset", None)
    if not callable(reset):
        raise ModuleContractError(
            f"{type(bank).__name__} is named as a memory bank but has neither lightly's "
            "`bank`/`bank_ptr` buffers nor a `reset()` method; add a `reset()` that empties it."
        )
    reset()


def _convention_pairs(module: nn.Module) -> list[tuple[str, str]]:
    children = dict(module.named_children())
    pairs = []
    for name in children:
        if name.endswith("_momentum") and isinstance(children.get(name[: -len("_momentum")]), nn.Module):
            pairs.append((name[: -len("_momentum")], name))
        elif name.startswith("teacher_") and isinstance(children.get("student_" + name[8:]), nn.Module):
            pairs.append(("student_" + name[8:], name))
    return pairs


def frozen_children(module: nn.Module) -> list[str]:
    """Direct children that have parameters, none of them trainable (e.g. an EMA copy)."""
    frozen = []
    for name, child in module.named_children():
        params = list(child.parameters())
        if params and not any(p.requires_grad for p in params):
            frozen.append(name)
    return frozen


@dataclass(frozen=True)
class ModuleRoles:
    """Which sub-modules of the user's module play which role; ``None`` fields follow lightly's
    example conventions (see the module docstring).

    Args:
        backbone: Attribute (dotted) name of the backbone; audits' ``"backbone"`` features are
            ``backbone(x).flatten(1)``.
        head: Attribute name of the projection head; audits' ``"head"`` features are
            ``head(backbone(x).flatten(1))``.
        momentum_pairs: ``(online, copy)`` attribute-name pairs: momentum encoders (MoCo, BYOL)
            or teachers (DINO). ``copy`` is overwritten with ``online``'s weights when unlearning
            ends (``sync_momentum=True``) and after Retrain's re-initialisation. ``()`` for none.
        memory_banks: Attribute names of memory banks to re-initialise (they may hold keys of
            forget samples). ``()`` for none.
        embed: How to embed one view as the criterion sees it (Alignment Calibration's extra
            view): the name of a method of the module, or a callable images -> embeddings.
        output_index: When the embedding method returns a tuple, the element to use; ``None``
            leaves the choice to the loss adapter.
        criterion: Attribute (dotted) name of the loss object ``training_step`` calls, whose
            ``forward`` ``UnlearnCallback`` replaces by the method's objective (default:
            ``criterion``).

    Example:
        >>> roles = ModuleRoles(momentum_pairs=[("encoder", "encoder_ema")])
        >>> UnlearnCallback("ac", roles=roles)
    """

    backbone: str | None = None
    head: str | None = None
    momentum_pairs: Sequence[tuple[str, str]] | None = None
    memory_banks: Sequence[str] | None = None
    embed: str | EmbedFn | None = None
    output_index: int | None = None
    criterion: str | None = None

    # -- resolution -------------------------------------------------------------------------
    def resolve(self, module: nn.Module) -> ModuleRoles:
        """These roles with every ``None`` field found on ``module``, names checked.

        Explicit names must exist (a misspelt one is an error, not a silent default); each
        momentum pair's two sub-modules must have the same parameter and buffer shapes.
        """
        backbone = self.backbone or next(
            (n for n in BACKBONE_NAMES if isinstance(getattr(module, n, None), nn.Module)), None
        )
        head = self.head or next(
            (n for n in HEAD_NAMES if isinstance(getattr(module, n, None), nn.Module)), None
        )
        if self.backbone is not None:
            _child(module, self.backbone, "backbone")
        if self.head is not None:
            _child(module, self.head, "head")
        if self.criterion is not None:
            _child(module, self.criterion, "criterion")
        criterion = self.criterion or ("criterion" if hasattr(module, "criterion") else None)
        pairs = (
            _convention_pairs(module)
            if self.momentum_pairs is None
            else [tuple(p) for p in self.momentum_pairs]
        )
        for pair in pairs:
            if len(pair) != 2:
                raise ModuleContractError(
                    f"ModuleRoles.momentum_pairs entries are (online, copy) name pairs; got {pair!r}."
                )
            _check_pair(module, *pair)
        if self.memory_banks is None:
            banks = [n for n, m in module.named_modules() if n and is_memory_bank(m)]
        else:
            banks = [str(n) for n in self.memory_banks]
            for name in banks:
                _child(module, name, "memory bank")
        embed = self.embed or next(
            (n for n in EMBED_NAMES if callable(getattr(module, n, None))), "forward"
        )
        if isinstance(embed, str) and not callable(getattr(module, embed, None)):
            raise ModuleContractError(
                f"ModuleRoles.embed names {embed!r}, which is not a method of "
                f"{type(module).__name__}. Name a method (e.g. 'forward') or pass a callable "
                "images -> embeddings."
            )
        return replace(
            self,
            backbone=backbone,
            head=head,
            momentum_pairs=tuple(pairs),
            memory_banks=tuple(banks),
            embed=embed,
            criterion=criterion,
        )

    # -- what the callbacks do with them --------------------------------------------------------
    def describe(self) -> str:
        """``found 2 momentum pairs: backbone→backbone_momentum, …; 1 memory bank: …``.

        Call on resolved roles.
        """
        pairs = list(self.momentum_pairs or ())
        banks = list(self.memory_banks or ())
        parts = [
            f"found {len(pairs)} momentum pair{'s' if len(pairs) != 1 else ''}"
            + (": " + ", ".join(f"{a}→{b}" for a, b in pairs) if pairs else ""),
            f"{len(banks)} memory bank{'s' if len(banks) != 1 else ''}"
            + (": " + ", ".join(banks) if banks else ""),
        ]
        embed = self.embed if isinstance(self.embed, str) else getattr(self.embed, "__name__", "a callable")
        parts.append(f"extra views embedded by {embed}")
        return "; ".join(parts)

    @torch.no_grad()
    def sync_pairs(self, module: nn.Module) -> int:
        """Overwrite every copy with its online weights (and buffers); returns the pair count."""
        for online, copy in self.momentum_pairs or ():
            module.get_submodule(copy).load_state_dict(module.get_submodule(online).state_dict())
        return len(self.momentum_pairs or ())

    def reset_memory_banks(self, module: nn.Module) -> int:
        """Re-initialise every memory bank; returns how many."""
        for name in self.memory_banks or ():
            reset_memory_bank(module.get_submodule(name))
        return len(self.memory_banks or ())

    def embed_fn(self, module: nn.Module) -> EmbedFn:
        """Images -> embeddings as the criterion sees them.

        A tuple output is returned whole unless ``output_index`` picks an element (the loss
        adapter's ``extra_embedding`` chooses otherwise).
        """
        method = self.embed if callable(self.embed) else getattr(module, self.embed or "forward")
        index = self.output_index
        # a momentum encoder / teacher is not trained: no graph (as lightly's examples detach)
        frozen = isinstance(self.embed, str) and self.embed.endswith(("_momentum", "_teacher"))

        def embed(x: Tensor) -> Tensor:
            with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
                out = method(x)
            if isinstance(out, (tuple, list)) and index is not None:
                out = out[index]
            if not isinstance(out, (Tensor, tuple, list)):
                raise ModuleContractError(
                    f"The embedding function returned a {type(out).__name__}, not a tensor. Pass "
                    "ModuleRoles(embed=..., output_index=...) naming a method and element that "
                    "give one embedding tensor per image."
                )
            return out

        return embed

    def criterion_module(self, module: nn.Module) -> nn.Module | None:
        """The loss object ``training_step`` calls, or ``None`` if the module has none."""
        if self.criterion is None:
            return None
        try:
            return module.get_submodule(self.criterion)
        except AttributeError:  # a criterion that is not an nn.Module: the caller says why
            return getattr(module, self.criterion, None)

    def with_online_embedding(self) -> ModuleRoles:
        """These roles with views embedded by the module's ``forward`` — the online / query /
        student encoder, with gradient — in place of a momentum / teacher forward."""
        return replace(self, embed=ONLINE_EMBED)

    def backbone_module(self, module: nn.Module) -> nn.Module:
        if self.backbone is None:
            raise ModuleContractError(
                f"{type(module).__name__} has no backbone: none of the attributes "
                f"{', '.join(BACKBONE_NAMES)}. Pass roles=ModuleRoles(backbone='<attribute>') or "
                "embed_fn= (a callable images -> embeddings)."
            )
        return _child(module, self.backbone, "backbone")

    def head_module(self, module: nn.Module) -> nn.Module:
        if self.head is None:
            raise ModuleContractError(
                f"{type(module).__name__} has no projection head: none of the attributes "
                f"{', '.join(HEAD_NAMES)}. Pass roles=ModuleRoles(head='<attribute>') or "
                "embed_fn= (a callable images -> embeddings)."
            )
        return _child(module, self.head, "head")


def _check_pair(module: nn.Module, online: str, copy: str) -> None:
    a = _child(module, online, "online side of a momentum pair")
    b = _child(module, copy, "copy side of a momentum pair")
    sa = {k: tuple(v.shape) for k, v in a.state_dict().items()}
    sb = {k: tuple(v.shape) for k, v in b.state_dict().items()}
    if sa != sb:
        diff = sorted(set(sa.items()) ^ set(sb.items()))[:3]
        raise ModuleContractError(
            f"{online!r} and {copy!r} are paired as online/copy, but their weights differ in "
            f"names or shapes (e.g. {diff}); the copy cannot be synced from the online weights. "
            "Pass roles=ModuleRoles(momentum_pairs=[...]) with matching sub-modules, or "
            "momentum_pairs=() for none."
        )


def resolve_roles(module: nn.Module, roles: ModuleRoles | None = None) -> ModuleRoles:
    """``roles`` (default: all conventions) resolved on ``module``."""
    return (roles or ModuleRoles()).resolve(module)



ROLE_KEYS = (
    "backbone", "head", "momentum_pairs", "memory_banks", "embed", "output_index", "criterion"
)


def parse_role(text: str) -> tuple[str, str]:
    """One ``NAME=VALUE`` role setting of the command line, e.g. ``momentum_pairs=enc:enc_ema``."""
    key, sep, value = text.partition("=")
    key, value = key.strip(), value.strip()
    if not sep or key not in ROLE_KEYS or not value:
        raise ValueError(
            f"expected NAME=VALUE with NAME one of {', '.join(ROLE_KEYS)} (e.g. "
            f"backbone=encoder, momentum_pairs=encoder:encoder_ema, memory_banks=none); got {text!r}"
        )
    return key, value


def roles_from_settings(settings: Sequence[tuple[str, str]]) -> ModuleRoles | None:
    """``ModuleRoles`` from command-line settings (``None`` without any).

    ``momentum_pairs`` is a comma-separated list of ``online:copy``, ``memory_banks`` a
    comma-separated list of names; ``none`` means an empty list.
    """
    if not settings:
        return None
    fields: dict[str, object] = {}
    for key, value in settings:
        if key in ("momentum_pairs", "memory_banks"):
            items = [] if value.lower() == "none" else [v.strip() for v in value.split(",") if v.strip()]
            if key == "momentum_pairs":
                pairs = [tuple(v.split(":")) for v in items]
                bad = [":".join(p) for p in pairs if len(p) != 2 or not all(p)]
                if bad:
                    raise ValueError(
                        f"momentum_pairs entries are online:copy (e.g. backbone:backbone_ema); got {bad}"
                    )
                fields[key] = tuple(pairs)
            else:
                fields[key] = tuple(items)
        elif key == "output_index":
            try:
                fields[key] = int(value)
            except ValueError:
                raise ValueError(f"output_index must be a whole number; got {value!r}") from None
        else:
            fields[key] = value
    return ModuleRoles(**fields)  # type: ignore[arg-type]
