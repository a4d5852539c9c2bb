"""Row-terms adapter for lightly's ``DINOLoss`` (DINO: Caron et al., arXiv:2104.14294; Alignment
Calibration: Wang et al., arXiv:2406.03603)."""

from __future__ import annotations

from typing import Any

import torch
from lightly.loss import DINOLoss
from torch import Tensor, nn

from lightly_unlearn.losses.adapter import RowTermsAdapter
from lightly_unlearn.losses.rows import RowTerms


def _teacher_temperature(criterion: nn.Module, teacher_temp: float | None, epoch: int | None) -> Tensor:
    """The teacher temperature ``DINOLoss.forward`` uses for these arguments (warm-up schedule)."""
    if teacher_temp is not None:
        return torch.tensor(teacher_temp)
    if epoch is not None and epoch < criterion.warmup_teacher_temp_epochs:
        return criterion.teacher_temp_schedule[epoch]
    return torch.tensor(criterion.teacher_temp)


def dino_row_terms(
    criterion: nn.Module,
    teacher_out: list[Tensor],
    student_out: list[Tensor],
    teacher_temp: float | None = None,
    epoch: int | None = None,
    update_center: bool = True,
) -> RowTerms:
    """``N`` per-sample terms of lightly's ``DINOLoss``; their mean is the criterion's value.

    For sample ``u``, teacher views ``t`` and student views ``s`` (``t != s``, as lightly drops
    the pairs of the same view), with ``p_t = softmax((g_t(u) − c)/τ_t)`` (centred teacher) and
    ``f_s = f_s(u)/τ_s`` (student logits)::

        ℓ_u = mean_{t≠s} [ −⟨p_t, f_s⟩ + log Σ_d exp(f_s,d) ]      (positive, logsumexp)

    since ``Σ_d p_t,d = 1`` makes ``−⟨p_t, log softmax f_s⟩`` split into these two parts.
    The centre ``c`` is the one before this call; it is then updated once from the teacher
    outputs, as ``DINOLoss.forward`` does (``update_center=False`` leaves it alone).
    """
    teacher = torch.stack(list(teacher_out))  # (T, N, D)
    student = torch.stack(list(student_out))  # (S, N, D)
    temperature = _teacher_temperature(criterion, teacher_temp, epoch)
    p = nn.functional.softmax((teacher - criterion.center) / temperature, dim=-1)
    logits = student / criterion.student_temp
    # (T, S, N): the positive part of every (teacher view, student view) pair, per sample
    positive = torch.einsum("tnd,snd->tsn", p, logits)
    lse = torch.logsumexp(logits, dim=-1)  # (S, N)
    keep = ~torch.eye(len(teacher), len(student), dtype=torch.bool, device=positive.device)
    n_terms = int(keep.sum())
    if n_terms == 0:
        raise ValueError(
            "DINOLoss needs at least two views in total (the pairs of the same view are "
            f"excluded); got {len(teacher)} teacher and {len(student)} student view(s)."
        )
    weights = keep.to(positive.dtype)  # (T, S)
    pos = torch.einsum("ts,tsn->n", weights, positive) / n_terms
    # each student view's log-partition counts once per teacher view it is paired with
    log_partition = torch.einsum("s,sn->n", weights.sum(0), lse) / n_terms
    if update_center:
        criterion.update_center(teacher)
    return RowTerms(pos, log_partition, rows_per_sample=1)


class DINOAdapter(RowTermsAdapter):
    """``DINOLoss`` as lightly's DINO example calls it: ``criterion(teacher_out, student_out,
    epoch=...)`` with lists of per-view outputs — the teacher's of the 2 global crops, the
    student's of all crops (multi-crop: 2 global + N local), teacher outputs centred.

    Per sample ``u`` (one row each)::

        ℓ_u = mean_{t≠s} −⟨softmax((g_t(u) − c)/τ_t), log softmax(f_s(u)/τ_s)⟩
            = mean_{t≠s} [ −⟨p_t, f_s/τ_s⟩ + log Σ_d exp(f_s,d/τ_s) ]

    (``positive`` the first part, ``logsumexp`` the second); the mean over samples is lightly's
    value. The centre ``c`` is updated once per call, from the teacher outputs, as lightly does.

    Alignment Calibration (arXiv:2406.03603), forget sample ``u`` whose second global crop is
    another forget sample's (``x_π(u)``)::

        negative calibration:  α·(−mean ⟨p_t, f_s/τ_s⟩) + γ·mean log Σ_d exp(f_s,d/τ_s)
        positive calibration:  β·|D_f|/|D_train| · mean_u cos(f_1(u), g(t_extra x_u))

    The pairs ``(teacher view 0, student view 1)`` and ``(teacher view 1, student view 0 and the
    local crops)`` then match ``u`` with ``π(u)``; ``γ`` weighs the student's log-partition
    (the sharpness of its prototype distribution). ``f_1(u)`` is the student's output for ``u``'s
    first global crop, ``g(t_extra x_u)`` the teacher's (``forward_teacher``) for an extra own
    global crop, both head outputs (prototype scores).
    """

    name = "dino"
    target_extra_view = True
    losses = "lightly DINOLoss: DINO (multi-crop, teacher centering)"
    criterion_types = (DINOLoss,)
    gamma = (
        "weight of the forget rows' student log-partition log Σ_d exp(f_d/τ_s) (None: tied to alpha)"
    )
    calibration = (
        "forget row: α·(−⟨p_t, f_s/τ_s⟩) + γ·lse(f_s/τ_s) with a partner's global crop; positive: "
        "β·|D_f|/|D_train|·cos(f_1(u), g(t_extra x_u))"
    )

    def row_terms(self, criterion: nn.Module, *args: Any, **kwargs: Any) -> RowTerms:
        # lightly's DINOLoss.forward(teacher_out, student_out, teacher_temp=None, epoch=None)
        teacher_out, student_out, teacher_temp, epoch = self.arguments(criterion, args, kwargs)[:4]
        return dino_row_terms(criterion, teacher_out, student_out, teacher_temp, epoch)

    def anchor(self, criterion: nn.Module, *args: Any, call: int = 1, **kwargs: Any) -> Tensor:
        """The student's output for each sample's first (global) crop."""
        return self.arguments(criterion, args, kwargs)[1][0]

    def second(self, criterion: nn.Module, *args: Any, call: int = 1, **kwargs: Any) -> Tensor | None:
        """The teacher's output for the first global crop."""
        return self.arguments(criterion, args, kwargs)[0][0]
