"""Every optimizer step of an unlearning run descends the method's objective.

``UnlearnCallback`` changes what a step optimises by patching the module's criterion. A
``training_step`` that computes its loss some other way (a second loss object, a functional loss,
a detached or discarded criterion value) would silently train the plain loss, and a receipt would
name a method that never ran. :class:`ObjectiveCheck` marks each output of the patched criterion
with a gradient hook; before the optimizer step is applied it requires that the step called the
criterion and that backward reached every one of its outputs, i.e. that the loss the step
minimises depends on the method's objective. The hook holds no tensor and costs nothing, and
gradient accumulation (several backward passes per step) and manual optimization
(``manual_backward`` then ``optimizer.step()``) are checked the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import Tensor, nn

from lightly_unlearn.errors import ModuleContractError
from lightly_unlearn.losses.adapter import find_adapter


def other_loss_names(module: nn.Module, criterion: nn.Module) -> list[str]:
    """Names of the module's loss objects, other than ``criterion``, that a loss adapter serves
    (where a step that bypassed the criterion may have computed its loss)."""
    return [
        name for name, child in module.named_modules()
        if name and child is not criterion and find_adapter(child) is not None
    ]


class _Reached:
    """A gradient hook that records that backward reached the tensor it is registered on."""

    __slots__ = ("hit",)

    def __init__(self) -> None:
        self.hit = False

    def __call__(self, grad: Tensor) -> None:
        self.hit = True


class ObjectiveCheck:
    """The patched criterion's outputs since the last optimizer step.

    Call :meth:`track` on every output of the patched criterion and :meth:`verify` before each
    optimizer step.
    """

    def __init__(self) -> None:
        self._outputs: list[_Reached] = []

    def track(self, output: Tensor) -> None:
        """Remember one output of the patched criterion (its gradient hook reports backward).
        A call under ``torch.no_grad()`` (a logged value) cannot be the step's loss and is not
        counted."""
        if output.requires_grad:
            reached = _Reached()
            output.register_hook(reached)
            self._outputs.append(reached)

    def verify(
        self,
        module: nn.Module,
        method: str,
        criterion: str,
        other_losses: Callable[[], Sequence[str]] = tuple,
    ) -> None:
        """Before an optimizer step: the step called the criterion and its loss depends on every
        call's output. Raises ``ModuleContractError`` naming the module's ``training_step`` and
        the fix otherwise; ``other_losses()`` (asked only then) names other loss objects of the
        module the step may use instead."""
        outputs, self._outputs = self._outputs, []
        missed = sum(not reached.hit for reached in outputs)
        if outputs and not missed:
            return
        step = f"{type(module).__name__}.training_step"
        if not outputs:
            what = f"{step} did not call `self.{criterion}` with gradients enabled"
        else:
            what = (
                f"{step} called `self.{criterion}` but returned a loss that does not depend on "
                f"{missed} of its {len(outputs)} call(s) (no gradient reached them)"
            )
        fix = f"return the value of `self.{criterion}(...)` (or a sum containing it) from {step}"
        others = list(other_losses())
        if others:
            names = ", ".join(f"`self.{n}`" for n in others)
            fix += (
                f", or, if the step's loss comes from {names}, name it as the criterion: "
                f"`UnlearnCallback(..., roles=ModuleRoles(criterion={others[0]!r}))`"
            )
        raise ModuleContractError(
            f"{what}, so this step did not optimise the {method!r} objective (it replaces the "
            f"criterion's forward); the optimizer step was not applied. To fix: {fix}."
        )
