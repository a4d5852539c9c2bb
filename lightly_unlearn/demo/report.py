"""The demo's outputs: the printed table, ``report.md``, ``results.json`` and the plots."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lightly_unlearn.audits.alignment import forgetting_score
from lightly_unlearn.audits.figures import gap_figure, save_figure
from lightly_unlearn.io import atomic_write, atomic_write_json

#: (key, header, format) of the table columns, in the benchmark's order.
COLUMNS = (
    ("ra", "RA", "{:.1f}"),
    ("ta", "TA", "{:.1f}"),
    ("ua", "UA", "{:.1f}"),
    ("emia", "EMIA", "{:.1f}"),
    ("cmia", "CMIA", "{:.1f}"),
    ("forget_holdout_auc", "F-vs-H AUC", "{:.3f}"),
    ("forget_holdout_tpr_at_1pct_fpr", "TPR@1%FPR", "{:.1f}"),
    ("avg_gap", "Avg.Gap", "{:.1f}"),
    ("indist_gap", "Indist.Gap", "{:.1f}"),
    ("relearn_forget_holdout_auc", "Relearned AUC", "{:.3f}"),
    ("relearn_gap", "Relearn.Gap", "{:.1f}"),
    ("forgetting_score", "FS", "{:.3f}"),
    ("time_vs_retrain", "time/RT", "{:.3f}"),
    ("steps_vs_retrain", "steps/RT", "{:.3f}"),
)


def aggregate(per_seed: Sequence[Sequence[Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """Mean and std over seeds of every numeric column, per method (in the order methods first
    appear), over the seeds that have the method: ``seeds`` says how many (merged runs may have
    evaluated some methods on fewer seeds than others)."""
    by_method: dict[str, list[Mapping[str, Any]]] = {}
    for seed_rows in per_seed:
        for r in seed_rows:
            by_method.setdefault(r["method"], []).append(r)
    out = []
    for rows in by_method.values():
        first = rows[0]
        row: dict[str, Any] = {"method": first["method"], "hyperparameters": first["hyperparameters"],
                               "epochs": first["epochs"], "seeds": len(rows)}
        for key, value in first.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "epochs":
                values = np.array([r.get(key, np.nan) for r in rows], dtype=float)
                row[key] = float(np.nanmean(values)) if not np.isnan(values).all() else math.nan
                row[f"{key}_std"] = float(np.nanstd(values)) if len(values) > 1 else 0.0
        out.append(row)
    return out


def _cell(row: Mapping[str, Any], key: str, fmt: str, with_std: bool) -> str:
    value = row.get(key)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    text = fmt.format(value)
    std = row.get(f"{key}_std")
    if with_std and std:
        text += " ± " + fmt.format(std)
    return text


def table(rows: Sequence[Mapping[str, Any]], with_std: bool = True, markdown: bool = False) -> str:
    """The results table: one row per method, the columns of :data:`COLUMNS` that any row has."""
    columns = [c for c in COLUMNS if any(c[0] in r for r in rows)]
    headers = ["method", *(h for _, h, _ in columns)]
    cells = [[str(r["method"]), *(_cell(r, k, f, with_std) for k, _, f in columns)] for r in rows]
    if markdown:
        lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        lines += ["| " + " | ".join(c) + " |" for c in cells]
        return "\n".join(lines)
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    fmt = lambda cs: "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cs, widths)))  # noqa: E731
    return "\n".join([fmt(headers), fmt(["-" * w for w in widths]), *map(fmt, cells)])


def comparison_plot(rows: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Forget-vs-holdout AUC and Avg. Gap per method, with Retrain's level marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["method"] for r in rows]
    x = np.arange(len(rows))
    relearned = any("relearn_forget_holdout_auc" in r for r in rows)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    colors = ["tab:gray" if n == "original" else "tab:green" if n == "retrain" else "tab:blue"
              for n in names]  # fmt: skip
    panels = [(axes[0], "forget_holdout_auc", -0.2 if relearned else 0.0), (axes[1], "avg_gap", 0.0)]
    if relearned:
        panels.insert(1, (axes[0], "relearn_forget_holdout_auc", 0.2))
    for ax, key, shift in panels:
        values = [r.get(key, np.nan) for r in rows]
        errors = [r.get(f"{key}_std", 0.0) for r in rows]
        width = 0.4 if relearned and ax is axes[0] else 0.8
        hatch = "//" if key.startswith("relearn_") else None
        ax.bar(x + shift, values, width, yerr=errors, color=colors, capsize=3, hatch=hatch,
               alpha=0.6 if hatch else 1.0)  # fmt: skip
        retrain = next((r.get(key) for r in rows if r["method"] == "retrain"), None)
        if retrain is not None and not key.startswith("relearn_"):
            ax.axhline(retrain, color="tab:green", linestyle="--", label="Retrain")
        ax.set_xticks(x, names, rotation=30, ha="right")
    axes[0].set_title("forget-vs-holdout AUC (0.5: never seen)"
                      + ("\nplain: after unlearning; hatched: after relearning" if relearned else ""))
    axes[1].set_title("Avg. Gap to Retrain (RA, TA, UA, EMIA, CMIA)")
    from matplotlib.patches import Patch

    for ax in axes:
        handles, _ = ax.get_legend_handles_labels()
        if ax is axes[0] and relearned:
            handles += [Patch(facecolor="white", edgecolor="black", label="after unlearning"),
                        Patch(facecolor="white", edgecolor="black", hatch="//", label="after relearning")]
        ax.legend(handles=handles, fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def write_outputs(out: Path, setting: Mapping[str, Any], rows: Sequence[Mapping[str, Any]],
                  per_seed: Sequence[Sequence[Mapping[str, Any]]],
                  gap_matrices: Mapping[str, np.ndarray], notes: Sequence[str] = ()) -> list[Path]:
    """``results.json``, ``report.md``, ``gap_<method>.png`` and ``comparison.png`` under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    written = [atomic_write_json(out / "results.json",
                          {"setting": dict(setting), "summary": list(rows), "per_seed": list(per_seed)})]
    for name, gap in gap_matrices.items():
        fs = forgetting_score(gap)
        written.append(save_figure(gap_figure(gap, f"Alignment gap matrix: {name} (forget samples)", fs),
                                   out / f"gap_{name}.png"))
    written.append(comparison_plot(rows, out / "comparison.png"))
    lines = ["# lightly-unlearn demo", "", "Setting: " + ", ".join(f"{k}={v}" for k, v in setting.items()), "",
             table(rows, markdown=True), "", *[f"* {n}" for n in notes], "",
             "![comparison](comparison.png)", ""]
    lines += [f"![{name}](gap_{name}.png)" for name in gap_matrices]
    written.append(atomic_write(out / "report.md", "\n".join(lines) + "\n"))
    return written
