"""Audits that measure unlearning: EMIA, linear probe, CMIA, alignment matrices, verdict."""

from lightly_unlearn.audits.alignment import (
    AlignmentMatrix,
    alignment_matrix,
    alignment_scores,
    forgetting_score,
    gap_matrix,
    separation,
)
from lightly_unlearn.audits.base import Audit, AuditInputError, AuditResult
from lightly_unlearn.audits.cmia import CMIA, cmia_efficacy
from lightly_unlearn.audits.emia import EMIA, best_threshold, emia_metrics
from lightly_unlearn.audits.features import AuditInputs, SplitFeatures, extract_features
from lightly_unlearn.audits.probe import LinearProbe, fit_probe
from lightly_unlearn.audits.runner import (
    DEFAULT_AUDITS,
    compute_inputs,
    flat_metrics,
    resolve_audits,
    run_audits,
)
from lightly_unlearn.audits.verdict import Verdict, assess

__all__ = [
    "DEFAULT_AUDITS",
    "CMIA",
    "EMIA",
    "AlignmentMatrix",
    "Audit",
    "Verdict",
    "AuditInputError",
    "AuditInputs",
    "AuditResult",
    "LinearProbe",
    "SplitFeatures",
    "alignment_matrix",
    "alignment_scores",
    "assess",
    "best_threshold",
    "cmia_efficacy",
    "compute_inputs",
    "emia_metrics",
    "extract_features",
    "fit_probe",
    "flat_metrics",
    "forgetting_score",
    "gap_matrix",
    "resolve_audits",
    "run_audits",
    "separation",
]
