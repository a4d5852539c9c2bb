"""Alignment Calibration (AC) objective and its drop-in criterion.

Reference: Wang, Lu, Zhang, Boenisch, Dziedzic, Yu, Gao, "Alignment Calibration: Machine Unlearning
for Contrastive Learning under Auditing", arXiv:2406.03603 (TMLR 2025 as "MUC").
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from lightly.loss import NTXentLoss
from torch import Tensor

from lightly_unlearn.losses.rows import RowTerms, normalise, ntxent_row_terms, row_mask


def alignment_calibration_objective(
    terms: RowTerms, forget: Tensor, alpha: float = 1.0, gamma: float | None = None
) -> Tensor:
    """``[Σ_retain ℓ_r + Σ_forget (α·(−pos_u) + γ·lse_u)] / (#retain rows + α·#forget rows)``.

    Args:
        terms: Per-row terms of a batch whose forget rows already use partner views (negative
            alignment calibration happens in the data, see ``data.pairing``).
        forget: ``(N,)`` bool, per *sample*; expanded to rows with ``concat([m, m])``.
        alpha: Weight of the forget rows' alignment part.
        gamma: Weight of their uniformity part; ``None`` ties it to ``alpha`` (the reference),
            which makes the forget row term ``α·ℓ̃_u``.
    """
    gamma = alpha if gamma is None else gamma
    rows = row_mask(forget.to(terms.positive.device), terms.rows_per_sample)
    retain_rows = ~rows
    total = terms.loss[retain_rows].sum() + (
        -alpha * terms.positive[rows] + gamma * terms.logsumexp[rows]
    ).sum()
    denominator = retain_rows.sum() + alpha * rows.sum()
    return normalise(total, denominator)


def positive_calibration(anchor: Tensor, extra: Tensor | None) -> Tensor:
    """``mean_i cos(f(t1 x_i), f(t3 x_i))`` over the forget samples in the (global) batch.

    ``anchor`` and ``extra`` are ``(F, D)`` embeddings of two views of the same ``F`` forget
    samples. With no forget sample (or ``extra=None``: no extra embeddings on this device) the
    term is exactly zero (not NaN). Every rank must call this when β > 0, also with nothing to
    add: the global count is an all-reduce, and a rank that skipped it would pair the other
    ranks' all-reduce with DDP's gradient all-reduce (a hang or a wrong result).
    """
    if extra is None or anchor.shape[0] == 0 or extra.shape[0] == 0:
        total, count = anchor.sum() * 0.0, 0.0
    else:
        total = torch.nn.functional.cosine_similarity(anchor, extra, dim=1).sum()
        count = float(anchor.shape[0])
    return normalise(total, torch.tensor(count, device=anchor.device))


def relative_positive_calibration(anchor: Tensor, extra: Tensor | None, others: Tensor) -> Tensor:
    """``mean_i [cos(a_i, e_i) − mean_j cos(a_i, o_j)]``: own-pair similarity *relative to* the
    similarity to the batch's other embeddings ``others`` ``(N, D)``.

    An absolute penalty on ``cos(a_i, e_i)`` can be paid by moving every embedding along one
    shared direction (on a barely trained CLIP, β ≥ 4 sent every pair's cosine, forget and retain
    alike, to −0.97); a shift that lowers all similarities at once leaves this difference
    unchanged, so only the forget pairs' *own* alignment is calibrated. Used for image–text
    models, where ``others`` are the batch's caption embeddings. Zero with no forget sample.
    """
    if extra is None or anchor.shape[0] == 0 or extra.shape[0] == 0:
        total, count = anchor.sum() * 0.0 + others.sum() * 0.0, 0.0
    else:
        a = torch.nn.functional.normalize(anchor, dim=1)
        own = (a * torch.nn.functional.normalize(extra, dim=1)).sum(1)
        rest = (a @ torch.nn.functional.normalize(others, dim=1).T).mean(1)
        total, count = (own - rest).sum(), float(anchor.shape[0])
    return normalise(total, torch.tensor(count, device=anchor.device))


def swap_forget_partners(out1: Tensor, forget: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Negative calibration inside a batch: each forget row's second view becomes the second view
    of *another* forget sample of the batch (a random cyclic derangement, so π(i) ≠ i).

    With fewer than two forget samples in the batch nothing is swapped. Differentiable: the rows
    are moved with ``index_copy`` and keep their gradients.
    """
    rows = torch.nonzero(forget.to(out1.device), as_tuple=False).flatten()
    if rows.numel() < 2:
        return out1
    order = rows[torch.randperm(rows.numel(), generator=generator).to(rows.device)]
    return out1.index_copy(0, order, out1[order.roll(-1)])


class AlignmentCalibrationLoss(NTXentLoss):
    """NT-Xent with Alignment Calibration for forget samples: a drop-in for ``NTXentLoss``.

    Without a forget mask it *is* ``NTXentLoss`` (same constructor, same value). With one it
    returns Alignment Calibration's ``L_AC`` (arXiv:2406.03603)::

        [Σ_retain ℓ_r + Σ_forget (α·(−s(z_u, z_π(u))/τ) + γ·lse_u)] / (#retain + α·#forget rows)
            + β·forget_fraction · mean_forget cos(z_u, f(t3 x_u))

    Negative calibration needs each forget sample's second view to come from *another* forget
    sample: ``ForgetRetainDataModule`` builds such batches for ``UnlearnCallback(method="ac")``
    (a partner drawn from the whole forget set); with your own data pass ``swap_partners=True``
    and the criterion pairs the batch's forget rows among themselves. Positive calibration needs
    the embeddings of an extra view (``extra=``) when ``beta > 0``: embed the extra views of the
    **whole batch** in one pass, ``extra=model(x_extra)`` of shape ``(N, D)``, and the criterion
    uses the forget rows. With BatchNorm, embedding only the forget samples' extra views
    normalises them with forget-only batch statistics, and the model can lower every sample's
    ``cos(anchor, extra)`` at once through that difference (it collapsed lightly's ResNet-18
    SimCLR example); an ``(F, D)`` tensor of forget rows is still accepted for models without
    BatchNorm.

    Args:
        temperature: As in ``lightly.loss.NTXentLoss``.
        memory_bank_size: As in ``lightly.loss.NTXentLoss``.
        gather_distributed: As in ``lightly.loss.NTXentLoss``.
        alpha: Weight of the forget rows' alignment part.
        beta: Weight of the positive-calibration penalty (scaled by ``forget_fraction``).
        gamma: Weight of the forget rows' uniformity part; ``None`` means ``gamma = alpha``.
        forget_fraction: ``|D_forget| / |D_train|``; the reference scales β by it.
        swap_partners: Pair the batch's forget rows among themselves (see above).

    Example:
        >>> criterion = AlignmentCalibrationLoss(temperature=0.5, alpha=1.0, beta=1.0,
        ...                                      forget_fraction=0.1, swap_partners=True)
        >>> loss = criterion(z0, z1, forget_mask=is_forget, extra=model(x_extra))  # whole batch
    """

    def __init__(
        self,
        temperature: float = 0.5,
        memory_bank_size: int | Sequence[int] = 0,
        gather_distributed: bool = False,
        alpha: float = 1.0,
        beta: float = 0.0,
        gamma: float | None = None,
        forget_fraction: float = 1.0,
        swap_partners: bool = False,
    ) -> None:
        super().__init__(temperature, memory_bank_size, gather_distributed)
        self.swap_partners = swap_partners
        if alpha < 0 or beta < 0 or (gamma is not None and gamma < 0):
            raise ValueError(f"alpha, beta, gamma must be >= 0; got {alpha}, {beta}, {gamma}.")
        if not 0.0 <= forget_fraction <= 1.0:
            raise ValueError(f"forget_fraction must lie in [0, 1]; got {forget_fraction}.")
        self.alpha, self.beta, self.gamma = alpha, beta, gamma
        self.forget_fraction = forget_fraction

    def forward(
        self,
        out0: Tensor,
        out1: Tensor,
        forget_mask: Tensor | None = None,
        extra: Tensor | None = None,
    ) -> Tensor:
        """``out0, out1``: ``(N, D)`` views; ``forget_mask``: ``(N,)`` bool; ``extra``: ``(N, D)``
        embeddings of the whole batch's extra views (or ``(F, D)`` of the forget samples only, in
        ``forget_mask`` order)."""
        if forget_mask is None:
            return super().forward(out0, out1)
        forget_mask = torch.as_tensor(forget_mask, device=out0.device)
        if forget_mask.dtype != torch.bool or forget_mask.shape != (out0.shape[0],):
            raise ValueError(
                f"forget_mask must be a bool tensor of shape ({out0.shape[0]},), one flag per "
                f"sample of the batch; got dtype {forget_mask.dtype}, shape {tuple(forget_mask.shape)}."
            )
        if self.swap_partners:
            out1 = swap_forget_partners(out1, forget_mask)
        terms = ntxent_row_terms(self, out0, out1, forward=NTXentLoss.forward)
        loss = alignment_calibration_objective(terms, forget_mask, self.alpha, self.gamma)
        if self.beta > 0:  # every rank joins the all-reduce, also with no forget sample
            n_forget = int(forget_mask.sum())
            if extra is None:
                raise ValueError(
                    "beta > 0 penalises the similarity of each forget sample's own two views: pass "
                    "extra=model(x_extra), the embeddings of an extra view of every sample of the "
                    "batch (or set beta=0)."
                )
            if extra.shape == out0.shape:
                extra = extra[forget_mask]
            elif extra.shape != (n_forget, out0.shape[1]):
                raise ValueError(
                    f"extra must have shape {tuple(out0.shape)} (an extra view of every sample of "
                    f"the batch) or ({n_forget}, {out0.shape[1]}) (forget samples only); got "
                    f"{tuple(extra.shape)}."
                )
            anchor = out0[forget_mask]
            loss = loss + self.beta * self.forget_fraction * positive_calibration(anchor, extra)
        return loss
