"""Alignment Calibration (AC): calibrate how strongly the forget samples' views align.

Wang, Lu, Zhang, Boenisch, Dziedzic, Yu, Gao, "Alignment Calibration: Machine Unlearning for
Contrastive Learning under Auditing", arXiv:2406.03603 (TMLR 2025 as "MUC").
"""

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
    defaults = {"alpha": 1.0, "beta": 8.0, "gamma": None, "extra_encoder": "auto"}
    help = {
        "alpha": "weight of the forget rows' alignment part",
        "beta": "positive calibration weight, scaled by |D_forget|/|D_train| as in the reference "
        "(how the default 8.0 was chosen, and when to change it: docs/benchmarks/results/beta.md)",
        "gamma": "weight of the forget rows' uniformity part (None: tied to alpha; see "
        "`lightly-unlearn list loss_adapter` for what it means per loss)",
        "extra_encoder": "which encoder embeds the extra own view of positive calibration: "
        "'online' (the module's forward, with gradient: both views of the penalty are pushed), "
        "'momentum' (the momentum / teacher encoder, e.g. forward_momentum, without gradient: "
        "only the query side is pushed; the reference's choice for MoCo) or 'auto' (default: "
        "'online' for contrastive losses such as SimCLR and MoCo, the no-gradient target side "
        "for BYOL, SimSiam and DINO; measured in docs/benchmarks/ac_moco.md); an explicit "
        "embed_fn or ModuleRoles(embed=...) is used as given",
    }
    EXTRA_ENCODERS = ("auto", "online", "momentum")
    before_option = {"extra_encoder": "momentum"}

    @property
    def extra_view(self) -> bool:  # type: ignore[override]
        """The extra own view is only needed (and embedded) for positive calibration, β > 0."""
        return self.hparams["beta"] > 0

    @property
    def extra_encoder(self) -> str:  # type: ignore[override]
        return self.hparams["extra_encoder"]

    def validate(self) -> None:
        super().validate()
        if self.hparams["extra_encoder"] not in self.EXTRA_ENCODERS:
            raise ValueError(
                f"ac: extra_encoder must be one of {', '.join(map(repr, self.EXTRA_ENCODERS))}; "
                f"got {self.hparams['extra_encoder']!r}."
            )
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
