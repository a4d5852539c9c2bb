"""The patched criterion: the user's loss object computes the unlearning method's objective.

For the duration of ``fit`` and on the instance only, the ``forward`` of the module's criterion
is replaced by the method's objective on per-row losses of the full batch (forget rows masked as
``concat([m, m])``), so the user's ``training_step`` runs unchanged and the module's structure
and checkpoint keys stay the user's. The rows come from the criterion's loss adapter; a step may
call the criterion several times (BYOL, SimSiam), each call returning the objective over its own
rows, and the metrics are logged once per step over all calls.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from lightly_unlearn.callbacks.unlearning.batch_norm import frozen_batch_norm_stats
from lightly_unlearn.errors import ModuleContractError
from lightly_unlearn.losses.adapter import RowTermsAdapter, describe_adapters, find_adapter
from lightly_unlearn.losses.rows import RowTerms, row_mask
from lightly_unlearn.methods.base import StepContext, UnlearningMethod
from lightly_unlearn.roles import EmbedFn, ModuleRoles

if TYPE_CHECKING:
    import lightning.pytorch as pl


def checked_adapter(module: nn.Module, criterion: Any, roles: ModuleRoles) -> RowTermsAdapter:
    """The loss adapter serving the module's criterion (refused when there is none)."""
    name = type(module).__name__
    if criterion is None:
        raise ModuleContractError(
            f"{name} has no attribute 'criterion'. UnlearnCallback changes "
            "the objective through the module's loss object, as in lightly's examples: store "
            "it as `self.criterion = NTXentLoss(...)` and call `self.criterion(z0, z1)` in "
            "training_step (or name your loss object: `roles=ModuleRoles(criterion='loss_fn')`). "
            "If your step computes the loss another way, use `AlignmentCalibrationLoss` there "
            "directly instead of the callback."
        )
    adapter = find_adapter(criterion)
    if adapter is None:
        raise ModuleContractError(
            f"{name}.{roles.criterion} is a {type(criterion).__name__}, which no installed loss "
            "adapter serves. Installed adapters (entry-point group "
            f"'lightly_unlearn.loss_adapters'): {describe_adapters()}. Use one of these losses, "
            "or add an adapter for yours: a RowTermsAdapter subclass registered under that group."
        )
    return adapter


def extra_view_embedding(
    module: nn.Module, adapter: RowTermsAdapter, roles: ModuleRoles, embed_fn: EmbedFn | None
) -> EmbedFn:
    """How AC's extra view is embedded: ``embed_fn``, else (CLIP) the own caption's normalised
    text embedding, else the roles' embedding (``forward_momentum``, ``forward_teacher`` or
    ``forward``)."""
    if embed_fn is not None:
        return embed_fn
    if adapter.image_text:
        return lambda tokens: module.encode_text(tokens, normalize=True)
    return roles.embed_fn(module)


def extra_view_roles(
    method: UnlearningMethod, adapter: RowTermsAdapter, roles: ModuleRoles,
    given: ModuleRoles | None,
) -> ModuleRoles:
    """``roles`` with the encoder AC's extra view goes through: the method's ``extra_encoder``
    (``"auto"``: the loss's own no-gradient target side for BYOL / SimSiam / DINO, else the
    online encoder). An embedding named in the ``given`` roles wins."""
    encoder = method.extra_encoder
    if encoder == "auto":
        encoder = "momentum" if adapter.target_extra_view else "online"
    if encoder == "online" and (given is None or given.embed is None):
        return roles.with_online_embedding()
    return roles


class StepCalls:
    """One training step as the patched criterion sees it.

    ``extra_views`` are the extra views of the *whole* batch (AC's positive calibration): they
    are embedded once per step, in one pass with the same batch composition as the anchors, and
    used by every criterion call of the step.
    """

    def __init__(self, forget: Tensor, extra_views: Tensor | None) -> None:
        self.forget = forget
        self.extra_views = extra_views
        self.calls = 0
        self.extra: Tensor | None = None
        self.extra_done = False
        self.logged: list[tuple[Tensor, RowTerms]] = []


class PatchedObjective:
    """The method's objective in place of the criterion's ``forward`` (see the module docstring).

    ``on_output`` sees each call's objective before it is returned (the non-finite guard and the
    objective check).
    """

    def __init__(
        self,
        method: UnlearningMethod,
        module: nn.Module,
        criterion: nn.Module,
        adapter: RowTermsAdapter,
        embed: EmbedFn,
        forget_fraction: float,
        on_output: Callable[[Tensor], None],
    ) -> None:
        self.method, self.module, self.criterion, self.adapter = method, module, criterion, adapter
        self.embed, self.forget_fraction, self.on_output = embed, forget_fraction, on_output
        self.step: StepCalls | None = None
        self.total_steps = 1

    def install(self) -> None:
        def forward(*args: Any, **kwargs: Any) -> Tensor:
            return self(*args, **kwargs)

        self.criterion.forward = forward  # instance attribute: structure and state_dict unchanged

    def restore(self) -> None:
        if "forward" in vars(self.criterion):
            del self.criterion.forward

    def begin_step(self, forget: Tensor, extra_views: Tensor | None) -> None:
        self.step = StepCalls(forget, extra_views)

    def __call__(self, *args: Any, **kwargs: Any) -> Tensor:
        criterion, adapter, step = self.criterion, self.adapter, self.step
        if step is None or not self.module.training:  # validation etc.
            return type(criterion).forward(criterion, *args, **kwargs)
        call = step.calls + 1  # this call's number within the step (BYOL / SimSiam call twice)
        anchor = adapter.anchor(criterion, *args, call=call, **kwargs)
        if anchor.shape[0] != step.forget.shape[0]:
            raise RuntimeError(
                f"The criterion was called with {anchor.shape[0]} samples but the batch has "
                f"{step.forget.shape[0]}. UnlearnCallback needs `criterion(z0, z1)` on the full, "
                "unsplit batch (the forget mask is per sample of the batch)."
            )
        step.calls = call
        terms = adapter.row_terms(criterion, *args, **kwargs)
        if not step.extra_done and step.extra_views is not None:
            step.extra = self.extra_embeddings(step.extra_views, step.forget)
            step.extra_done = True
        progress = min(self.module.trainer.global_step / self.total_steps, 1.0)
        context = StepContext(
            terms=terms,
            forget=step.forget,
            anchor=anchor,
            extra=step.extra,
            module=self.module,
            progress=progress,
            forget_fraction=self.forget_fraction,
            second=adapter.second(criterion, *args, call=call, **kwargs),
            image_text=adapter.image_text,
        )
        loss = self.method.objective(context)
        reg = self.method.regularizer(self.module, progress)
        if reg is not None:
            loss = loss + reg
        self.on_output(loss)
        step.logged.append((loss.detach(), terms))
        return loss

    def extra_embeddings(self, extra_views: Tensor, forget: Tensor) -> Tensor | None:
        """Embeddings of the forget samples' extra views, ``(F, D)`` in batch order."""
        forget = forget.to(extra_views.device)
        if not bool(forget.any()):
            return None
        if self.adapter.image_text:
            # CLIP: the extra "view" is the forget pairs' own caption tokens; the text tower has
            # no batch statistics, so only the forget captions are embedded
            return self.embed(extra_views[forget])
        # The extra views of the *whole* batch go through one pass, so BatchNorm normalises them
        # with the statistics of the same batch composition as the anchor views; only the forget
        # rows are used. That pass is kept out of BatchNorm's running statistics, which the
        # audits and the unlearned model use in eval mode.
        with frozen_batch_norm_stats(self.module):
            out = self.adapter.extra_embedding(self.embed(extra_views))
        return out[forget.to(out.device)]

    def log_step(self, module: pl.LightningModule) -> None:
        """Once per step, over every criterion call of the step: ``unlearn_loss`` is the mean of
        the calls' objectives (BYOL / SimSiam return ``0.5 · (call 1 + call 2)``), the row
        metrics are over the rows of all calls."""
        step, self.step = self.step, None
        if step is None or not step.logged:
            return
        forget, n = step.forget, step.forget.shape[0]
        parts = [t for _, t in step.logged]
        rows = torch.cat([row_mask(forget.to(t.positive.device), t.rows_per_sample) for t in parts])
        per_row = torch.cat([t.loss.detach() for t in parts])
        positive = torch.cat([t.positive.detach() for t in parts])
        losses = torch.stack([loss for loss, _ in step.logged])
        module.log("unlearn_loss", losses.mean(), prog_bar=True, batch_size=n)
        if (~rows).any():
            module.log("unlearn/retain_row_loss", per_row[~rows].mean(), batch_size=n)
        if rows.any():
            module.log("unlearn/forget_row_loss", per_row[rows].mean(), batch_size=n)
            module.log("unlearn/forget_alignment", positive[rows].mean(), batch_size=n)
