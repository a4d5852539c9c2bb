"""Run ``lightly-unlearn demo`` and keep its results, with the machine that produced them, for the docs.

The demo pins one thread and deterministic kernels, so the same machine prints the same numbers
on the same seeds; another CPU (another instruction set, another BLAS) gives slightly different
ones. So the record names the machine: CPU model, core count, OS, Python and library versions,
and the demo's wall time.

Writes ``benchmarks/results/demo.json`` (the demo's ``results.json`` plus ``machine``,
``seconds`` and ``command``) and refreshes the figures the README and docs show
(``docs/demo_comparison.png``, ``docs/demo_gap_ac.png``) from the same run; then
``python benchmarks/render_docs.py`` renders the page.

    OMP_NUM_THREADS=1 python benchmarks/record_demo.py            # the full demo, 3 seeds
    python benchmarks/record_demo.py --quick --out /tmp/demo.json # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch": version("torch"),
        "numpy": version("numpy"),
        "scikit-learn": version("scikit-learn"),
        "lightly": version("lightly"),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="the demo's --quick (1 seed): a smoke run")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "demo.json"))
    p.add_argument("--figures", default=None, metavar="DIR",
                   help="where to copy comparison.png and gap_ac.png (default: docs/ for a full run, "
                        "none for --quick)")
    args = p.parse_args(argv)
    from lightly_unlearn.cli import main as cli
    from lightly_unlearn.io import atomic_write_json

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "demo"
        command = ["demo", "--out", str(run_dir)] + (["--quick"] if args.quick else [])
        info = machine()  # the load average before the run: others' work on the machine
        start = time.perf_counter()
        if cli(command) != 0:
            return 1
        seconds = time.perf_counter() - start
        results = json.loads((run_dir / "results.json").read_text())
        figures = Path(args.figures) if args.figures else (None if args.quick else ROOT / "docs")
        if figures is not None:
            shutil.copyfile(run_dir / "comparison.png", figures / "demo_comparison.png")
            if (run_dir / "gap_ac.png").is_file():
                shutil.copyfile(run_dir / "gap_ac.png", figures / "demo_gap_ac.png")
    record = {**results, "command": "lightly-unlearn demo" + (" --quick" if args.quick else ""),
              "seconds": seconds, "machine": info}
    atomic_write_json(args.out, record)
    print(f"Wrote {args.out} ({seconds:.0f} s on {record['machine']['cpu']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
