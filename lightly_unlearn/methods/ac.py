"""Alignment Calibration (AC): calibrate how strongly the forget samples' views align (Wang et al., arXiv:2405.07317)."""

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
    defaults = {"alpha": 1.0, "beta": 4.0, "gamma": None, "partners": "forget",
                "calibration": "down"}
    help = {
        "alpha": "weight of the forget rows' alignment part",
        "beta": "positive calibration weight, scaled by |D_forget|/|D_train| as in the reference "
        "(default 4.0: no collapse and RA/TA within 2 points of fine-tune on lightly's ResNet-18 "
        "SimCLR/MoCo examples, best AC setting on the BatchNorm-CNN tuning seed; the MLP tuning "
        "chose 1 on SimCLR, 16 on MoCo; 16 collapsed small BatchNorm CNNs; the MoCo/CIFAR "
        "reference used 0)",
        "gamma": "weight of the forget rows' uniformity part (None: tied to alpha; see "
        "`lightly-unlearn list loss` for what it means per loss)",
        "partners": "where a forget sample's partner view comes from: 'forget' (another forget "
        "sample, the reference) or 'other_class' (a sample of another class, read from the "
        "dataset's targets: for forgetting a whole class)",
        "calibration": "'down' (the reference: lower the forget samples' alignment for the whole "
        "run) or 'matched' (toward the holdout's level: the forget terms run at full strength "
        "while the measured forget-vs-holdout alignment gap is positive, fade at parity and "
        "reverse past it; needs `holdout=` on the datamodule, costs one alignment check per "
        "epoch)",
    }
    CALIBRATIONS = ("down", "matched")
    #: Half-width (cosine) of the linear zone of the matched weight around parity.
    MATCHED_SCALE_FLOOR = 1e-3
    PARTNERS = ("forget", "other_class")

    @property
    def extra_view(self) -> bool:  # type: ignore[override]
        """The extra own view is only needed (and embedded) for positive calibration, β > 0."""
        return self.hparams["beta"] > 0

    @property
    def partners(self) -> str:  # type: ignore[override]
        return self.hparams["partners"]

    @property
    def needs_level_gap(self) -> bool:  # type: ignore[override]
        return self.hparams["calibration"] == "matched"

    def validate(self) -> None:
        super().validate()
        if self.hparams["calibration"] not in self.CALIBRATIONS:
            raise ValueError(
                f"ac: calibration must be one of {', '.join(map(repr, self.CALIBRATIONS))}; got "
                f"{self.hparams['calibration']!r}."
            )
        if self.hparams["partners"] not in self.PARTNERS:
            raise ValueError(
                f"ac: partners must be one of {', '.join(map(repr, self.PARTNERS))}; got "
                f"{self.hparams['partners']!r}."
            )
        gamma = self.hparams["gamma"]
        if gamma is not None and gamma < 0:
            raise ValueError(f"ac: gamma must be >= 0 or None; got {gamma}.")

    def matched_weight(self, level_gap: tuple[float, float] | None) -> float:
        """``clamp(gap / floor, −1, 1)`` from the epoch's ``(gap, standard error)``: full
        strength while the forget samples align more than never-seen ones, 0 at the holdout's
        level, reversed past it (1 for ``'down'``). Measured first: weights proportional to the
        gap over its start or over its standard error settled above parity (MLP SimCLR AUC
        0.60 / 0.60 vs 0.58 with this one)."""
        if not self.needs_level_gap:
            return 1.0
        if level_gap is None:
            raise RuntimeError("ac(calibration='matched') got no alignment level gap for this step.")
        gap, se = level_gap
        return max(-1.0, min(1.0, gap / self.MATCHED_SCALE_FLOOR))

    def objective(self, ctx: StepContext) -> Tensor:
        hp = self.hparams
        weight = self.matched_weight(ctx.level_gap)
        # matched: the forget rows fade out at parity (never pushed past it) ...
        alpha = hp["alpha"] * max(weight, 0.0)
        gamma = None if hp["gamma"] is None else hp["gamma"] * max(weight, 0.0)
        loss = alignment_calibration_objective(ctx.terms, ctx.forget, alpha, gamma)
        if hp["beta"] > 0:  # every rank joins the all-reduce, also with no extra view
            anchor = ctx.anchor[ctx.forget.to(ctx.anchor.device)]
            if ctx.image_text and ctx.second is not None:
                # CLIP: relative to non-matching captions, so no shared shift can pay for it
                term = relative_positive_calibration(anchor, ctx.extra, ctx.second)
            else:
                term = positive_calibration(anchor, ctx.extra)
            # ... and the positive calibration reverses sign past it
            loss = loss + weight * hp["beta"] * ctx.forget_fraction * term
        return loss
