"""NaN and infinity never reach the module's weights, at the price of about one read of the
gradients per step and no copy of the model.

What a training step meets, in order:

* every criterion call's objective is finite (before backward; all ranks decide together);
* before the optimizer step is applied: the step's gradients and the module's buffers (one read
  of their values for their norms, one device sync) and the optimizer's numeric settings (``lr``,
  ``momentum``, ...);
* the update itself. For optimizers whose update is bounded by the learning rate times the
  gradient and weight norms (``torch.optim`` SGD, Adam, AdamW, NAdam, RAdam, Adamax, RMSprop,
  Adagrad with ``eps > 0``, lightly's LARS), a tensor is *at risk* when
  ``lr·(‖g‖ + ‖w‖ + 1)·10⁶`` reaches ``max_float^(3/4)`` (``‖g‖`` the largest gradient norm seen,
  ``‖w‖`` the last measured weight norm); only tensors at risk are copied before the step and
  checked after it, and in ordinary training there are none. The 10⁶ leaves room for momentum
  buffers (up to ``1/(1 − momentum)`` gradients), Adam-style ratios and the weights' growth
  between measurements. For other optimizers every trained tensor is at risk: a copy per step,
  said once at fit start;
* every ``check_every`` (50) steps, the norms of all trained weights (the ``‖w‖`` above, and a
  last line for what the bound cannot foresee).

A failed check raises ``NonFiniteLossError`` before the update; ``UnlearnCallback`` then puts back
what the step's forward wrote (``rollback``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn

from lightly_unlearn.errors import NonFiniteLossError
from lightly_unlearn.losses.rows import global_sum

#: How far below the largest float a bounded update must stay before a tensor is at risk.
SAFETY = 1e6
_BOUNDED = ("SGD", "Adam", "AdamW", "NAdam", "RAdam", "Adamax", "RMSprop", "Adagrad")
_ADVICE = (
    "Lower the learning rate or the number of epochs (gradient ascent and NegGrad diverge "
    "easily), or lower `lam`."
)


def _bounded(optimizer: Any) -> bool:
    """Whether the guard knows a bound of ``optimizer``'s update (see the module docstring)."""
    cls = type(optimizer)
    known = (cls.__module__.startswith("torch.optim") and cls.__name__ in _BOUNDED) or (
        cls.__module__ == "lightly.utils.lars" and cls.__name__ == "LARS"
    )
    return known and all(float(g.get("eps", 1.0)) > 0 for g in optimizer.param_groups)


def _norms(tensors: list[Tensor]) -> Tensor:
    """The L2 norm of each tensor (float32), stacked on the first one's device: one read of the
    values. On the CPU each is a BLAS dot product (the fastest read there); on accelerators one
    fused multi-tensor kernel. A finite tensor whose squared norm overflows float32 reads as inf."""
    if not tensors:
        return torch.zeros(0)
    device = tensors[0].device
    if device.type == "cpu":
        squares = [
            torch.dot(t.view(-1), t.view(-1)).float()
            if t.dtype in (torch.float32, torch.float64) and t.is_contiguous()
            else torch.linalg.vector_norm(t, dtype=torch.float32).square()
            for t in tensors
        ]
        return torch.stack([sq.to(device) for sq in squares]).sqrt()
    norms = torch._foreach_norm(tensors, 2, dtype=torch.float32)
    return torch.stack([n.to(device) for n in norms])


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, Tensor) and value.numel() == 1:
        return float(value)
    return None


def _bad_setting(optimizer: Any) -> str | None:
    """``"lr=inf"`` for the first non-finite numeric setting of the optimizer, else ``None``."""
    for group in optimizer.param_groups:
        for key, value in group.items():
            for item in value if isinstance(value, (tuple, list)) and key != "params" else (value,):
                number = _number(item)
                if number is not None and not math.isfinite(number):
                    return f"{key}={number}"
    return None


class NonFiniteGuard:
    """The checks of the module docstring for one ``fit``; ``enabled=False`` keeps only the
    objective's."""

    def __init__(self, enabled: bool, check_every: int = 50) -> None:
        self.enabled, self.check_every = enabled, check_every
        self.copied = 0  # tensors copied before a step, over the fit (none in ordinary training)
        self._module: nn.Module | None = None
        self._names: dict[int, str] = {}
        self._watched: set[str] = set()  # buffers that must stay finite (not e.g. a -inf mask)
        self._bounded = True
        self._weights: dict[int, float] = {}  # id(parameter) -> its last measured norm
        self._grad_max: dict[int, float] = {}  # id(parameter) -> the largest gradient norm seen
        self._copies: list[tuple[Tensor, Tensor]] = []  # (tensor at risk, copy) of this step
        self._steps = 0

    @torch.no_grad()
    def start(self, module: nn.Module, optimizers: list[Any]) -> None:
        """Before the first step: what to watch, and the weight norms the bound starts from."""
        self._module = module
        self._names = {id(p): n for n, p in module.named_parameters()}
        self._watched = {
            n for n, b in module.named_buffers() if b.is_floating_point() and bool(torch.isfinite(b).all())
        }
        self._bounded = all(_bounded(o) for o in optimizers)
        if self.enabled and not self._bounded:
            names = ", ".join(sorted({type(o).__name__ for o in optimizers if not _bounded(o)}))
            rank_zero_warn(
                f"UnlearnCallback's non-finite guard knows no bound of the update of {names}: it "
                "copies the trained weights before every step to put them back if the step makes "
                "them NaN/inf (one copy of the weights; `keep_finite_weights=False` turns it off)."
            )
        if self.enabled:
            self._measure(step=0)

    def check_objective(self, loss: Tensor, step: int, method: str) -> None:
        """Raise if ``loss`` is NaN/inf on any rank (all ranks stop together: a rank raising
        alone would leave the others waiting in backward)."""
        if global_sum(torch.isfinite(loss).logical_not().float()) > 0:
            raise NonFiniteLossError(
                f"The {method} objective became {loss.item()} at step {step}; training stopped "
                "before this step, so the module keeps the weights of the last finite step. "
                + _ADVICE
            )

    @torch.no_grad()
    def before_step(self, optimizer: Any, step: int, scaled: bool) -> None:
        """Before the update: refuse it (raise) or let it go, copying the tensors at risk.
        ``scaled``: a gradient scaler skips steps with non-finite gradients itself."""
        setting = _bad_setting(optimizer)
        if setting is not None:
            raise NonFiniteLossError(
                f"The optimizer step at step {step} was not applied: the optimizer's {setting} "
                "would make the weights NaN/inf; the module keeps the weights of the last finite "
                "step. " + _ADVICE
            )
        if not self.enabled:
            return
        params, rates = [], []
        for group in optimizer.param_groups:
            used = [p for p in group["params"] if p.grad is not None]
            params += used
            rates += [float(group["lr"])] * len(used)
        grads = [p.grad for p in params]
        buffers = [b for n, b in self._module.named_buffers() if n in self._watched]
        norms = _norms(grads + buffers)
        bad_buffer = (~torch.isfinite(norms[len(grads):])).any().float()
        values = torch.cat([norms[: len(grads)], global_sum(bad_buffer).view(1)]).cpu()
        if values[-1] > 0:
            raise NonFiniteLossError(
                f"The forward pass of step {step} made the module's buffers (e.g. BatchNorm "
                "statistics) NaN/inf although the objective was finite; the step was not applied "
                "and the buffers were put back. " + _ADVICE
            )
        norms = values[:-1].tolist()
        self._refuse_gradients(params, norms, step, scaled)
        self._copy_at_risk(params, norms, rates)

    def _refuse_gradients(self, params: list[Tensor], norms: list[float], step: int, scaled: bool) -> None:
        bad = [p for p, n in zip(params, norms) if not math.isfinite(n)]
        if not bad or scaled:
            return
        what = "were NaN/inf" if not torch.isfinite(bad[0].grad).all() else "overflowed float32"
        raise NonFiniteLossError(
            f"The gradients of {len(bad)} weight tensor(s) (first: "
            f"{self._names.get(id(bad[0]), '?')}) {what} at step {step} although the objective "
            "was finite; the optimizer step was not applied, so the module keeps the weights of "
            "the last finite step. " + _ADVICE
        )

    def _copy_at_risk(self, params: list[Tensor], norms: list[float], rates: list[float]) -> None:
        for p, norm, lr in zip(params, norms, rates):
            key = id(p)
            if math.isfinite(norm):
                self._grad_max[key] = max(self._grad_max.get(key, 0.0), norm)
            limit = torch.finfo(p.dtype).max ** 0.75 if p.is_floating_point() else math.inf
            weight, grad = self._weights.get(key, math.inf), self._grad_max.get(key, math.inf)
            if not self._bounded or weight >= limit or lr * (grad + weight + 1) * SAFETY >= limit:
                self._copies.append((p, p.detach().clone()))
                self.copied += 1

    @torch.no_grad()
    def after_step(self, step: int) -> None:
        """After an applied update: the tensors at risk are finite (else put back and raise);
        every ``check_every`` steps, all trained weights are measured."""
        if not self.enabled:
            return
        self._steps += 1
        copies, self._copies = self._copies, []
        if copies:
            norms = _norms([t for t, _ in copies]).tolist()
            for (tensor, _), norm in zip(copies, norms):
                self._weights[id(tensor)] = norm
            bad = [self._names.get(id(t), "?") for (t, _), n in zip(copies, norms) if not math.isfinite(n)]
            if bad:
                for tensor, copy in reversed(copies):  # the earliest copy of a tensor last
                    tensor.copy_(copy)
                raise NonFiniteLossError(
                    f"The optimizer step at step {step} made {len(bad)} weight tensor(s) NaN/inf "
                    f"(first: {bad[0]}) although its gradients were finite; the weights from "
                    "before that step were put back. " + _ADVICE
                )
        if self._steps % self.check_every == 0:
            self._measure(step)

    def _measure(self, step: int) -> None:
        trained = [p for p in self._module.parameters() if p.requires_grad]
        norms = _norms(trained).tolist()
        self._weights.update((id(p), n) for p, n in zip(trained, norms))
        bad = [self._names.get(id(p), "?") for p, n in zip(trained, norms) if not math.isfinite(n)]
        if bad:
            raise NonFiniteLossError(
                f"{len(bad)} weight tensor(s) (first: {bad[0]}) were NaN/inf at step {step} "
                "although every step's objective and gradients were finite and no update was "
                "foreseen to overflow; without a copy they cannot be put back. " + _ADVICE
            )
