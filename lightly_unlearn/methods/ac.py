"""Alignment Calibration (AC): calibrate how strongly the forget samples' views align (Wang et al., arXiv:2406.03603)."""

from __future__ import annotations

from torch import Tensor

from lightly_unlearn.losses.alignment_calibration import (
    alignment_calibration_objective,
    positive_calibration,
    relative_positive_calibration,
)
from lightly_unlearn.methods.base import StepContext, UnlearningMethod


class AlignmentCalibration(UnlearningMethod):
    name = "ac"
    summary = (
        "Retain rows: plain loss; forget rows: paired with another forget sample's view "
        "(α alignment, γ uniformity) + β' · cos of their own two views."
    )
    data = "mixed"
    pairs_forget = True
    defaults = {"alpha": 1.0, "beta": 8.0, "gamma": None}
    help = {
        "alpha": "weight of the forget rows' alignment part",
        "beta": "positive calibration weight, scaled by |D_forget|/|D_train| as in the reference "
        "(default 8.0, between overshoot and under-forgetting: best or within noise of the best "
        "of beta 1/4/8/16 on the MLP benchmark, 10 seeds; 16 overshoots there; on BatchNorm CNNs "
        "at 10x below the pretraining lr 16 forgets more per epoch; no collapse and TA not more "
        "than 0.2 below fine-tune's on lightly's ResNet-18 SimCLR/MoCo examples at lr 0.06 and "
        "0.006; the MoCo/CIFAR reference used 0; see the docs: docs/benchmarks/results/beta.md)",
        "gamma": "weight of the forget rows' uniformity part (None: tied to alpha; see "
        "`lightly-unlearn list loss` for what it means per loss)",
    }

    @property
    def extra_view(self) -> bool:  # type: ignore[override]
        """The extra own view is only needed (and embedded) for positive calibration, β > 0."""
        return self.hparams["beta"] > 0

    def validate(self) -> None:
        super().validate()
        gamma = self.hparams["gamma"]
        if gamma is not None and gamma < 0:
            raise ValueError(f"ac: gamma must be >= 0 or None; got {gamma}.")

    def objective(self, ctx: StepContext) -> Tensor:
        hp = self.hparams
        loss = alignment_calibration_objective(ctx.terms, ctx.forget, hp["alpha"], hp["gamma"])
        if hp["beta"] > 0:  # every rank joins the all-reduce, also with no extra view
            anchor = ctx.anchor[ctx.forget.to(ctx.anchor.device)]
            if ctx.image_text and ctx.second is not None:
                # CLIP: relative to non-matching captions, so no shared shift can pay for it
                term = relative_positive_calibration(anchor, ctx.extra, ctx.second)
            else:
                term = positive_calibration(anchor, ctx.extra)
            loss = loss + hp["beta"] * ctx.forget_fraction * term
        return loss
