"""``audit.json``: the one layout every audit writer uses (``AuditCallback``, ``lightly-unlearn audit``).

An :class:`AuditRecord` holds what one audit run found; :meth:`AuditRecord.to_json` is the file::

    {
      "schema_version": 1,
      "when": "after",                  # or "epoch": an audit during training
      "config": {...},                  # what was run: audits, samples, views, models, folders
      "verdict": "...", "warnings": [{"code": ..., "message": ...}, ...],
      "image_names": [...], "holdout_names": [...],   # the heat maps' axis labels, in order
      "before": {metric: value}, "after": {metric: value},
      "arrays": {audit: {array: [...]}},              # of the "after" results
      "arrays_before": {audit: {array: [...]}},
      "history": [{"when", "epoch", "step", "metrics"}, ...]
    }

A metric that could not be measured is written as ``null``, never as a number that could be
read as a measurement: the TPR at a low FPR the holdout is too small to resolve (see
:func:`~lightly_unlearn.audits.membership.unresolved_low_fpr`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lightly_unlearn.audits.base import AuditResult
from lightly_unlearn.audits.membership import unresolved_low_fpr
from lightly_unlearn.audits.verdict import Verdict

SCHEMA_VERSION = 1


def result_arrays(results: Mapping[str, AuditResult]) -> dict[str, dict[str, Any]]:
    """``{audit: {array: values}}`` of audit results, without the sample positions (``*keys``:
    the record names the samples in ``image_names`` / ``holdout_names`` instead)."""
    return {
        name: {k: v for k, v in r.arrays.items() if not k.endswith("keys")}
        for name, r in results.items()
        if r.arrays
    }


def with_unresolved(metrics: Mapping[str, float] | None) -> dict[str, float | None] | None:
    """``metrics`` plus ``None`` for each low-FPR TPR its holdout could not resolve."""
    if metrics is None:
        return None
    return {**metrics, **dict.fromkeys(unresolved_low_fpr(metrics))}


@dataclass
class AuditRecord:
    """What one audit run found: the content of ``audit.json`` and of ``report.md``."""

    config: dict[str, Any]
    after: dict[str, float]
    before: dict[str, float] | None = None
    verdict: Verdict | None = None
    when: str = "after"
    image_names: list[str] | None = None
    holdout_names: list[str] | None = None
    arrays: dict[str, dict[str, Any]] = field(default_factory=dict)
    arrays_before: dict[str, dict[str, Any]] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The ``audit.json`` payload (see the module docstring)."""
        return {
            "schema_version": SCHEMA_VERSION,
            "when": self.when,
            "config": dict(self.config),
            "verdict": None if self.verdict is None else self.verdict.line,
            "warnings": [] if self.verdict is None else [dict(w) for w in self.verdict.warnings],
            "image_names": self.image_names,
            "holdout_names": self.holdout_names,
            "before": with_unresolved(self.before),
            "after": with_unresolved(self.after),
            "arrays": self.arrays,
            "arrays_before": self.arrays_before,
            "history": self.history,
        }
