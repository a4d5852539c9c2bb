"""``benchmarks/scale.py``: its measurements (growth fit, memory, one data-module case)."""

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def scale():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("bench_scale", ROOT / "benchmarks" / "scale.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_growth_exponent_of_a_power_law(scale):
    sizes = [1e4, 1e5, 1e6]
    assert scale.power_law_exponent(sizes, [2e-3 * (n / 1e4) for n in sizes]) == pytest.approx(1.0)
    assert scale.power_law_exponent(sizes, [0.5, 0.5, 0.5]) == pytest.approx(0.0, abs=1e-12)
    assert scale.power_law_exponent(sizes, [1.0, 4.0 * 10**2, 0.0]) == pytest.approx(2.602, abs=1e-3)


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
def test_phase_sees_resident_memory_and_tracemalloc_sees_python_memory(scale):
    import mmap

    record = {}
    with scale.phase(record, "alloc"):  # 40 MB of fresh pages (freed heap memory could be reused)
        block = mmap.mmap(-1, 40 * 2**20)
        block.write(b"\x01" * len(block))
    assert record["alloc_rss_mb"] >= 30 and record["alloc"] >= 0
    block.close()
    assert scale.python_peak_mb(lambda: list(range(10**6))) > 20
    assert scale.python_peak_mb(lambda: None) < 1


def test_datamodule_case_serves_every_stream(scale):
    rec = scale.datamodule_case(3000, 10, batch_size=64)
    assert rec["retain_samples"] == 2990  # every retain sample (the loader drops a partial batch)
    assert rec["forget_samples"] == 10
    assert rec["mixed_samples"] == 3000 // 64 * 64
    assert all(rec[f"{s}_plan"] > 0 for s in scale.STREAMS)
