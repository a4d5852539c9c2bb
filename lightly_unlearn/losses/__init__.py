"""Losses: per-row terms of each supported loss (one ``RowTermsAdapter`` per loss, found through the
``lightly_unlearn.losses`` entry-point group) and the Alignment Calibration criterion (no Lightning
here)."""

from lightly_unlearn.losses.adapter import RowTermsAdapter, describe_adapters, find_adapter
from lightly_unlearn.losses.alignment_calibration import (
    AlignmentCalibrationLoss,
    alignment_calibration_objective,
    positive_calibration,
)
from lightly_unlearn.losses.rows import RowTerms, ntxent_row_terms, row_mask

__all__ = [
    "AlignmentCalibrationLoss",
    "RowTerms",
    "RowTermsAdapter",
    "alignment_calibration_objective",
    "describe_adapters",
    "find_adapter",
    "ntxent_row_terms",
    "positive_calibration",
    "row_mask",
]
