"""Method options beyond the paper in the benchmark (``--add-variants``): rows added against the
very references of a finished run, compared per seed with the plain method and the baselines."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_variants", ROOT / "benchmarks" / "unlearning.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rows(gaps):
    rows = [{"method": "original", "avg_gap": 9.0, "indist_gap": 9.0},
            {"method": "retrain", "avg_gap": 0.0, "indist_gap": 0.0}]
    return rows + [{"method": m, "avg_gap": g, "indist_gap": g} for m, g in gaps.items()]


def test_a_variant_is_paired_with_its_method_and_its_calibrated_mode_not_taken_as_a_baseline():
    bench = _bench()
    per_seed = [_rows({"neggrad": 3.0, "ac": 5.0 + s, "ac+stop": 4.0, "ac:beta4": 4.0 + 0.1 * s})
                for s in range(5)]
    comps = bench.paired(per_seed)
    assert {c["baseline"] for c in comps if c["ac"] == "ac"} == {"neggrad"}  # never a variant
    by = {(c["metric"], c["ac"], c["baseline"]): c for c in comps}
    vs_ac = by[("avg_gap", "ac:beta4", "ac")]
    assert vs_ac["differences"] == pytest.approx([-1.0 - 0.9 * s for s in range(5)])
    assert vs_ac["verdict"] == "ac:beta4 leads"
    vs_stop = by[("avg_gap", "ac:beta4", "ac+stop")]
    assert vs_stop["mean_difference"] == pytest.approx(0.2)
    assert bench.family("ac:beta4+stop") == "ac" and bench.family("neggrad+stop") == "neggrad"


@pytest.mark.slow
def test_add_variants_runs_on_the_cached_references_of_a_quick_run(tmp_path):
    bench = _bench()
    cache, first, out = tmp_path / "cache", tmp_path / "run.json", tmp_path / "with_variants.json"
    assert bench.main(["--quick", "--models", "simclr", "--methods", "ac", "--no-calibrated",
                       "--cache", str(cache), "--out", str(first)]) == 0
    assert bench.main(["--add-variants", "ac:beta0", "--to", str(first), "--cache", str(cache),
                       "--out", str(out)]) == 0
    payload = json.loads(out.read_text())
    res = payload["results"][0]
    for rows in res["per_seed"]:
        names = [r["method"] for r in rows]
        assert names == ["original", "retrain", "ac", "ac:beta0"]
        ac, variant = rows[-2:]
        assert variant["hyperparameters"] == {**ac["hyperparameters"], "beta": 0.0}
        assert variant["epochs"] == ac["epochs"]  # the method's chosen epochs
    assert any(c["ac"] == "ac:beta0" and c["baseline"] == "ac" for c in res["paired"])
    # the input run is left as it was
    assert [r["method"] for r in json.loads(first.read_text())["results"][0]["per_seed"][0]] == [
        "original", "retrain", "ac"]


def test_configurations_name_the_best_and_what_is_within_noise_of_it():
    """The default-beta question: each fixed-epoch AC configuration against the best of them."""
    bench = _bench()
    per_seed = [_rows({"neggrad": 1.0, "ac": 6.0 + s, "ac+stop": 0.0, "ac:beta4": 5.0 + s % 2,
                       "ac:beta16": 5.7 + (1.0 if s % 2 else -1.0)}) for s in range(6)]
    for rows in per_seed:
        for r in rows:
            r["hyperparameters"] = {"beta": {"ac": 1.0, "ac:beta4": 4.0, "ac:beta16": 16.0}.get(r["method"])}
    got = {c["configuration"]: c for c in bench.configurations(per_seed) if c["metric"] == "avg_gap"}
    assert set(got) == {"ac", "ac:beta4", "ac:beta16"}  # not +stop, not other methods
    assert got["ac:beta4"]["verdict"] == "best" and got["ac:beta4"]["best"] == "ac:beta4"
    assert got["ac"]["verdict"] == "worse than the best" and got["ac"]["ci95"][0] > 0
    assert got["ac:beta16"]["verdict"] == "within noise of the best"
