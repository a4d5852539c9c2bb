"""Cost at real sizes: the data module, the audits and the command line's checks, up to 1 M samples.

Sections (``--only``; all by default except ``negrad``):

* ``datamodule`` — ``ForgetRetainDataModule`` on a dataset of N cheap items (no image, no
  model) at N = 10 k, 100 k, 1 M (10 M with ``--large``) and F = 1, 1 k, 100 k forget samples
  (F < N): set-up (validation, splits), the splits and forget-set hash on first access, and for
  each stream (``retain``: fine-tuning; ``forget``: gradient ascent; ``mixed``: AC with its
  partner views) the epoch *plan* (``set_epoch`` to the first index: what delays the first
  batch) and one *pass* (every index of the epoch and the item it names, as the loader's
  fetcher does, without collation).
* ``audits`` — the audit functions on synthetic scores at N = 1 k, 10 k, 100 k per split:
  EMIA (the exact threshold, the AUCs), alignment scores and cross-sample cosine over N views,
  the alignment matrix at its cap (64 forget samples, with the 1000-replicate bootstrap); and
  CMIA's SVC on K = 1 k, 3 k, 10 k members and as many non-members (the audit caps K at
  ``max_samples``, 10 k by default, whatever N is).
* ``cli`` — what ``lightly-unlearn unlearn`` does besides training, per image, on folders of
  2 k and 10 k PNGs: listing the folder, reading the forget list (1 % of the images), the
  image pre-check (full decode and SHA-256 of every file), the receipt's content commitment to
  the forget files, the check that no input changed (every file hashed again; the command does
  it twice), building AC's datamodule and the forget-set hash. Timed through the public
  functions the command calls (``lightly_unlearn.image_folder``, ``forget_commitment``,
  ``io``), not through its private set-up.
* ``negrad`` (``--negrad-epoch``) — one NegGrad epoch over 200 k samples (a 2-layer MLP on
  8-dim vectors, batch 256, CPU, Lightning) with 1 k and with 100 k forget samples,
  interleaved ``--repeats`` times: the per-batch work must not grow with the forget set.

Every case runs in a fresh Python process. Per case it prints wall time and two memory
figures: *py peak*, the peak of Python and NumPy allocations (``tracemalloc``, in a second run
of the same phase; torch tensors are not traced) and *RSS +*, the growth of the process's
peak resident set during the phase (Linux ``VmHWM``, reset before each phase; includes torch
tensors; ``-`` where ``/proc`` is unavailable). Growth between sizes is the exponent ``b`` of
a least-squares fit ``time = a * N^b`` on log-log axes (1: linear; 0: constant).

    OMP_NUM_THREADS=1 python benchmarks/scale.py                    # ~5 min on 2 CPU cores
    OMP_NUM_THREADS=1 python benchmarks/scale.py --large            # adds N = 10 M
    OMP_NUM_THREADS=1 python benchmarks/scale.py --only negrad --negrad-epoch
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

SECTIONS = ("datamodule", "audits", "cli", "negrad")
STREAMS = ("retain", "forget", "mixed")


# -- measuring ------------------------------------------------------------------------------------
def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


@contextlib.contextmanager
def phase(record: dict[str, Any], name: str) -> Iterator[None]:
    """Wall time and peak-RSS growth of the block, into ``record[name]`` / ``record[name + '_rss_mb']``."""
    can_reset = _reset_peak_rss()
    start_rss = _status_kb("VmRSS")
    start = time.perf_counter()
    yield
    record[name] = time.perf_counter() - start
    peak = _status_kb("VmHWM") if can_reset else None
    record[name + "_rss_mb"] = None if peak is None or start_rss is None else max(peak - start_rss, 0) / 1024


def python_peak_mb(fn: Callable[[], Any]) -> float:
    """Peak Python/NumPy allocation (MB) while ``fn`` runs (``tracemalloc``)."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def power_law_exponent(sizes: list[float], times: list[float]) -> float:
    """``b`` of the least-squares fit ``log t = log a + b log N`` (nan with fewer than 2 sizes)."""
    pairs = [(n, t) for n, t in zip(sizes, times, strict=True) if t and t > 0]
    if len({n for n, _ in pairs}) < 2:
        return float("nan")
    x, y = np.log([n for n, _ in pairs]), np.log([t for _, t in pairs])
    return float(np.polyfit(x, y, 1)[0])


# -- the data module ------------------------------------------------------------------------------
class CheapItems(torch.utils.data.Dataset):
    """N items ``(i, 0)``: indexing costs nothing, so only the data module's own work shows."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[int, int]:
        return i, 0


def two_views(item: Any) -> list[Any]:
    return [item, item]


def forget_ids(n: int, f: int, seed: int = 0) -> torch.Tensor:
    """``f`` distinct positions out of ``n``, seeded (drawn outside the timed phases)."""
    rng = np.random.default_rng(seed)
    return torch.from_numpy(np.sort(rng.choice(n, f, replace=False)))


def datamodule_case(n: int, f: int, batch_size: int = 256) -> dict[str, Any]:
    from lightly_unlearn import ForgetRetainDataModule

    data, ids = CheapItems(n), forget_ids(n, f)
    rec: dict[str, Any] = {"section": "datamodule", "n": n, "f": f}

    def build():
        return ForgetRetainDataModule(data, ids, two_views, batch_size=batch_size, seed=0)

    with phase(rec, "setup"):
        dm = build()
    rec["setup_py_mb"] = python_peak_mb(build)

    def splits(module):
        return module.retain, module.forget, module.forget_sha256

    with phase(rec, "splits"):
        splits(dm)
    rec["splits_py_mb"] = python_peak_mb(lambda: splits(build()))

    for stream in STREAMS:
        dm.configure(stream, extra_view=stream == "mixed")  # mixed: AC's paired views
        with phase(rec, f"{stream}_loader"):  # once per fit
            loader = dm.train_dataloader()
        rec[f"{stream}_loader_py_mb"] = python_peak_mb(dm.train_dataloader)
        sampler, train_set = loader.sampler, loader.dataset
        sampler.set_epoch(1)
        plans = []
        for _ in range(3):  # the plan is short: the fastest of three
            with phase(rec, f"{stream}_plan"):
                indices = iter(sampler)
                first = next(indices)
            plans.append(rec[f"{stream}_plan"])
        rec[f"{stream}_plan"] = min(plans)
        rec[f"{stream}_py_mb"] = python_peak_mb(lambda s=sampler: next(iter(s)))
        with phase(rec, f"{stream}_pass"):
            train_set[first]
            count = 1
            for i in indices:
                train_set[i]
                count += 1
        rec[f"{stream}_samples"] = count
    return rec


def plan_vs_forget_case(n: int, forget: list[int], repeats: int = 5) -> dict[str, Any]:
    """Epoch plans of every stream for several forget-set sizes, interleaved in one process
    (best of ``repeats``), so machine load does not pass for a dependence on F."""
    from lightly_unlearn import ForgetRetainDataModule

    samplers = {}
    for f in forget:
        dm = ForgetRetainDataModule(CheapItems(n), forget_ids(n, f), two_views, batch_size=256, seed=0)
        for stream in STREAMS:
            dm.configure(stream, extra_view=stream == "mixed")
            samplers[(stream, f)] = dm.train_dataloader().sampler
    best = dict.fromkeys(samplers, float("inf"))
    for epoch in range(repeats):
        for key, sampler in samplers.items():
            sampler.set_epoch(epoch)
            start = time.perf_counter()
            next(iter(sampler))
            best[key] = min(best[key], time.perf_counter() - start)
    return {"section": "plan_vs_forget", "n": n,
            "plans": {f"{stream}/{f}": t for (stream, f), t in best.items()}}


# -- the audits -------------------------------------------------------------------------------------
def audits_case(n: int, views: int = 4, dim: int = 32) -> dict[str, Any]:
    """The audit functions whose work grows with the samples given, and the capped matrix."""
    from lightly_unlearn.audits.alignment import (
        alignment_matrix,
        alignment_scores,
        bootstrap_forgetting_score,
        cross_sample_cosine,
        gap_matrix,
    )
    from lightly_unlearn.audits.emia import emia_metrics

    rec: dict[str, Any] = {"section": "audits", "n": n}
    feats = torch.randn(n, views, dim, generator=torch.Generator().manual_seed(0))
    rng = np.random.default_rng(0)
    members, nonmembers, forget = rng.normal(0.55, 0.1, n), rng.normal(0.5, 0.1, n), rng.normal(0.52, 0.1, n)
    with phase(rec, "emia"):  # exact threshold, attack AUC, forget-vs-holdout AUC
        emia_metrics(members, nonmembers, forget)
    with phase(rec, "alignment_scores"):  # EMIA's scores and collapse check over N samples
        alignment_scores(feats), cross_sample_cosine(feats)
    with phase(rec, "alignment_matrix"):  # capped at 64 forget samples
        before, after = alignment_matrix(feats[:64]), alignment_matrix(feats[:64].flip(1))
        bootstrap_forgetting_score(gap_matrix(before, after).numpy(), 1000)
    rec["emia_py_mb"] = python_peak_mb(lambda: emia_metrics(members, nonmembers, forget))
    return rec


def cmia_case(cap: int) -> dict[str, Any]:
    """CMIA's SVC on ``cap`` members and ``cap`` non-members (its cap per class), 1 k forget."""
    from lightly_unlearn.audits.cmia import cmia_efficacy

    rec: dict[str, Any] = {"section": "cmia", "cap": cap}
    members = np.random.default_rng(1).beta(5, 2, cap)  # same first values at every cap
    nonmembers = np.random.default_rng(2).beta(4, 2, cap)
    forget = np.random.default_rng(3).beta(4.5, 2, 1000)
    with phase(rec, "cmia"):
        cmia_efficacy(members, nonmembers, forget)
    return rec


# -- the command line's checks before training ------------------------------------------------------
def write_pngs(folder: Path, count: int, size: int = 32) -> list[str]:
    """``count`` small PNGs (scikit-learn digits, upscaled) in ``folder``; returns their names."""
    from audit_cost import digits_rgb

    images = digits_rgb(0, 1797, size)
    names = [f"img_{i:06d}.png" for i in range(count)]
    for i, name in enumerate(names):
        images[i % len(images)][0].save(folder / name)
    return names


def cli_case(count: int) -> dict[str, Any]:
    """The steps of ``lightly-unlearn unlearn`` before training, through the public functions."""
    from lightly_unlearn import ForgetRetainDataModule
    from lightly_unlearn.forget_commitment import commit_files
    from lightly_unlearn.image_folder import (
        ImageFolder,
        check_images,
        image_files,
        make_transform,
        read_forget_list,
    )
    from lightly_unlearn.io import sha256_file

    rec: dict[str, Any] = {"section": "cli", "n": count}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "images"
        data.mkdir()
        names = write_pngs(data, count)
        forget_file = Path(tmp) / "forget.txt"
        forget_file.write_text("\n".join(names[:: 100]) + "\n")
        with phase(rec, "listing"):
            found = image_files(data)
        with phase(rec, "forget_list"):
            forget = read_forget_list(forget_file, found)
        with phase(rec, "precheck"):  # full decode and SHA-256 of every image
            check_images(data, found)
        with phase(rec, "commitment"):  # the receipt's commitment to the forget files
            commit_files(data, [found[i] for i in forget])
        with phase(rec, "recheck"):  # inputs unchanged: every file hashed again (twice per run)
            for name in found:
                sha256_file(data / name)
        with phase(rec, "datamodule"):  # AC's stream, as the command builds it
            dm = ForgetRetainDataModule(ImageFolder(data, found), forget, make_transform("simclr", 32))
            dm.configure("mixed", extra_view=True)
        with phase(rec, "hash"):
            _ = dm.forget_sha256
        rec["precheck_py_mb"] = python_peak_mb(lambda: check_images(data, found))
    return rec


# -- a NegGrad epoch ----------------------------------------------------------------------------------
def negrad_case(n: int, f: int, batch_size: int = 256) -> dict[str, Any]:
    import lightning.pytorch as L
    from lightly.loss import NTXentLoss
    from torch import nn

    from lightly_unlearn import ForgetRetainDataModule, UnlearnCallback

    class MLP(L.LightningModule):  # lightly's example shape on 8-dim vectors
        def __init__(self) -> None:
            super().__init__()
            self.backbone = nn.Sequential(nn.Linear(8, 32), nn.ReLU())
            self.projection_head = nn.Linear(32, 16)
            self.criterion = NTXentLoss()

        def forward(self, x):
            return self.projection_head(self.backbone(x))

        def training_step(self, batch, batch_index):
            (x0, x1) = batch[0]
            return self.criterion(self.forward(x0), self.forward(x1))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    class Vectors(torch.utils.data.Dataset):
        def __init__(self) -> None:
            self.x = torch.randn(n, 8, generator=torch.Generator().manual_seed(0))

        def __len__(self) -> int:
            return n

        def __getitem__(self, i: int):
            return self.x[i], 0

    def views(x):
        return [x, x.flip(0)]

    times: dict[str, float] = {}

    class Start(L.Callback):  # first in the list: its epoch-start hook runs before every other one
        def on_train_epoch_start(self, trainer, pl_module):
            times["start"] = time.perf_counter()

    class End(L.Callback):  # last in the list: its epoch-end hook runs after every other one
        def on_train_epoch_end(self, trainer, pl_module):
            times["epoch"] = time.perf_counter() - times["start"]

    torch.manual_seed(0)
    dm = ForgetRetainDataModule(Vectors(), forget_ids(n, f), views, batch_size=batch_size, seed=0)
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", devices=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[Start(), UnlearnCallback("neggrad"), End()])
    trainer.fit(MLP(), datamodule=dm)
    return {"section": "negrad", "n": n, "f": f, "epoch": times["epoch"],
            "steps": int(trainer.global_step)}


CASES: dict[str, Callable[..., dict[str, Any]]] = {
    "datamodule": datamodule_case, "plan_vs_forget": plan_vs_forget_case, "audits": audits_case, "cmia": cmia_case, "cli": cli_case,
    "negrad": negrad_case,
}


def run_case(section: str, **kwargs: Any) -> dict[str, Any]:
    """One case in a fresh Python process (clean memory figures), its record back as JSON."""
    spec = json.dumps({"section": section, **kwargs})
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    out = subprocess.run([sys.executable, __file__, "--case", spec], env=env, check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- reporting ---------------------------------------------------------------------------------------
def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _size(n: int) -> str:
    for unit, div in (("M", 10**6), ("k", 10**3)):
        if n >= div and n % div == 0:
            return f"{n // div} {unit}"
    return str(n)


def report_datamodule(records: list[dict[str, Any]]) -> None:
    print("\n== ForgetRetainDataModule set-up (dataset of N cheap items, batch 256)")
    print(f"{'N':>6} {'F':>6} | {'set-up s':>8} {'RSS +MB':>7} {'py MB':>6} | {'splits+hash s':>13} {'py MB':>6}")
    for r in records:
        print(f"{_size(r['n']):>6} {_size(r['f']):>6} | {r['setup']:8.3f} {_mb(r['setup_rss_mb']):>7} "
              f"{r['setup_py_mb']:6.1f} | {r['splits']:13.4f} {r['splits_py_mb']:6.1f}")
    print("\n== Per stream: loader (once per fit), epoch plan (set_epoch to first index), one pass")
    print(f"{'N':>6} {'F':>6} {'stream':>6} | {'loader s':>8} {'py MB':>6} | {'plan s':>7} {'py MB':>6} | "
          f"{'pass s':>7} {'us/sample':>9} {'RSS +MB':>7}")
    for r in records:
        for st in STREAMS:
            per = 1e6 * r[f"{st}_pass"] / max(r[f"{st}_samples"], 1)
            print(f"{_size(r['n']):>6} {_size(r['f']):>6} {st:>6} | {r[st + '_loader']:8.4f} "
                  f"{r[st + '_loader_py_mb']:6.1f} | {r[st + '_plan']:7.4f} {r[st + '_py_mb']:6.1f} | "
                  f"{r[st + '_pass']:7.2f} {per:9.2f} {_mb(r[st + '_pass_rss_mb']):>7}")
    print("growth with N (exponent b of time ~ N^b; the forget stream's work follows F, not N):")
    for f in sorted({r["f"] for r in records}):
        rows = [r for r in records if r["f"] == f]
        ns = [r["n"] for r in rows]
        parts = [f"set-up {power_law_exponent(ns, [r['setup'] for r in rows]):.2f}"]
        parts += [f"{st} {what} {power_law_exponent(ns, [r[f'{st}_{what}'] for r in rows]):.2f}"
                  for st in STREAMS for what in ("loader", "plan", "pass")]
        print(f"  F = {_size(f)}: " + ", ".join(parts))
    for n in sorted({r["n"] for r in records}):
        rows = [r for r in records if r["n"] == n]
        if len(rows) > 1:
            print(f"  N = {_size(n)}, F = {', '.join(_size(r['f']) for r in rows)}: plan " + ", ".join(
                f"{st} {min(r[st + '_plan'] for r in rows):.3f}-{max(r[st + '_plan'] for r in rows):.3f} s"
                for st in STREAMS))


def report_plan_vs_forget(record: dict[str, Any]) -> None:
    forget = sorted({int(k.split("/")[1]) for k in record["plans"]})
    print(f"epoch plan at N = {_size(record['n'])}, streams interleaved in one process (best of 5): "
          + "; ".join(f"{st} " + ", ".join(f"F = {_size(f)} {record['plans'][f'{st}/{f}']:.3f} s"
                                           for f in forget) for st in STREAMS))


def report_audits(records: list[dict[str, Any]], cmia: list[dict[str, Any]]) -> None:
    print("\n== Audit functions on synthetic scores (N per split; 4 views x 32 dims per sample)")
    print(f"{'N':>6} | {'EMIA s':>7} {'py MB':>6} | {'scores s':>8} | {'matrix@64 s':>11}")
    for r in records:
        print(f"{_size(r['n']):>6} | {r['emia']:7.3f} {r['emia_py_mb']:6.1f} | "
              f"{r['alignment_scores']:8.3f} | {r['alignment_matrix']:11.3f}")
    ns = [r["n"] for r in records]
    print("growth with N (exponent b): " + ", ".join(
        f"{k} {power_law_exponent(ns, [r[k] for r in records]):.2f}"
        for k in ("emia", "alignment_scores", "alignment_matrix")))
    if cmia:
        print("CMIA's SVC (K members + K non-members; the audit caps K at max_samples = 10 k): "
              + ", ".join(f"K = {_size(r['cap'])} {r['cmia']:.2f} s" for r in cmia)
              + f"; growth K^{power_law_exponent([r['cap'] for r in cmia], [r['cmia'] for r in cmia]):.2f}")


def report_cli(records: list[dict[str, Any]]) -> None:
    steps = ("listing", "forget_list", "precheck", "commitment", "recheck", "datamodule", "hash")
    print("\n== lightly-unlearn unlearn besides training (32x32 PNGs, 1 % forgotten)")
    print(f"{'images':>6} | " + " | ".join(f"{s + ' s':>12}" for s in steps) + f" | {'ms/image':>8}")
    for r in records:
        total = sum(r[s] for s in steps)
        print(f"{_size(r['n']):>6} | " + " | ".join(f"{r[s]:12.3f}" for s in steps)
              + f" | {1e3 * total / r['n']:8.3f}")
    ns = [r["n"] for r in records]
    print("growth with images (exponent b): " + ", ".join(
        f"{s} {power_law_exponent(ns, [r[s] for r in records]):.2f}" for s in steps))


def report_negrad(records: list[dict[str, Any]]) -> None:
    print("\n== One NegGrad epoch, 2-layer MLP on 8-dim vectors, batch 256, CPU")
    by_f: dict[int, list[float]] = {}
    for r in records:
        by_f.setdefault(r["f"], []).append(r["epoch"])
        print(f"N {_size(r['n'])}, F {_size(r['f']):>6}: {r['epoch']:6.2f} s ({r['steps']} steps)")
    med = {f: float(np.median(t)) for f, t in by_f.items()}
    if len(med) == 2:
        lo, hi = sorted(med)
        print(f"median epoch: F = {_size(lo)} {med[lo]:.2f} s, F = {_size(hi)} {med[hi]:.2f} s; "
              f"ratio {med[hi] / med[lo]:.3f} (goal <= 1.10)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(SECTIONS[:3]),
                        help=f"comma-separated sections of {', '.join(SECTIONS)}")
    parser.add_argument("--large", action="store_true", help="add N = 10 M to the data module")
    parser.add_argument("--negrad-epoch", action="store_true", help="add the NegGrad epoch timing")
    parser.add_argument("--sizes", default=None, help="data module N, comma-separated (override)")
    parser.add_argument("--forget", default="1,1000,100000", help="data module F, comma-separated")
    parser.add_argument("--audit-sizes", default="1000,10000,100000")
    parser.add_argument("--caps", default="1000,3000,10000", help="CMIA's SVC sizes K per class")
    parser.add_argument("--images", default="2000,10000", help="image counts of the cli section")
    parser.add_argument("--repeats", type=int, default=2, help="NegGrad epochs per forget size")
    parser.add_argument("--json", default=None, help="also write every record to this file")
    parser.add_argument("--case", default=None, help=argparse.SUPPRESS)  # internal: one case
    args = parser.parse_args()
    if args.case:
        spec = json.loads(args.case)
        print(json.dumps(CASES[spec.pop("section")](**spec)))
        return

    def ints(text: str) -> list[int]:
        return [int(v) for v in text.split(",") if v]

    sections = [s for s in args.only.split(",") if s]
    if args.negrad_epoch and "negrad" not in sections:
        sections.append("negrad")
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"--only: unknown section(s) {sorted(unknown)}; choose from {SECTIONS}")
    sizes = ints(args.sizes) if args.sizes else [10_000, 100_000, 1_000_000] + [10_000_000] * args.large
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU(s), "
          f"Python {platform.python_version()}, torch {torch.__version__}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    print("command: " + " ".join([os.path.basename(sys.executable), *sys.argv]))
    records: list[dict[str, Any]] = []
    start = time.perf_counter()
    if "datamodule" in sections:
        rows = [run_case("datamodule", n=n, f=f) for n in sizes for f in ints(args.forget) if f < n]
        records += rows
        report_datamodule(rows)
        n = max(s for s in sizes if s <= 1_000_000) if min(sizes) <= 1_000_000 else min(sizes)
        interleaved = run_case("plan_vs_forget", n=n, forget=[f for f in ints(args.forget) if f < n])
        records.append(interleaved)
        report_plan_vs_forget(interleaved)
    if "audits" in sections:
        rows = [run_case("audits", n=n) for n in ints(args.audit_sizes)]
        svc = [run_case("cmia", cap=k) for k in ints(args.caps)]
        records += rows + svc
        report_audits(rows, svc)
    if "cli" in sections:
        rows = [run_case("cli", count=c) for c in ints(args.images)]
        records += rows
        report_cli(rows)
    if "negrad" in sections:
        rows = [run_case("negrad", n=200_000, f=f) for _ in range(args.repeats) for f in (1000, 100_000)]
        records += rows
        report_negrad(rows)
    print(f"\n({time.perf_counter() - start:.0f} s in all)")
    if args.json:
        from lightly_unlearn.io import atomic_write_json

        atomic_write_json(args.json, {"command": sys.argv, "records": records})


if __name__ == "__main__":
    main()
