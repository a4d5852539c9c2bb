"""Per-batch cost of forget membership and coverage marks against the forget-set size.

``UnlearnCallback`` asks, for every batch, which samples are forget samples and marks them seen
(``callbacks.unlearning.coverage.ForgetCoverage``: a ``searchsorted`` over the sorted forget keys,
``O(B log F)``). Measured beside the two ``torch.isin`` calls against all forget keys that did the
same job before (``O(B + F)`` per batch), for F = 1 k, 100 k and 1 M forget keys among 10 M
samples, batches of B keys drawn at random. One thread.

    python benchmarks/forget_lookup.py [--batch-size 256] [--repeats 200]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

import torch

from lightly_unlearn.callbacks.unlearning.coverage import ForgetCoverage

N = 10_000_000


def _median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def _isin_twice(keys: torch.Tensor, forget: torch.Tensor, seen: torch.Tensor) -> None:
    torch.isin(keys, forget)
    seen.logical_or_(torch.isin(forget, keys))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    print(f"batch of {args.batch_size} keys, {N:,} samples, median of {args.repeats} batches (ms)")
    print(f"{'forget keys':>12} {'isin x2':>9} {'searchsorted':>13}")
    for n_forget in (1_000, 100_000, 1_000_000):
        forget = torch.randperm(N, generator=g)[:n_forget]
        keys = torch.randint(0, N, (args.batch_size,), generator=g)
        seen = torch.zeros(n_forget, dtype=torch.bool)
        coverage = ForgetCoverage()
        coverage.start(forget, "cpu")
        old = _median_ms(functools.partial(_isin_twice, keys, forget, seen), args.repeats)
        new = _median_ms(functools.partial(coverage.mask, keys), args.repeats)
        print(f"{n_forget:>12,} {old:9.3f} {new:13.4f}")


if __name__ == "__main__":
    main()
