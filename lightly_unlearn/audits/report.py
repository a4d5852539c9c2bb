"""Audit outputs: ``audit.json``, ``report.md`` and the alignment gap heat map (PNG).

Files are written atomically (a temporary file in the same folder, then ``os.replace``), so a
crashed or concurrent run never leaves a half-written report. Figures use matplotlib's ``Agg``
backend (no display needed).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from lightly_unlearn.io import atomic_write, atomic_write_json  # noqa: F401  (one implementation)

#: How each metric reads, for the Markdown report.
DESCRIPTIONS = {
    "emia": "EMIA efficacy: % of forget samples judged non-members (compare to Retrain)",
    "emia_auc": "EMIA attack AUC, retain sample vs holdout",
    "forget_holdout_auc": "forget vs holdout AUC of alignment scores (0.5 = indistinguishable)",
    "alignment_level_gap": "mean alignment forget - mean alignment holdout",
    "ra": "linear probe accuracy on retain (%)",
    "ta": "linear probe accuracy on holdout/test (%)",
    "ua": "linear probe accuracy on forget (%)",
    "cmia": "CMIA efficacy: % of forget samples predicted non-member",
    "forgetting_score": "FS = mean(diag G) - mean(offdiag G), G = A_before - A_after (> 0: forgotten)",
    "forgetting_score_vs_holdout": "separation(A_after holdout) - separation(A_after forget) (about 0 = like never seen)",
    "holdout_drift_score": "FS of the holdout's own gap matrix (change on never-seen data)",
}


def write_json(path: str | os.PathLike, payload: Mapping[str, Any]) -> Path:
    """Atomic, strict JSON (``inf``/``nan`` written as strings)."""
    return atomic_write_json(path, payload)


def gap_figure(gap: np.ndarray, title: str = "Alignment gap matrix", fs: float | None = None):
    """A heat map of ``G = A_before - A_after``: diverging colours centred on 0, a labelled colour
    bar and the diagonal (each sample with itself) outlined."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    gap = np.asarray(gap, dtype=float)
    n = gap.shape[0]
    limit = float(np.abs(gap).max()) or 1e-6
    fig = Figure(figsize=(5.6, 4.8), dpi=100)
    ax = fig.add_subplot()
    image = ax.imshow(gap, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
    for i in range(n):
        ax.add_patch(Rectangle((i - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="black", lw=0.8))
    bar = fig.colorbar(image, ax=ax)
    bar.set_label("A_before - A_after (mean cosine similarity)")
    ax.set_xlabel("sample j")
    ax.set_ylabel("sample i")
    ax.set_title(title if fs is None else f"{title}\nforgetting score FS = {fs:+.4f}")
    fig.tight_layout()
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
) -> str:
    """A short Markdown table of before/after metrics with one line describing each."""
    keys = list(dict.fromkeys([*(before or {}), *(after or {})]))
    lines = [f"# {title}", ""]
    lines += ["| metric | before | after | meaning |", "|---|---|---|---|"]
    for key in keys:
        b = "" if before is None or key not in before else f"{before[key]:.4g}"
        a = "" if after is None or key not in after else f"{after[key]:.4g}"
        lines.append(f"| `{key}` | {b} | {a} | {DESCRIPTIONS.get(key, '')} |")
    if notes:
        lines += ["", *[f"* {n}" for n in notes]]
    return "\n".join(lines) + "\n"
