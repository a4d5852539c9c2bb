"""Render the documentation's benchmark pages from the result files.

Every number on ``docs/benchmarks/results/*.md`` comes from ``benchmarks/results/**/*.json``
through the benchmark's own table code (``benchmarks/unlearning.py``'s ``markdown``,
``benchmarks/class_forgetting.py``'s ``table``, ``benchmarks/resnet18_sanity.py``'s ``markdown``,
the demo's ``lightly_unlearn.demo.report.table``), so a column a benchmark adds appears here
without a change to this script, and no number is copied by hand. ``tests/test_docs_benchmarks.py``
fails when a committed page differs from what this script renders.

    python benchmarks/render_docs.py           # rewrite the pages
    python benchmarks/render_docs.py --check   # exit 1 and name the pages that differ
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PAGES_DIR = ROOT / "docs" / "benchmarks" / "results"
COMMAND = "python benchmarks/render_docs.py"


@cache
def benchmark(name: str) -> Any:
    """A benchmark script as a module (``benchmarks/`` is not a package)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _minutes(seconds: float | None) -> str:
    return "" if seconds is None else f", {seconds / 60:.0f} min wall"


def run_line(payload: dict[str, Any]) -> str:
    """How the file was produced: its command, wall time, and whether the run finished; for a
    merge of runs (``--merge-seeds``), each run with the seeds it evaluated."""
    if payload.get("merged_from"):
        runs = [f"`{m['command']}` (seeds {m['eval_seeds']}"
                + ("; stopped early: the seeds it finished" if m["partial"] else "") + ")"
                for m in payload["merged_from"]]
        return f"Merged with `--merge-seeds` from: {'; '.join(runs)}{_minutes(payload.get('seconds'))}."
    parts = [f"Command: `{payload['command']}`" if payload.get("command") else "",
             _minutes(payload.get("seconds")).lstrip(", ")]
    if payload.get("partial"):
        parts.append("**partial run** (it did not finish)")
    return "; ".join(p for p in parts if p) + "."


# -- one renderer per result format ---------------------------------------------------------------
def unlearning(payload: dict[str, Any]) -> str:
    """``benchmarks/unlearning.py`` results (and its ``--add-variants`` files)."""
    seeds = f"Tuning seeds {payload['tune_seeds']}, evaluation seeds {payload['eval_seeds']}."
    return "\n\n".join([seeds + " " + run_line(payload), benchmark("unlearning").markdown(payload).rstrip()])


def relearning(payload: dict[str, Any]) -> str:
    """``benchmarks/unlearning.py`` results with the relearning test: the relearned AUC against
    Retrain's per method first, then the full tables."""
    bench = benchmark("unlearning")
    return "\n\n".join([bench.relearn_summary(payload).rstrip(), "### All columns", unlearning(payload)])


def class_forgetting(payload: dict[str, Any]) -> str:
    """``benchmarks/class_forgetting.py`` results: one table and the paired comparisons per setting."""
    cf = benchmark("class_forgetting")
    out = [f"Evaluation seeds {payload['seeds']}. " + run_line(payload)]
    for setting, res in payload["results"].items():
        columns = cf.CLIP_COLUMNS if setting == "clip" else cf.MLP_COLUMNS
        chosen = res.get("chosen")
        out += [f"### {setting}", "Forget: " + str(res["config"].get("forget") or
                                                     f"class {res['config'].get('forget_class')}") + "."]
        if chosen:
            hp_text = benchmark("unlearning").hp_text
            out.append("Chosen on the tuning seeds: " + "; ".join(
                f"{name} {hp_text(c['hyperparameters'])} {c['epochs']} epochs".replace("  ", " ")
                for name, c in chosen.items()) + ".")
        out += [cf.table(res["summary"], columns), "```text\n" + cf.comparisons_text(res) + "\n```"]
    return "\n\n".join(out)


def resnet18_sanity(payload: dict[str, Any]) -> str:
    """``benchmarks/resnet18_sanity.py`` results."""
    setting = ", ".join(f"{k} {v}" for k, v in payload["setting"].items())
    note = f"Note recorded with the run: {payload['note']}." if payload.get("note") else ""
    return "\n\n".join(p for p in [f"Setting: {setting}. " + run_line(payload), note,
                                   benchmark("resnet18_sanity").markdown(payload)] if p)


def own_view(payload: dict[str, Any]) -> str:
    """``benchmarks/own_view_alignment.py`` results."""
    return "\n\n".join([run_line(payload), benchmark("own_view_alignment").markdown(payload)])


def ulira(payload: dict[str, Any]) -> str:
    """``benchmarks/ulira.py`` results."""
    return "\n\n".join([run_line(payload), benchmark("ulira").markdown(payload)])


def membership_scores(payload: dict[str, Any]) -> str:
    """``benchmarks/membership_scores.py`` results."""
    return "\n\n".join([f"{payload['parts']} part crops per image. " + run_line(payload),
                          benchmark("membership_scores").markdown(payload)])


def demo(payload: dict[str, Any]) -> str:
    """``benchmarks/record_demo.py``'s record of ``lightly-unlearn demo``."""
    from lightly_unlearn.demo.report import table

    m = payload["machine"]
    machine = (f"Produced by `{payload['command']}` in {payload['seconds']:.0f} s on {m['cpu']} "
               f"({m['cores']} cores, {m['os']}; Python {m['python']}, torch {m['torch']}, "
               f"numpy {m['numpy']}, scikit-learn {m['scikit-learn']}, lightly {m['lightly']}; "
               f"OMP_NUM_THREADS={m['OMP_NUM_THREADS']}"
               + (f"; load average {m['load_average']:.1f} when it started: the wall time includes "
                  "other work on the machine" if m.get("load_average") else "") + ").")
    setting = ", ".join(f"{k}={v}" for k, v in payload["setting"].items() if k != "seed")  # seeds 0..n-1
    return "\n\n".join([
        machine,
        "The demo pins one thread and deterministic kernels, so this machine prints these numbers "
        "again for the same seeds; **another CPU gives slightly different numbers** (floating-point "
        "sums in another order, over hundreds of training steps add up to different weights).",
        f"Setting: {setting}.",
        table(payload["summary"], markdown=True),
        "![Forget-vs-holdout AUC and Avg.Gap per method](../../demo_comparison.png)",
    ])


# -- the pages ------------------------------------------------------------------------------------
@dataclass
class Section:
    source: str  # relative to benchmarks/results
    title: str
    render: Callable[[dict[str, Any]], str]


@dataclass
class Page:
    name: str
    title: str
    intro: str
    sections: list[Section]


PAGES = [
    Page("demo.md", "The demo's table",
         "What `make demo` (`lightly-unlearn demo`) printed: every method against Retrain on the "
         "embedded setting, mean ± std over the seeds. How to read the columns: "
         "[benchmarks](../index.md#reading-the-tables).",
         [Section("demo.json", "Recorded run", demo)]),
    Page("unlearning.md", "Unlearning benchmark: every method against Retrain",
         "`benchmarks/unlearning.py`, protocol in [benchmarks](../index.md#the-unlearning-benchmark). "
         "Rows: each method's configuration chosen on the tuning seed(s), then its calibrated mode "
         "(`+stop`); paired rows: AC's gap minus the best baseline's per evaluation seed, with a 95 % "
         "Student-t interval (the best baseline is picked on the same seeds, which favours it slightly).",
         [Section("unlearning_mlp.json", "MLP setting (the demo's), SimCLR and MoCo", unlearning),
          Section("unlearning_cnn_simclr.json", "CNN setting (BatchNorm, lightly transforms, SGD), SimCLR", unlearning),
          Section("unlearning_cnn_moco.json", "CNN setting, MoCo", unlearning)]),
    Page("../relearning.md", "Relearning: which methods remove rather than hide",
         "After unlearning, a *copy* of each model trains on the **retain set only** for 10 % of the "
         "pretraining epochs (the forget samples are never shown) and the forget-vs-holdout AUC is "
         "measured again (`benchmarks/unlearning.py`, [protocol](index.md#the-unlearning-benchmark)). "
         "Retrain under the same test is the reference: per evaluation seed, each row's relearned AUC "
         "minus Retrain's, with a 95 % Student-t interval over seeds. Two attack strengths: the "
         "unlearning lr and the pretraining lr. In the MLP setting unlearning runs at the pretraining "
         "lr (Adam, `lr=2e-3`, `unlearn_lr=None`), so the two attacks are one and the same; the CNN "
         "setting unlearns at 0.006 and pretrains at 0.06. CNN MoCo is not measured (too costly on the "
         "2-core machine these ran on). **holds up**: the interval contains 0 or lies within ±0.05 of "
         "it, at ≤ 25 % of Retrain's wall time and optimizer steps (wall time on a shared machine is "
         "noisy, and Retrain's comes from the cache, measured when it was first run; steps are "
         "exact). An interval that contains 0 only because it is wide is weak evidence: read its "
         "width and the plain gaps too. Configurations: chosen on the tuning seed by Avg.Gap + "
         "Indist.Gap + Relearn.Gap at the unlearning lr, then reused for the other attack "
         "(`--chosen-from`). The CNN files merge runs of different commits (`--merge-seeds`; each "
         "run is named): on the seeds both measured, the later code reproduces the earlier runs' "
         "unlearned rows exactly (every column but wall time and the relearning test's). Which "
         "method to use: [methods](../guide/methods.md#which-method).",
         [Section("relearn_mlp.json", "MLP setting (the demo's), SimCLR and MoCo", relearning),
          Section("relearn_cnn_simclr.json", "CNN setting, SimCLR: relearning at the unlearning lr", relearning),
          Section("relearn_cnn_simclr_pretrain_lr.json", "CNN setting, SimCLR: relearning at the pretraining lr",
                  relearning)]),
    Page("beta.md", "Alignment Calibration's β on the evaluation seeds",
         "Every fixed-epoch AC configuration (`--add-variants ac:beta0 … ac:beta16`) on the "
         "evaluation seeds and cached references of the runs on the "
         "[unlearning page](unlearning.md), each against the best of them, paired per seed (the "
         "\"AC configuration\" tables); then the same on fresh seeds never used for any choice "
         "(`beta_confirm_*`). Why the default is what it is: [benchmarks](../index.md#ac-beta).",
         [Section("variants/beta_mlp.json", "MLP, evaluation seeds", unlearning),
          Section("variants/beta_cnn_simclr.json", "CNN SimCLR, evaluation seeds", unlearning),
          Section("variants/beta_cnn_moco.json", "CNN MoCo, evaluation seeds", unlearning),
          Section("variants/beta_confirm_mlp.json", "MLP, fresh seeds", unlearning),
          Section("variants/beta_confirm_cnn_simclr.json", "CNN SimCLR, fresh seeds", unlearning),
          Section("variants/beta_confirm_cnn_moco.json", "CNN MoCo, fresh seeds", unlearning)]),
    Page("class_forgetting.md", "Forgetting a whole class",
         "`benchmarks/class_forgetting.py --tune`: Fine-tune and AC each tuned over a grid of the "
         "same size on the tuning seed, evaluated on disjoint seeds against Retrain, paired per seed. "
         "The `ac_other` rows are AC with `partners='other_class'`, an option since "
         "[dropped](../dropped.md).",
         [Section("class_forgetting_tuned.json", "Tuned run", class_forgetting)]),
    Page("resnet18_sanity.md", "lightly's ResNet-18 examples: does unlearning collapse them?",
         "`benchmarks/resnet18_sanity.py`: lightly's SimCLR and MoCo example modules (torchvision "
         "ResNet-18 with BatchNorm), pretrained briefly on digits at 32 px, then one unlearning epoch "
         "of fine-tune and of AC at several β, at the pretraining lr and 10× lower. Mean cosine "
         "between *different* holdout images' embeddings (near 1: collapsed), head output std, "
         "linear-probe RA/TA and the audits' `collapse` warning. Brief pretraining: these runs test "
         "safety, not forgetting.",
         [Section("resnet18_sanity.json", "β 0, 1 and the default of the run's version (4)", resnet18_sanity),
          Section("resnet18_sanity_beta8_16.json", "β 4, 8 and 16", resnet18_sanity)]),
    Page("ac_moco.md", "AC on MoCo: which encoder embeds the extra view",
         "The tables behind [AC on MoCo](../ac_moco.md): the benchmark's MoCo rows re-measured "
         "(`--chosen-from`) with AC's extra view through the momentum encoder (`ac:momentum…`, the "
         "reference) and the online encoder (`ac:online…`), paired per seed; the own-view check; "
         "lightly's ResNet-18 MoCo example. Rows `ac:…:retain:…` are an option since "
         "[dropped](../dropped.md).",
         [Section("ac_moco_mlp.json", "MLP MoCo", unlearning),
          Section("ac_moco_cnn.json", "BatchNorm CNN MoCo", unlearning),
          Section("ac_moco_own_view.json", "Own-view check, lightly-style MoCo", own_view),
          Section("resnet18_moco_extra_encoder.json", "lightly's ResNet-18 MoCo example", resnet18_sanity)]),
    Page("per_example.md", "Per-example evidence: U-LiRA in the MLP setting",
         "The table behind [per-example evidence](../per_example.md): `benchmarks/ulira.py`, a "
         "per-example likelihood-ratio test over shadow runs, per method.",
         [Section("ulira_mlp.json", "MLP setting, SimCLR", ulira)]),
    Page("membership_scores.md", "Membership scores: EMIA's alignment vs PartCrop",
         "The tables behind [membership scores](../membership_scores.md): members vs never-seen "
         "digits of the pretrained CNN-setting models.",
         [Section("membership_scores_cnn.json", "CNN setting, SimCLR and MoCo", membership_scores)]),
    Page("dropped.md", "Tried and dropped: the measurements",
         "The result files of options and runs that no longer describe the library; what each "
         "showed and why it was dropped is on [tried and dropped](../dropped.md).",
         [Section("variants/matched_mlp.json", "AC calibration='matched', MLP", unlearning),
          Section("variants/matched_cnn_simclr.json", "AC calibration='matched', CNN SimCLR", unlearning),
          Section("variants/matched_cnn_moco.json", "AC calibration='matched', CNN MoCo", unlearning),
          Section("class_forgetting.json", "AC partners='other_class' (row ac_other), untuned run",
                  class_forgetting),
          Section("unlearning_simclr.json", "Earlier MLP run, SimCLR (before AC's whole-batch extra view)",
                  unlearning),
          Section("unlearning_moco.json", "Earlier MLP run, MoCo (before AC's whole-batch extra view)",
                  unlearning),
          Section("ac_moco_own_view_relative_retain.json",
                  "AC relative_to='retain', own-view check", own_view),
          Section("resnet18_moco_relative_retain.json", "AC relative_to='retain', lightly's ResNet-18 MoCo",
                  resnet18_sanity)]),
]


def render(page: Page) -> str:
    sources = [s.source for s in page.sections]
    lines = [f"<!-- Generated by `{COMMAND}` from benchmarks/results/: do not edit by hand. -->",
             f"# {page.title}", "",
             '!!! note "Generated page"',
             f"    Rendered from {', '.join(f'`benchmarks/results/{s}`' for s in sources)} by "
             f"`{COMMAND}`; edit the script or rerun the benchmark, not this page.", "",
             page.intro, ""]
    for section in page.sections:
        path = RESULTS / section.source
        if not path.is_file():
            raise SystemExit(f"{COMMAND}: {path.relative_to(ROOT)} is missing; run its benchmark first.")
        payload = json.loads(path.read_text(encoding="utf-8"))
        lines += [f"## {section.title}", "", f"`benchmarks/results/{section.source}`", "",
                  section.render(payload).rstrip(), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="compare with the committed pages; write nothing")
    args = p.parse_args(argv)
    stale = []
    for page in PAGES:
        path = Path(os.path.normpath(PAGES_DIR / page.name))  # "../x.md": a page beside the results
        text = render(page)
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(os.path.relpath(path, ROOT))
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        from lightly_unlearn.io import atomic_write

        atomic_write(path, text)
        print(f"wrote {os.path.relpath(path, ROOT)}")
    if stale:
        print(f"out of date (run `{COMMAND}`): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
