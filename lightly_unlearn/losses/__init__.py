"""Losses: per-row contrastive terms and the Alignment Calibration criterion (no Lightning here)."""

from lightly_unlearn.losses.alignment_calibration import (
    AlignmentCalibrationLoss,
    alignment_calibration_objective,
    positive_calibration,
)
from lightly_unlearn.losses.rows import RowTerms, ntxent_row_terms, row_mask

__all__ = [
    "AlignmentCalibrationLoss",
    "RowTerms",
    "alignment_calibration_objective",
    "ntxent_row_terms",
    "positive_calibration",
    "row_mask",
]
