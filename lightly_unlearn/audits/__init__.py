"""Audits that measure unlearning: EMIA, forget-vs-holdout membership (AUC, TPR at low FPR),
linear probe, CMIA, alignment matrices, verdict, and the ``audit.json`` record."""

from lightly_unlearn.audits.alignment import (
    AlignmentMatrix,
    alignment_matrix,
    alignment_scores,
    forgetting_score,
    gap_matrix,
    separation,
)
from lightly_unlearn.audits.base import Audit, AuditResult
from lightly_unlearn.audits.cmia import CMIA, cmia_efficacy
from lightly_unlearn.audits.emia import EMIA, best_threshold, emia_metrics
from lightly_unlearn.audits.features import AuditInputs, SplitFeatures, extract_features
from lightly_unlearn.audits.membership import (
    compare_aucs,
    forget_holdout_metrics,
    roc_auc,
    tpr_at_fpr,
)
from lightly_unlearn.audits.probe import LinearProbe, fit_probe
from lightly_unlearn.audits.runner import (
    DEFAULT_AUDITS,
    compute_inputs,
    flat_metrics,
    resolve_audits,
    run_audits,
)
from lightly_unlearn.audits.schema import AuditRecord
from lightly_unlearn.audits.verdict import Verdict, assess
from lightly_unlearn.deprecation import moved_names

# errors live in lightly_unlearn.errors only
__getattr__ = moved_names(__name__, {"AuditInputError": "lightly_unlearn.errors"})

__all__ = [
    "DEFAULT_AUDITS",
    "CMIA",
    "EMIA",
    "AlignmentMatrix",
    "Audit",
    "Verdict",
    "AuditInputs",
    "AuditRecord",
    "AuditResult",
    "LinearProbe",
    "SplitFeatures",
    "alignment_matrix",
    "alignment_scores",
    "assess",
    "best_threshold",
    "cmia_efficacy",
    "compare_aucs",
    "compute_inputs",
    "emia_metrics",
    "extract_features",
    "fit_probe",
    "flat_metrics",
    "forget_holdout_metrics",
    "forgetting_score",
    "gap_matrix",
    "resolve_audits",
    "roc_auc",
    "run_audits",
    "separation",
    "tpr_at_fpr",
]
