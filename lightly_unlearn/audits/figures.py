"""Figures of audit results: the alignment gap heat map a data owner reads, saved as PNG.

Matplotlib's ``Agg`` backend (no display needed); files are written atomically. Audits that
draw figures (``Audit.figures``) call :func:`result_gap_figure`; reports call
:func:`draw_figures` and :func:`save_figure`. Nothing here knows an audit by name.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lightly_unlearn.io import atomic_write

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
    row_name, col_name = ("image", "caption") if kind == "clip" else ("image", "image")
    for ax, panel in zip(axes, panels, strict=True):
        image = _draw_panel(ax, *panel, limit=limit, row_name=row_name, col_name=col_name)
    bar = fig.colorbar(image, ax=list(axes), shrink=0.85)
    what = "cos(image i, caption j)" if kind == "clip" else "alignment of i with j"
    bar.set_label(f"{what}: before - after")
    # placed by hand, outside the layout: the panels start below its last line
    fig.suptitle(heading, fontsize=10, y=1 - 0.05 / height, va="top", in_layout=False)
    legend = _wrap(_legend(kind, holdout_gap is not None), width + 40)
    bottom = 0.03 + 0.025 * (legend.count("\n") + 1) * 6.4 / fig.get_figheight()
    fig.get_layout_engine().set(rect=(0, bottom, 1, 1 - (title_height + 0.05) / height))
    fig.text(0.5, 0.01, legend, ha="center", va="bottom", fontsize=8)
    return fig


def _draw_panel(ax: Any, matrix: np.ndarray, names: list[str] | None, score: float | None,
                title: str, *, limit: float, row_name: str, col_name: str) -> Any:
    """One heat map on ``ax``: the diagonal outlined, samples named when there are few enough."""
    from matplotlib.patches import Rectangle

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
    ax.set_title(title + ("" if score is None else f"\nFS = {score:+.4f}"), fontsize=10)
    return image


def _legend(kind: str, with_holdout: bool) -> str:
    """What the colours mean, and what forgetting looks like."""
    legend = (
        "Red: the pair aligns less after unlearning than before; blue: more; white: unchanged. "
        "Forgetting shows as a diagonal (each "
        + ("image with its own caption" if kind == "clip" else "image with its own views")
        + ", outlined) redder than the off-diagonal."
    )
    if with_holdout:
        legend += " The never-seen panel shows how much the model changed anyway."
    return legend


def save_figure(fig, path: str | os.PathLike) -> Path:
    """Save a matplotlib figure as PNG, atomically."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return atomic_write(path, buffer.getvalue())


def result_gap_figure(
    result: Any,
    title: str,
    labeler: Any,
    verdict: Any,
    kind: str,
) -> Any:
    """The heat map of ``result.arrays["gap_matrix"]`` of an alignment-matrix audit result
    (``None`` without a gap matrix): its forgetting score, the holdout's drift panel when it
    was computed, samples named by ``labeler(split, keys)`` and ``verdict`` in the title."""
    arrays, metrics = result.arrays, result.metrics
    gap = arrays.get("gap_matrix")
    if gap is None:
        return None

    def names(split: str, key: str) -> list[str] | None:
        keys = arrays.get(key)
        return None if labeler is None or keys is None else labeler(split, keys)

    return gap_figure(
        gap,
        title,
        metrics.get("forgetting_score", metrics.get("clip_forgetting_score")),
        labels=names("forget", "keys"),
        holdout_gap=arrays.get("holdout_gap_matrix"),
        holdout_labels=names("holdout", "holdout_keys"),
        holdout_fs=metrics.get("holdout_drift_score"),
        verdict=None if verdict is None else verdict.line,
        warnings=None if verdict is None else verdict.warnings,
        kind=kind,
    )


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
