"""What a refused training step puts back.

A refused step (a non-finite objective, gradients or statistics, or a loss that bypassed the
objective) never reaches the optimizer, so the trainable weights are untouched. Its forward pass
and the module's own code in ``training_step`` may still have written elsewhere: buffers
(BatchNorm statistics, memory banks, DINO's centre) and frozen copies (momentum encoders and
teachers, moved by the step's EMA update). Buffers are small and are copied at the start of each
step (of each accumulation window). Until the first step is verified, the frozen parameters are
copied too, and for Retrain, which re-initialises everything before the first step, the whole
given state; that one-time copy is kept on the CPU and dropped after the first applied step.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class StepRollback:
    """The module's state from before the current step's forward, ready to put back."""

    def __init__(self) -> None:
        self._buffers: dict[str, Tensor] = {}
        self._first: dict[str, Tensor] | None = None  # until the first verified step (CPU)
        self._open = False  # a step (accumulation window) has started and not been applied

    @torch.no_grad()
    def start(self, module: nn.Module, whole_state: bool) -> None:
        """Before any step (and before Retrain re-initialises): the one-time copy."""
        state = module.state_dict(keep_vars=True)
        frozen = {n for n, p in module.named_parameters() if not p.requires_grad}
        self._first = {
            name: value.detach().to("cpu", copy=True)
            for name, value in state.items()
            if whole_state or name in frozen
        }
        self._open = False

    @torch.no_grad()
    def begin_step(self, module: nn.Module) -> None:
        """At a batch start: copy the buffers unless the current accumulation window is open."""
        if self._open:
            return
        self._open = True
        buffers = dict(module.named_buffers())
        saved = self._buffers
        if saved.keys() != buffers.keys() or any(
            saved[n].shape != b.shape or saved[n].dtype != b.dtype for n, b in buffers.items()
        ):
            self._buffers = {n: b.detach().clone() for n, b in buffers.items()}
        elif buffers:
            torch._foreach_copy_(list(saved.values()), list(buffers.values()))

    def applied(self) -> None:
        """An optimizer step was applied: the next batch starts a new window."""
        self._open = False
        self._first = None

    @torch.no_grad()
    def restore(self, module: nn.Module) -> None:
        """Put back the buffers from before the current step (and, before the first applied
        step, the one-time copy)."""
        if self._open:
            for name, buffer in module.named_buffers():
                if name in self._buffers:
                    buffer.copy_(self._buffers[name])
        if self._first:
            for name, value in module.state_dict(keep_vars=True).items():
                if name in self._first:
                    value.detach().copy_(self._first[name])
