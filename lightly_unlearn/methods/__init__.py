"""Unlearning methods (MUC family + Alignment Calibration); discovered through entry points."""

from lightly_unlearn.methods.base import StepContext, UnlearningMethod

__all__ = ["StepContext", "UnlearningMethod"]
