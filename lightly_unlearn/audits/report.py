"""Audit outputs: ``report.md`` (what a data owner reads) and ``audit.json``, from an :class:`AuditRecord`.

The report is given results, never runs audits: the caller passes the
:class:`~lightly_unlearn.audits.schema.AuditRecord`, the descriptions of the metrics
(``Audit.metric_info`` of the audits that ran) and their notes. Files are written atomically
(a temporary file in the same folder, then ``os.replace``), so a crashed or concurrent run never
leaves a half-written report.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lightly_unlearn.audits.figures import save_figure
from lightly_unlearn.audits.membership import LOW_FPRS, low_fpr_key, unresolved_low_fpr
from lightly_unlearn.audits.schema import AuditRecord
from lightly_unlearn.audits.verdict import Z
from lightly_unlearn.io import atomic_write, atomic_write_json

#: Metrics shown in their own section of the report, not in the metrics table.
_SECTION_PREFIXES = ("relearn_",)


def _drift_section(evidence: Mapping[str, float]) -> list[str]:
    if "forgetting_beyond_drift" not in evidence:
        return []
    se = evidence.get("forgetting_beyond_drift_se", float("nan"))
    return [
        "## Forgetting beyond general drift",
        "",
        "| forgetting score (your images) | holdout drift (never-seen images) | "
        "forgetting beyond general drift (95 %) |",
        "|---|---|---|",
        f"| {evidence.get('forgetting_score', float('nan')):+.4f} | "
        f"{evidence.get('holdout_drift_score', float('nan')):+.4f} | "
        f"{evidence['forgetting_beyond_drift']:+.4f} ± {Z * se:.4f} |",
        "",
        "The interval is ±1.96 bootstrap standard errors (samples resampled with "
        "replacement); a difference inside it is no evidence of forgetting.",
        "",
    ]


def _cell(metrics: Mapping[str, float] | None, key: str, missing: Mapping[str, str]) -> str:
    if metrics is None:
        return ""
    if key in missing:
        return missing[key]
    value = metrics.get(key)
    return "" if value is None else f"{value:.4g}"


def relearn_section(after: Mapping[str, float]) -> list[str]:
    """The relearning test (``relearn_*`` metrics of :mod:`lightly_unlearn.attacks.relearn`)."""
    if "relearn_forget_holdout_auc" not in after:
        return []
    missing = unresolved_low_fpr(after)
    rows = [("AUC", "forget_holdout_auc")] + [
        (f"TPR at {fpr:g} % FPR (%)", low_fpr_key(fpr, "forget_holdout_")) for fpr in LOW_FPRS.values()
    ]
    epochs = int(after.get("relearn_epochs", 0))
    lr = after.get("relearn_lr")
    lines = [
        "## Relearning test",
        "",
        f"| forget vs never-seen | before relearning | after {epochs} retain-only epoch(s) |",
        "|---|---|---|",
    ]
    for label, key in rows:
        lines.append(f"| {label} (`relearn_{key}`) | {_cell(after, f'relearn_before_{key}', missing)} "
                     f"| {_cell(after, f'relearn_{key}', missing)} |")  # fmt: skip
    low, high = (after.get(f"relearn_forget_holdout_auc_change_ci_{s}", math.nan) for s in ("low", "high"))
    lines += [
        "",
        f"AUC change {after.get('relearn_forget_holdout_auc_change', math.nan):+.3f}, 95 % interval "
        f"[{low:+.3f}, {high:+.3f}] (paired percentile bootstrap over the same forget and "
        "holdout samples). A copy of the unlearned model trained on the retain set only, with "
        "the model's own training step and optimizer"
        + (f" at lr {lr:g}" if lr is not None else "")
        + "; the forget images were never shown, and the copy was discarded. `relearned` is "
        "raised when the AUC rose beyond that interval and the relearned AUC's interval lies "
        "above 0.5. The reference for this test is a model retrained without the forget set; "
        "this run has none (benchmarks/unlearning.py measures Retrain under the same test).",
        "",
    ]
    return lines


def markdown_report(
    record: AuditRecord,
    title: str = "Unlearning audit",
    notes: Sequence[str] = (),
    metric_info: Mapping[str, Any] | None = None,
) -> str:
    """The report: verdict and warnings, forgetting beyond drift, the relearning test, then a
    table of every before/after metric with the meaning ``metric_info`` gives it (``{metric:
    MetricInfo}``, e.g. :func:`~lightly_unlearn.audits.base.metric_descriptions` of the audits
    that ran), then ``notes``. A low-FPR TPR the holdout cannot resolve reads "needs ≥ 1000
    holdout samples", never a number."""
    info = metric_info or {}
    before, after, verdict = record.before, record.after, record.verdict
    lines = [f"# {title}", ""]
    if verdict is not None:
        lines += [f"**Verdict:** {verdict.line}", ""]
        if verdict.warnings:
            lines += ["## Warnings", "", *[f"* `{w['code']}`: {w['message']}" for w in verdict.warnings], ""]
        lines += _drift_section(verdict.evidence)
    lines += relearn_section(after)
    missing_b = unresolved_low_fpr(before or {})
    missing_a = unresolved_low_fpr(after)
    keys = [k for k in dict.fromkeys([*(before or {}), *after]) if not k.startswith(_SECTION_PREFIXES)]
    for key in dict.fromkeys([*missing_b, *missing_a]):  # unresolved: listed beside their AUC
        if key not in keys and not key.startswith(_SECTION_PREFIXES):
            prefix = key[: key.index("tpr_at_")]  # "forget_holdout_", "clip_forget_holdout_"
            at = max((i for i, k in enumerate(keys) if k.startswith(prefix)), default=len(keys) - 1)
            keys.insert(at + 1, key)
    lines += ["## Metrics", "", "| metric | before | after | meaning |", "|---|---|---|---|"]
    for key in keys:
        meaning = info[key].description if key in info else ""
        lines.append(f"| `{key}` | {_cell(before, key, missing_b)} | {_cell(after, key, missing_a)} | {meaning} |")
    if notes:
        lines += ["", *[f"* {n}" for n in notes]]
    return "\n".join(lines) + "\n"


def write_report(
    folder: str | os.PathLike,
    record: AuditRecord,
    *,
    figures: Mapping[str, Any] | None = None,
    title: str = "Unlearning audit",
    notes: Sequence[str] = (),
    metric_info: Mapping[str, Any] | None = None,
    suffix: str = "",
) -> dict[str, Path]:
    """Write ``<figure>{suffix}.png`` per figure, ``audit{suffix}.json`` (``record.to_json()``)
    and ``report{suffix}.md`` (:func:`markdown_report`, figures linked) into ``folder``.

    The one report writer of :class:`~lightly_unlearn.callbacks.audit.AuditCallback` and
    ``lightly-unlearn audit``. Returns ``{"json": ..., "report": ..., <figure>: ...}`` paths.
    """
    folder = Path(folder)
    paths: dict[str, Path] = {}
    for name, fig in (figures or {}).items():
        paths[name] = save_figure(fig, folder / f"{name}{suffix}.png")
    paths["json"] = atomic_write_json(folder / f"audit{suffix}.json", record.to_json())
    report = markdown_report(record, title=title, notes=notes, metric_info=metric_info)
    for name in figures or {}:
        report += f"\n![{name.replace('_', ' ')}]({name}{suffix}.png)\n"
    paths["report"] = atomic_write(folder / f"report{suffix}.md", report)
    return paths


def audit_notes(audits: Sequence[Any], ran: Sequence[str]) -> list[str]:
    """The ``note`` of every audit in ``audits`` whose name is in ``ran``, in order."""
    return [a.note for a in audits if a.name in ran and getattr(a, "note", "")]
