"""Audit outputs: ``audit.json``, ``report.md`` and the alignment gap heat map (PNG).

Files are written atomically (a temporary file in the same folder, then ``os.replace``), so a
crashed or concurrent run never leaves a half-written report. Figures use matplotlib's ``Agg``
backend (no display needed).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lightly_unlearn.io import atomic_write, atomic_write_json  # noqa: F401  (one implementation)

#: Metrics of ``lightly-unlearn audit`` that no audit class reports.
_CLI_METRICS = {
    "alignment_data": "mean alignment score of the data owner's images",
}


def builtin_metric_info() -> dict[str, Any]:
    """``{metric: MetricInfo}`` declared by the built-in audits (see ``Audit.metric_info``)."""
    from lightly_unlearn.audits.alignment import AlignmentMatrix
    from lightly_unlearn.audits.base import MetricInfo, metric_descriptions
    from lightly_unlearn.audits.clip_audits import (
        ClipAlignmentGap,
        ClipPairMIA,
        ClipRetrieval,
        ClipZeroShot,
    )
    from lightly_unlearn.audits.cmia import CMIA
    from lightly_unlearn.audits.emia import EMIA
    from lightly_unlearn.audits.probe import LinearProbe

    classes = (EMIA, LinearProbe, CMIA, AlignmentMatrix, ClipPairMIA, ClipRetrieval,
               ClipZeroShot, ClipAlignmentGap)  # fmt: skip
    info = metric_descriptions(classes)  # type: ignore[arg-type]
    for key, text in _CLI_METRICS.items():
        info.setdefault(key, MetricInfo(text))
    return info


def __getattr__(name: str) -> Any:
    if name == "DESCRIPTIONS":  # {metric: description}, as the Markdown report prints it
        return {k: v.description for k, v in builtin_metric_info().items()}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def write_json(path: str | os.PathLike, payload: Mapping[str, Any]) -> Path:
    """Atomic, strict JSON (``inf``/``nan`` written as strings)."""
    return atomic_write_json(path, payload)


#: Axis labels name each sample up to this many samples; beyond, ticks are positions.
MAX_NAMED_SAMPLES = 40


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width)) if text else ""


def _heading(
    title: str,
    fs: float | None,
    two_panels: bool,
    kind: str,
    verdict: str | None,
    warnings: list[dict[str, str]] | None,
    width: int,
) -> str:
    """The heat map's title: ``title`` (with FS for one panel), the verdict and the warning
    codes, each wrapped at ``width`` characters."""
    heading = title if fs is None or two_panels else f"{title}: FS = {fs:+.4f}"
    if kind == "clip" and "caption" not in heading:
        heading = f"{heading} (image × caption)"
    lines = [_wrap(heading, width)]
    if verdict:
        lines.append(_wrap(verdict, width))
    if warnings:
        codes = ", ".join(dict.fromkeys(w["code"] for w in warnings))
        lines.append(_wrap(f"warnings: {codes}", width))
    return "\n".join(lines)


def gap_figure(
    gap: np.ndarray,
    title: str = "Alignment gap matrix",
    fs: float | None = None,
    *,
    labels: list[str] | None = None,
    holdout_gap: np.ndarray | None = None,
    holdout_labels: list[str] | None = None,
    holdout_fs: float | None = None,
    verdict: str | None = None,
    warnings: list[dict[str, str]] | None = None,
    kind: str = "image",
):
    """A heat map of ``G = A_before - A_after`` a data owner can read.

    Diverging colours centred on 0 (one colour scale for every panel), the diagonal (each sample
    with itself) outlined, axis labels naming the samples (``labels``: file names or ids, shown
    for up to :data:`MAX_NAMED_SAMPLES` samples), a legend saying what the colours mean and that
    forgetting shows as a diagonal stronger than the off-diagonal, and, with ``holdout_gap``, a
    second panel with the same map for never-seen images. The title carries ``verdict`` and the
    warning codes. ``kind="clip"`` labels rows images and columns captions (image × caption).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    panels = [(np.asarray(gap, dtype=float), labels, fs, "your images (forget set)")]
    if holdout_gap is not None:
        panels.append(
            (np.asarray(holdout_gap, dtype=float), holdout_labels, holdout_fs,
             "never-seen images (holdout), for comparison")
        )  # fmt: skip
    limit = max(float(np.abs(p[0]).max()) for p in panels) or 1e-6
    named = max(len(p[0]) if p[1] is not None and len(p[0]) <= MAX_NAMED_SAMPLES else 0
                for p in panels)  # fmt: skip
    side = 4.6 + 0.06 * named
    width = int(60 * len(panels))
    heading = _heading(title, fs, holdout_gap is not None, kind, verdict, warnings, width)
    # the title's own height (10 pt lines, 1.2 line spacing) is added above the panels, so a long
    # verdict never runs into the panel titles
    title_height = (heading.count("\n") + 1) * 10 * 1.2 / 72 + 0.15
    height = side + 1.3 + title_height
    fig = Figure(figsize=(side * len(panels) + 1.2, height), dpi=100, layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    image = None
    row_name, col_name = ("image", "caption") if kind == "clip" else ("image", "image")
    for ax, (matrix, names, score, panel_title) in zip(axes, panels, strict=True):
        n = matrix.shape[0]
        image = ax.imshow(matrix, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
        for i in range(min(n, matrix.shape[1])):
            ax.add_patch(Rectangle((i - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="black", lw=0.8))
        if names is not None and n <= MAX_NAMED_SAMPLES:
            size = 8 if n <= 16 else 6 if n <= 28 else 5
            ax.set_xticks(range(n), [str(x) for x in names], rotation=90, fontsize=size)
            ax.set_yticks(range(n), [str(x) for x in names], fontsize=size)
        ax.set_xlabel(f"{col_name} j" + ("" if names is None or n <= MAX_NAMED_SAMPLES
                                         else " (names in audit.json)"))  # fmt: skip
        ax.set_ylabel(f"{row_name} i")
        ax.set_title(panel_title + ("" if score is None else f"\nFS = {score:+.4f}"), fontsize=10)
    bar = fig.colorbar(image, ax=list(axes), shrink=0.85)
    what = "cos(image i, caption j)" if kind == "clip" else "alignment of i with j"
    bar.set_label(f"{what}: before - after")
    # placed by hand, outside the layout: the panels start below its last line
    fig.suptitle(heading, fontsize=10, y=1 - 0.05 / height, va="top", in_layout=False)
    legend = (
        "Red: the pair aligns less after unlearning than before; blue: more; white: unchanged. "
        "Forgetting shows as a diagonal (each "
        + ("image with its own caption" if kind == "clip" else "image with its own views")
        + ", outlined) redder than the off-diagonal."
    )
    if holdout_gap is not None:
        legend += " The never-seen panel shows how much the model changed anyway."
    legend = _wrap(legend, width + 40)
    bottom = 0.03 + 0.025 * (legend.count("\n") + 1) * 6.4 / fig.get_figheight()
    fig.get_layout_engine().set(rect=(0, bottom, 1, 1 - (title_height + 0.05) / height))
    fig.text(0.5, 0.01, legend, ha="center", va="bottom", fontsize=8)
    return fig


def save_figure(fig, path: str | os.PathLike) -> Path:
    """Save a matplotlib figure as PNG, atomically."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return atomic_write(path, buffer.getvalue())


def markdown_report(
    before: Mapping[str, float] | None,
    after: Mapping[str, float] | None,
    title: str = "Unlearning audit",
    notes: list[str] | None = None,
    verdict: Any = None,
    metric_info: Mapping[str, Any] | None = None,
) -> str:
    """A short Markdown table of before/after metrics with one line describing each.

    With ``verdict`` (:class:`~lightly_unlearn.audits.verdict.Verdict`), the report opens with
    the one-line verdict, the warnings (code and message) and the forgetting score beside the
    holdout drift and their difference with its 95 % interval. ``metric_info`` (``{metric:
    MetricInfo}``, e.g. :func:`~lightly_unlearn.audits.base.metric_descriptions` of the audits
    run) describes the rows; by default the built-in audits' declarations.
    """
    info = {**builtin_metric_info(), **(metric_info or {})}
    keys = list(dict.fromkeys([*(before or {}), *(after or {})]))
    lines = [f"# {title}", ""]
    if verdict is not None:
        lines += [f"**Verdict:** {verdict.line}", ""]
        if verdict.warnings:
            lines += ["## Warnings", ""]
            lines += [f"* `{w['code']}`: {w['message']}" for w in verdict.warnings]
            lines.append("")
        ev = verdict.evidence
        if "forgetting_beyond_drift" in ev:
            se = ev.get("forgetting_beyond_drift_se", float("nan"))
            lines += [
                "## Forgetting beyond general drift",
                "",
                "| forgetting score (your images) | holdout drift (never-seen images) | "
                "forgetting beyond general drift (95 %) |",
                "|---|---|---|",
                f"| {ev.get('forgetting_score', float('nan')):+.4f} | "
                f"{ev.get('holdout_drift_score', float('nan')):+.4f} | "
                f"{ev['forgetting_beyond_drift']:+.4f} ± {1.96 * se:.4f} |",
                "",
                "The interval is ±1.96 bootstrap standard errors (samples resampled with "
                "replacement); a difference inside it is no evidence of forgetting.",
                "",
            ]
        lines += ["## Metrics", ""]
    lines += ["| metric | before | after | meaning |", "|---|---|---|---|"]
    for key in keys:
        b = "" if before is None or key not in before else f"{before[key]:.4g}"
        a = "" if after is None or key not in after else f"{after[key]:.4g}"
        meaning = info[key].description if key in info else ""
        lines.append(f"| `{key}` | {b} | {a} | {meaning} |")
    if notes:
        lines += ["", *[f"* {n}" for n in notes]]
    return "\n".join(lines) + "\n"


def draw_figures(
    audits: Sequence[Any],
    results: Mapping[str, Any],
    *,
    title: str,
    labeler: Any = None,
    verdict: Any = None,
) -> dict[str, Any]:
    """``{file stem: figure}`` of every figure the audits declare (``Audit.figures``) and can
    draw from their ``results``. Two audits declaring the same figure name: the later one is
    saved as ``<audit name>_<figure>``."""
    figures: dict[str, Any] = {}
    for audit in audits:
        result = results.get(audit.name)
        for name in getattr(audit, "figures", ()) if result is not None else ():
            fig = audit.figure(name, result, title=title, labeler=labeler, verdict=verdict)
            if fig is not None:
                figures[name if name not in figures else f"{audit.name}_{name}"] = fig
    return figures


def write_report(
    folder: str | os.PathLike,
    payload: Mapping[str, Any],
    *,
    before: Mapping[str, float] | None,
    after: Mapping[str, float] | None,
    figures: Mapping[str, Any] | None = None,
    title: str = "Unlearning audit",
    notes: list[str] | None = None,
    verdict: Any = None,
    metric_info: Mapping[str, Any] | None = None,
    suffix: str = "",
) -> dict[str, Path]:
    """Write ``<figure>{suffix}.png`` per figure, ``audit{suffix}.json`` (``payload``) and
    ``report{suffix}.md`` (metrics table, verdict, figures linked) into ``folder``, atomically.

    The one report writer of :class:`~lightly_unlearn.callbacks.audit.AuditCallback` and
    ``lightly-unlearn audit``. Returns ``{"json": ..., "report": ..., <figure>: ...}`` paths.
    """
    folder = Path(folder)
    paths: dict[str, Path] = {}
    for name, fig in (figures or {}).items():
        paths[name] = save_figure(fig, folder / f"{name}{suffix}.png")
    paths["json"] = write_json(folder / f"audit{suffix}.json", payload)
    report = markdown_report(
        before, after, title=title, notes=notes, verdict=verdict, metric_info=metric_info
    )
    for name in figures or {}:
        report += f"\n![{name.replace('_', ' ')}]({name}{suffix}.png)\n"
    paths["report"] = atomic_write(folder / f"report{suffix}.md", report)
    return paths
