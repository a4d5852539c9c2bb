"""Wall time of `lightly-unlearn --help` and of every `lightly-unlearn <cmd> --help` (goal <= 1.5 s).

Each is a fresh process (what a user waits for), best of ``--repeat`` runs. The sub-commands'
parsers import neither torch nor Lightning; this measures that it stays so.

    python benchmarks/cli_help_time.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from lightly_unlearn.cli import COMMANDS

GOAL_S = 1.5


def help_time(argv: list[str], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "lightly_unlearn.cli", *argv, "--help"],
                       check=True, stdout=subprocess.DEVNULL)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3, help="runs per command; the best counts")
    args = parser.parse_args()
    worst = 0.0
    for argv in ([], *([name] for name in COMMANDS)):
        seconds = help_time(argv, args.repeat)
        worst = max(worst, seconds)
        print(f"lightly-unlearn {' '.join(argv + ['--help']):<26} {seconds:6.2f} s")
    print(f"slowest {worst:.2f} s; goal <= {GOAL_S} s: {'met' if worst <= GOAL_S else 'NOT met'}")
    return 0 if worst <= GOAL_S else 1


if __name__ == "__main__":
    sys.exit(main())
