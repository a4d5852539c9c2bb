"""The benchmark (``benchmarks/unlearning.py``): paired intervals, verdicts, merging and a quick run."""

import importlib.util
import json
import math
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_unlearning", ROOT / "benchmarks" / "unlearning.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rows(gaps):
    common = {"hyperparameters": {}, "epochs": 1}
    rows = [{"method": "original", "avg_gap": 9.0, "indist_gap": 9.0, "forget_holdout_auc": 0.8},
            {"method": "retrain", "avg_gap": 0.0, "indist_gap": 0.0, "forget_holdout_auc": 0.5}]
    rows += [{"method": m, "avg_gap": g, "indist_gap": g, "forget_holdout_auc": 0.5} for m, g in gaps.items()]
    return [{**r, **common} for r in rows]


def test_t_interval_matches_student_t():
    bench = _bench()
    mean, low, high = bench.t_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    # mean 3, sd sqrt(2.5), t(0.975, 4) = 2.776
    assert mean == pytest.approx(3.0) and high - mean == pytest.approx(2.776 * math.sqrt(2.5 / 5), rel=1e-3)
    assert math.isnan(bench.t_interval([1.0])[1])


def test_verdict_only_when_the_interval_excludes_zero():
    bench = _bench()
    assert bench.verdict(-3.0, -0.1) == "AC leads"
    assert bench.verdict(0.2, 4.0) == "AC trails"
    assert bench.verdict(-1.0, 2.0) == "no significant difference"


def test_paired_picks_the_best_baseline_and_pairs_by_seed():
    bench = _bench()
    per_seed = [_rows({"finetune": 9.0, "neggrad": 3.0 + s, "ac": 5.0 + s + 0.1 * s * s}) for s in range(5)]
    comp = {(c["metric"], c["ac"]): c for c in bench.paired(per_seed)}
    c = comp[("avg_gap", "ac")]
    assert c["baseline"] == "neggrad" and c["seeds"] == 5
    assert c["differences"] == pytest.approx([2.0 + 0.1 * s * s for s in range(5)])
    assert c["verdict"] == "AC trails" and c["ci95"][0] > 0
    # Same means, seed-to-seed noise larger than the difference: no verdict.
    noisy = [_rows({"neggrad": 3.0, "ac": 3.5 + (4.0 if s % 2 else -4.0)}) for s in range(6)]
    assert {c["verdict"] for c in bench.paired(noisy)} == {"no significant difference"}


def test_combine_adds_methods_run_later_against_the_same_references():
    bench = _bench()
    first = {"eval_seeds": [1, 2], "seconds": 1.0, "command": "a", "results": [
        {"setting": {"arch": "cnn"}, "model": "simclr", "forget": "random:0.1", "chosen": {"neggrad": {}},
         "per_seed": [_rows({"neggrad": 3.0}), _rows({"neggrad": 4.0})]}]}
    second = json.loads(json.dumps(first))
    second["results"][0]["chosen"] = {"ac": {}}
    second["results"][0]["per_seed"] = [_rows({"ac": 1.0}), _rows({"ac": 2.0})]
    merged = bench.combine([first, second])
    res = merged["results"][0]
    assert [r["method"] for r in res["per_seed"][1]] == ["original", "retrain", "neggrad", "ac"]
    assert set(res["chosen"]) == {"neggrad", "ac"} and res["paired"][0]["differences"] == [-2.0, -2.0]
    second["results"][0]["per_seed"][0][1]["forget_holdout_auc"] = 0.6  # another Retrain
    with pytest.raises(SystemExit, match="share --cache"):
        bench.combine([first, second])


def _seed_run(seeds, methods, relearn=None, partial=False):
    """A run of ``methods`` on ``seeds``: Retrain's relearned AUC 0.5 + 0.01 * seed; a method's is
    Retrain's plus its offset plus 0.001 * seed**2 (so paired differences vary by seed)."""
    offsets = {"neggrad": 0.30, "finetune": 0.20, "ac": 0.10, "partial_reinit": 0.0}
    per_seed = []
    for seed in seeds:
        rows = _rows({m: 3.0 + offsets[m] * 10 + 0.1 * seed for m in methods})
        for r in rows:
            base = 0.5 + 0.01 * seed
            r["relearn_forget_holdout_auc"] = base + (offsets.get(r["method"], 0.0) + 0.001 * seed**2
                                                      if r["method"] not in ("retrain",) else 0.0)
            r["relearn_gap"] = abs(r["relearn_forget_holdout_auc"] - base) * 100
            r.update(relearn_epochs=30.0, relearn_lr=0.006, ra=100.0, ta=90.0, time_vs_retrain=0.1)
            r["forget_holdout_auc"] = 0.5 + 0.001 * seed if r["method"] == "retrain" else r["forget_holdout_auc"]
        per_seed.append(rows)
    chosen = {m: {"hyperparameters": {}, "epochs": 1, "tuning_score": 1.0} for m in methods}
    return {"eval_seeds": list(seeds), "tune_seeds": [0], "seconds": 1.0, "command": f"seeds {seeds}",
            "relearn": relearn or {"epochs": None, "lr": "unlearn"}, "partial": partial, "grids": {},
            "results": [{"setting": {"arch": "cnn"}, "model": "simclr", "forget": "random:0.1",
                         "chosen": chosen, "per_seed": per_seed}]}


def test_merge_seeds_pools_rows_by_seed_and_says_over_how_many_seeds():
    bench = _bench()
    everything = _seed_run([1, 2], ["finetune", "neggrad", "ac", "partial_reinit"], partial=True)
    everything["eval_seeds"] = [1, 2, 3, 4, 5]  # a run stopped after its second seed
    more = _seed_run([3, 4, 5], ["ac", "partial_reinit"])
    merged = bench.merge_seeds([everything, more])
    res = merged["results"][0]
    assert merged["eval_seeds"] == res["eval_seeds"] == [1, 2, 3, 4, 5] and merged["partial"] is True
    assert [(m["eval_seeds"], m["partial"]) for m in merged["merged_from"]] == [([1, 2], True), ([3, 4, 5], False)]
    rows = {r["method"]: r for r in res["summary"]}
    assert {n: r["seeds"] for n, r in rows.items()} == {
        "original": 5, "retrain": 5, "finetune": 2, "neggrad": 2, "ac": 5, "partial_reinit": 5}
    assert rows["ac"]["avg_gap"] == pytest.approx(4.0 + 0.3)  # mean over the five seeds
    vs = {c["method"]: c for c in res["relearn_vs_retrain"]}
    assert vs["ac"]["seeds"] == 5 and vs["ac"]["differences"] == pytest.approx([0.1 + 0.001 * s**2 for s in range(1, 6)])
    assert vs["finetune"]["seeds"] == 2 and vs["partial_reinit"]["mean_difference"] == pytest.approx(0.011)
    # AC against the best baseline, paired on the seeds both have
    by = {(c["metric"], c["ac"]): c for c in res["paired"]}
    assert by[("avg_gap", "ac")]["baseline"] == "partial_reinit" and by[("avg_gap", "ac")]["seeds"] == 5
    table = bench.markdown(merged)
    assert "| finetune  (2 seeds) |" in table and "| ac  |" in table  # five seeds: no note
    assert "| finetune (2 seeds) | +0.20" in table  # the relearned-AUC table
    # Same inputs, same merge: order of the inputs only changes the row order, not the numbers.
    again = bench.merge_seeds([more, everything])["results"][0]
    assert {c["method"]: c["ci95"] for c in again["relearn_vs_retrain"]} == {m: c["ci95"] for m, c in vs.items()}


def test_relearn_summary_judges_the_bar_only_on_enough_seeds():
    bench = _bench()
    merged = bench.merge_seeds([_seed_run([1, 2], ["finetune", "ac", "partial_reinit"]),
                                _seed_run([3, 4, 5], ["ac", "partial_reinit"])])
    lines = {line.split(" |")[0].lstrip("| "): line for line in bench.relearn_summary(merged).splitlines()
             if line.startswith("| ")}
    assert lines["partial_reinit"].endswith("| yes |")  # +0.011 [-0.001, +0.023], 10 % of Retrain
    assert lines["ac"].endswith("| no |")  # +0.11, interval above 0
    assert lines["finetune (2 seeds)"].endswith("| – (2 seeds: not judged) |")
    assert lines["original"].endswith("| reference |")
    c = {"ci95": [-0.01, 0.02]}
    assert bench.holds_up(c, {"time_vs_retrain": 0.2, "steps_vs_retrain": 0.1})
    assert not bench.holds_up(c, {"time_vs_retrain": 0.3, "steps_vs_retrain": 0.1})  # too slow
    assert bench.holds_up({"ci95": [0.01, 0.04]}, {"time_vs_retrain": 0.2})  # within 5 points
    assert not bench.holds_up({"ci95": [0.01, 0.07]}, {"time_vs_retrain": 0.2})


def test_merge_seeds_refuses_what_cannot_be_pooled():
    bench = _bench()
    base = _seed_run([1, 2], ["ac"])
    with pytest.raises(SystemExit, match="different relearning tests"):
        bench.merge_seeds([base, _seed_run([3], ["ac"], relearn={"epochs": None, "lr": "pretrain"})])
    other = _seed_run([3], ["ac"])
    other["results"][0]["chosen"]["ac"]["hyperparameters"] = {"beta": 4.0}
    with pytest.raises(SystemExit, match="ac ran with different configurations"):
        bench.merge_seeds([base, other])
    overlap = _seed_run([2, 3], ["ac"])
    overlap["results"][0]["per_seed"][0][1]["forget_holdout_auc"] = 0.9  # another Retrain on seed 2
    with pytest.raises(SystemExit, match="share --cache"):
        bench.merge_seeds([base, overlap])
    twice = _seed_run([2], ["ac"])
    twice["results"][0]["per_seed"][0][2]["avg_gap"] = 99.0  # seed 2 of AC measured twice, differently
    with pytest.raises(SystemExit, match="seed 2 of ac is in two runs"):
        bench.merge_seeds([base, twice])
    assert bench.merge_seeds([base, base])["results"][0]["summary"][2]["seeds"] == 2  # the same file twice
    tuned = _seed_run([0], ["ac"])
    with pytest.raises(SystemExit, match="tuned on in one run and evaluated in another"):
        bench.merge_seeds([base, tuned])


def test_merge_seeds_command_writes_a_new_file(tmp_path):
    bench = _bench()
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(_seed_run([1, 2], ["finetune", "ac"])))
    b.write_text(json.dumps(_seed_run([3], ["ac"])))
    given = a.read_text()
    assert bench.main(["--merge-seeds", str(a), str(b), "--out", str(tmp_path / "m.json")]) == 0
    merged = json.loads((tmp_path / "m.json").read_text())
    assert merged["eval_seeds"] == [1, 2, 3] and [m["eval_seeds"] for m in merged["merged_from"]] == [[1, 2], [3]]
    assert a.read_text() == given
    with pytest.raises(SystemExit, match="--out is one of the inputs"):
        bench.main(["--merge-seeds", str(a), str(b), "--out", str(a)])


@pytest.mark.slow
def test_benchmark_quick_runs(tmp_path):
    """The smoke run, in process: every method and its calibrated mode against Retrain, two seeds."""
    bench = _bench()
    out = tmp_path / "bench.json"
    assert bench.main(["--quick", "--out", str(out)]) == 0
    payload = json.loads(out.read_text())
    result = payload["results"][0]
    methods = {"finetune", "gradient_ascent", "neggrad", "l1_sparse", "ac", "partial_reinit",
               "weight_distortion", "weight_distance"}
    assert set(result["chosen"]) == methods
    rows = {r["method"]: r for r in result["summary"]}
    assert set(rows) == {"original", "retrain"} | methods | {f"{m}+stop" for m in methods}
    assert rows["retrain"]["avg_gap"] == 0.0 and rows["retrain"]["indist_gap"] == 0.0
    for name, row in rows.items():
        assert math.isfinite(row["avg_gap"]) and math.isfinite(row["indist_gap"]), name
        assert row["seeds"] == 2
    assert rows["ac+stop"]["epochs"] <= 2  # at most 10 % of the 20 pretraining epochs
    assert {c["ac"] for c in result["paired"]} == {"ac", "ac+stop"}
    assert all(len(c["differences"]) == 2 for c in result["paired"])
    _check_relearn_and_low_fpr_columns(bench, payload, set(rows) - {"retrain"})


def _check_relearn_and_low_fpr_columns(bench, payload, methods):
    """Every row, Retrain included, carries the relearning test (2 = 10 % of the 20 pretraining
    epochs) and TPR at 1 % FPR (108 holdout samples), and the tables show them."""
    result = payload["results"][0]
    rows = {r["method"]: r for r in result["summary"]}
    assert payload["relearn"] == {"epochs": None, "lr": "unlearn"}
    for name, row in rows.items():
        assert row["relearn_epochs"] == 2 and 0 <= row["relearn_forget_holdout_auc"] <= 1, name
        assert math.isfinite(row["relearn_gap"]) and 0 <= row["forget_holdout_tpr_at_1pct_fpr"] <= 100, name
        assert "forget_holdout_tpr_at_0_1pct_fpr" not in row  # 108 holdout samples cannot resolve 0.1 %
    assert rows["retrain"]["relearn_gap"] == 0.0 and rows["retrain"]["relearn_vs_retrain"] == 0.0
    assert {c["method"] for c in result["relearn_vs_retrain"]} == methods
    if len(methods) > 2:  # AC against the best baseline, on the relearned gap too
        assert "relearn_gap" in {c["metric"] for c in result["paired"]}
    table = bench.markdown(payload)
    assert "| TPR@1%FPR | Relearned AUC | Relearn.Gap |" in table and "TPR at 0.1 % FPR not shown" in table
    ac_line = next(line for line in table.splitlines() if line.startswith("| ac "))
    assert "–" not in ac_line  # every column filled
    assert "| relearned AUC − Retrain's |" in table


@pytest.mark.slow
def test_benchmark_quick_runs_the_cnn_setting(tmp_path):
    """The CNN setting's smoke run (lightly's transforms, BatchNorm CNN) carries the same columns."""
    bench = _bench()
    out = tmp_path / "cnn.json"
    assert bench.main(["--setting", "cnn", "--quick", "--methods", "ac", "--no-calibrated", "--out", str(out)]) == 0
    payload = json.loads(out.read_text())
    assert payload["results"][0]["setting"]["arch"] == "cnn"
    _check_relearn_and_low_fpr_columns(bench, payload, {"original", "ac"})


def test_tuning_score_counts_the_relearned_gap():
    bench = _bench()
    assert bench.score({"avg_gap": 1.0, "indist_gap": 2.0}) == 3.0
    assert bench.score({"avg_gap": 1.0, "indist_gap": 2.0, "relearn_gap": 4.0}) == 7.0


def test_relearned_auc_against_retrain_is_paired_by_seed():
    bench = _bench()
    per_seed = [[{"method": "retrain", "relearn_forget_holdout_auc": 0.50 + 0.01 * s},
                 {"method": "ac", "relearn_forget_holdout_auc": 0.80 + 0.01 * s + 0.001 * s * s,
                  "relearned_beyond_retrain": float(s > 0)},
                 {"method": "neggrad", "relearn_forget_holdout_auc": 0.50 + 0.04 * (-1) ** s}]
                for s in range(4)]
    comps = {c["method"]: c for c in bench.versus_retrain(per_seed)}
    assert comps["ac"]["differences"] == pytest.approx([0.3 + 0.001 * s * s for s in range(4)])
    assert comps["ac"]["verdict"] == "above Retrain" and comps["ac"]["relearned_seeds"] == 3
    assert comps["neggrad"]["verdict"] == "within noise of Retrain"
    assert bench.versus_retrain([[{"method": "retrain"}, {"method": "ac"}]]) == []
    two = bench.versus_retrain(per_seed[:2])
    assert {c["verdict"] for c in two} == {"not judged (2 seeds)"}, "two seeds are too few to call anything"


@pytest.mark.slow
def test_class_forgetting_quick_runs(tmp_path):
    """The class-forgetting smoke run: Retrain, Fine-tune and AC on the tiny CLIP and the SimCLR MLP,
    two seeds, paired intervals AC − Fine-tune per metric and signed gaps to Retrain."""
    spec = importlib.util.spec_from_file_location("bench_class", ROOT / "benchmarks" / "class_forgetting.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "class.json"
    assert bench.main(["--quick", "--out", str(out)]) == 0
    payload = json.loads(out.read_text())
    assert payload["partial"] is False and payload["seeds"] == [1, 2]
    for setting in ("clip", "mlp"):
        res = payload["results"][setting]
        rows = {r["method"]: r for r in res["summary"]}
        assert set(rows) == {"original", "retrain", "finetune", "ac"}
        assert all(r["seeds"] == 2 for r in rows.values())
        assert not any("partners" in r["hyperparameters"] for seed in res["per_seed"] for r in seed)
        headline = "gap_zs_forget" if setting == "clip" else "indist_gap"
        assert {(c["a"], c["b"]) for c in res["paired"]} == {("ac", "finetune")}
        assert headline in {c["metric"] for c in res["paired"]}
        assert all(len(c["differences"]) == 2 and c["verdict"] for c in res["paired"])
        assert {c["a"] for c in res["versus_retrain"]} == {"finetune", "ac"}
        assert all(c["b"] == "retrain" for c in res["versus_retrain"])
        gaps = {(g["method"], g["metric"]) for g in res["gaps"]}
        assert {("finetune", headline), ("ac", headline)} <= gaps and {m for m, _ in gaps} == {"finetune", "ac"}
    clip = {r["method"]: r for r in payload["results"]["clip"]["summary"]}
    assert clip["retrain"]["gap_zs_forget"] == 0.0 and math.isfinite(clip["ac"]["zs_forget"])


@pytest.mark.slow
def test_class_forgetting_tune_quick_runs(tmp_path):
    """``--tune``: Fine-tune and AC each tuned over a grid of the same size (AC: epochs x beta) on the
    tuning seed, the smallest mean score chosen and only it evaluated on the disjoint seeds;
    pretrained models and Retrain rows cached and reused."""
    spec = importlib.util.spec_from_file_location("bench_class", ROOT / "benchmarks" / "class_forgetting.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out, cache = tmp_path / "tuned.json", tmp_path / "cache"
    assert bench.main(["--quick", "--tune", "--cache", str(cache), "--out", str(out)]) == 0
    payload = json.loads(out.read_text())
    assert payload["partial"] is False and payload["tune_seeds"] == [0] and payload["seeds"] == [1, 2]
    for setting in ("clip", "mlp"):
        res = payload["results"][setting]
        grids = res["grids"]
        assert set(grids) == {"finetune", "ac"} and set(res["chosen"]) == {"finetune", "ac"}
        assert len({len(g) for g in grids.values()}) == 1 and len(grids["ac"]) > 1
        assert all(m == "ac" and set(hp) == {"alpha", "beta"} for m, hp, _ in grids["ac"])
        for name, chosen in res["chosen"].items():
            best = min(range(len(chosen["grid_scores"])), key=chosen["grid_scores"].__getitem__)
            assert [chosen["hyperparameters"], chosen["epochs"]] == grids[name][best][1:]
            assert len(chosen["tried"]) == len(grids[name])
            for rows in res["per_seed"]:  # the evaluation runs the chosen configuration
                row = next(r for r in rows if r["method"] == name)
                assert row["hyperparameters"] == chosen["hyperparameters"] and row["epochs"] == chosen["epochs"]
        rows = {r["method"]: r for r in res["summary"]}
        assert set(rows) == {"original", "retrain", "finetune", "ac"}
        assert rows["retrain"]["score"] == 0.0
        assert ("ac", "finetune", "score") in {(c["a"], c["b"], c["metric"]) for c in res["paired"]}
    # Cached: every seed's pretrained model and Retrain row, reused by a later run (same rows).
    assert len(list(cache.glob("clip_seed*_pretrained.pt"))) == 3 and len(list(cache.glob("clip_seed*_retrain.pt"))) == 3
    again = tmp_path / "again.json"
    assert bench.main(["--quick", "--settings", "clip", "--seeds", "2", "--cache", str(cache), "--out", str(again)]) == 0
    first = {r["method"]: r for r in payload["results"]["clip"]["per_seed"][1]}
    second = {r["method"]: r for r in json.loads(again.read_text())["results"]["clip"]["per_seed"][0]}
    assert second["original"] == first["original"] and second["retrain"] == first["retrain"]
    with pytest.raises(SystemExit):
        bench.main(["--quick", "--tune", "--tune-seeds", "1", "--out", str(tmp_path / "x.json")])


# -- method variants (--add-variants) and the AC configurations table ---------------------------
def _variant_rows(gaps):
    rows = [{"method": "original", "avg_gap": 9.0, "indist_gap": 9.0},
            {"method": "retrain", "avg_gap": 0.0, "indist_gap": 0.0}]
    return rows + [{"method": m, "avg_gap": g, "indist_gap": g} for m, g in gaps.items()]


def test_a_variant_is_paired_with_its_method_and_its_calibrated_mode_not_taken_as_a_baseline():
    bench = _bench()
    per_seed = [_variant_rows({"neggrad": 3.0, "ac": 5.0 + s, "ac+stop": 4.0, "ac:beta4": 4.0 + 0.1 * s})
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
                       "--pairs", "ac:beta0,ac", "--out", str(out)]) == 0
    payload = json.loads(out.read_text())
    res = payload["results"][0]
    pairs = {c["metric"]: c for c in res["pairs"]}
    assert set(pairs) == {"avg_gap", "indist_gap", "score"} and pairs["avg_gap"]["baseline"] == "ac"
    assert pairs["avg_gap"]["differences"] == pytest.approx(
        [rows[-1]["avg_gap"] - rows[-2]["avg_gap"] for rows in res["per_seed"]])
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
    # --chosen-from: no tuning, the finished run's configurations, re-measured
    again = tmp_path / "again.json"
    assert bench.main(["--quick", "--models", "simclr", "--methods", "ac", "--no-calibrated",
                       "--chosen-from", str(out), "--cache", str(cache), "--out", str(again)]) == 0
    rerun = json.loads(again.read_text())
    assert rerun["tune_seeds"] == [] and rerun["results"][0]["chosen"] == res["chosen"]
    with pytest.raises(SystemExit, match="has no result for moco"):
        bench.main(["--quick", "--models", "moco", "--methods", "ac", "--chosen-from", str(out),
                    "--out", str(tmp_path / "x.json")])


def test_configurations_name_the_best_and_what_is_within_noise_of_it():
    """The default-beta question: each fixed-epoch AC configuration against the best of them."""
    bench = _bench()
    per_seed = [_variant_rows({"neggrad": 1.0, "ac": 6.0 + s, "ac+stop": 0.0, "ac:beta4": 5.0 + s % 2,
                       "ac:beta16": 5.7 + (1.0 if s % 2 else -1.0)}) for s in range(6)]
    for rows in per_seed:
        for r in rows:
            r["hyperparameters"] = {"beta": {"ac": 1.0, "ac:beta4": 4.0, "ac:beta16": 16.0}.get(r["method"])}
    got = {c["configuration"]: c for c in bench.configurations(per_seed) if c["metric"] == "avg_gap"}
    assert set(got) == {"ac", "ac:beta4", "ac:beta16"}  # not +stop, not other methods
    assert got["ac:beta4"]["verdict"] == "best" and got["ac:beta4"]["best"] == "ac:beta4"
    assert got["ac"]["verdict"] == "worse than the best" and got["ac"]["ci95"][0] > 0
    assert got["ac:beta16"]["verdict"] == "within noise of the best"
