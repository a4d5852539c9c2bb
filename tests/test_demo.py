"""The main job (`lightly-unlearn demo`) and the benchmark run end to end; their tables add up."""

import json
from pathlib import Path

import pytest

from lightly_unlearn.cli import main
from lightly_unlearn.demo.experiment import Run, Setting, gaps, split, summarise
from lightly_unlearn.demo.report import aggregate, table

ROOT = Path(__file__).resolve().parents[1]


def _run(name, **metrics):
    base = {"ra": 100.0, "ta": 90.0, "ua": 90.0, "emia": 50.0, "cmia": 20.0, "forget_holdout_auc": 0.5}
    return Run(name, {}, 10, 2.0 if name == "retrain" else 0.1, 10 if name == "retrain" else 1, {**base, **metrics})


def test_gaps_to_retrain_follow_spec():
    retrain, ac = _run("retrain"), _run("ac", ua=80.0, emia=70.0, forget_holdout_auc=0.4)
    g = gaps(ac, retrain)
    assert g["avg_gap"] == pytest.approx((0 + 0 + 10 + 20 + 0) / 5)
    assert g["indist_gap"] == pytest.approx(10.0)  # |0.4 - 0.5| * 100
    rows = summarise([_run("original"), retrain, ac])
    assert rows[2]["time_vs_retrain"] == pytest.approx(0.05) and rows[2]["steps_vs_retrain"] == pytest.approx(0.1)


def test_relearn_gap_and_paired_difference_to_retrain():
    import numpy as np

    holdout = np.linspace(0, 1, 200)
    retrain = _run("retrain", relearn_forget_holdout_auc=0.5)
    retrain.relearn_scores = {"forget_after": np.full(20, 0.5), "holdout_after": holdout}
    hidden = _run("ac", relearn_forget_holdout_auc=0.9, relearn_forget_holdout_auc_change_ci_low=0.3,
                  relearn_forget_holdout_auc_ci_low=0.8)
    hidden.relearn_scores = {"forget_after": np.full(20, 0.9), "holdout_after": holdout}
    g = gaps(hidden, retrain)
    assert g["relearn_gap"] == pytest.approx(40.0)
    assert g["relearn_vs_retrain"] == pytest.approx(0.4, abs=0.01) and g["relearn_vs_retrain_ci_low"] > 0.3
    assert g["relearned_beyond_retrain"] == 1.0
    assert gaps(retrain, retrain)["relearned_beyond_retrain"] == 0.0
    assert "relearn_gap" not in gaps(_run("ac"), _run("retrain"))  # no test: no column


def test_aggregate_mean_std_and_table():
    a = summarise([_run("retrain"), _run("ac", emia=60.0)])
    b = summarise([_run("retrain"), _run("ac", emia=80.0)])
    rows = aggregate([a, b])
    assert rows[1]["emia"] == pytest.approx(70.0) and rows[1]["emia_std"] == pytest.approx(10.0)
    text = table(rows)
    assert "70.0 ± 10.0" in text and text.splitlines()[0].startswith("method")
    assert "| ac |" in table(rows, markdown=True)


def test_split_is_seeded_and_class_forgetting_takes_the_whole_class():
    train, holdout, forget = split(Setting(seed=3))
    assert len(train) == 200 and len(holdout) == 800 and len(forget) == 20
    assert split(Setting(seed=3))[2] == forget and split(Setting(seed=4))[2] != forget
    train, _, forget = split(Setting(forget="class:3"))
    assert forget and all(train[i][1] == 3 for i in forget)
    assert sum(train[i][1] == 3 for i in range(len(train))) == len(forget)


@pytest.mark.slow
def test_demo_quick_writes_the_report(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for header in ("RA", "TA", "UA", "EMIA", "CMIA", "F-vs-H AUC", "TPR@1%FPR", "Avg.Gap", "Indist.Gap",
                   "Relearned AUC", "Relearn.Gap", "FS", "time/RT"):
        assert header in printed
    for name in ("original", "retrain", "finetune", "gradient_ascent", "neggrad", "l1_sparse", "ac", "partial_reinit"):
        assert name in printed
    assert str(out.resolve()) in printed
    results = json.loads((out / "results.json").read_text())
    assert [r["method"] for r in results["summary"]][:2] == ["original", "retrain"]
    # every row carries the relearning test (10 % of the 100 pretraining epochs) and its gap
    assert results["setting"]["relearn_epochs"] == 10
    for row in results["summary"]:
        assert 0 <= row["relearn_forget_holdout_auc"] <= 1 and row["relearn_epochs"] == 10, row["method"]
        assert row["relearn_gap"] >= 0 and "relearn_vs_retrain_ci_low" in row
    assert {r["method"]: r for r in results["summary"]}["retrain"]["relearn_gap"] == 0.0
    assert (out / "report.md").is_file() and (out / "comparison.png").is_file()
    assert (out / "gap_ac.png").is_file() and (out / "gap_retrain.png").is_file()


def test_demo_pins_threads_before_training(monkeypatch, tmp_path):
    """`make demo` (OMP_NUM_THREADS=1) and a bare run must train with the same thread count, and
    every generator is seeded with the run's seed before anything is built."""
    import torch
    from threadpoolctl import threadpool_info

    import lightly_unlearn.demo.experiment as experiment

    seen = {}

    class Stop(Exception):
        pass

    def record(*args, **kwargs):
        import random

        import numpy as np

        seen["torch"] = torch.get_num_threads()
        seen["blas"] = {p["num_threads"] for p in threadpool_info()}
        seen["seeded"] = (torch.initial_seed(), random.random(), np.random.rand())
        seen["deterministic"] = torch.are_deterministic_algorithms_enabled()
        raise Stop

    before = torch.get_num_threads()
    monkeypatch.setattr(experiment, "Experiment", record)
    torch.set_num_threads(2)
    try:
        with pytest.raises(Stop):
            main(["demo", "--quick", "--out", str(tmp_path / "demo")])
    finally:
        torch.set_num_threads(before)
        torch.use_deterministic_algorithms(False)
    assert seen["torch"] == 1 and seen["blas"] <= {1}
    import random

    import numpy as np

    random.seed(0)
    np.random.seed(0)
    assert seen["seeded"] == (0, random.random(), np.random.rand())  # seed 0 of the first run
    assert seen["deterministic"]


def test_relearning_test_of_cached_references_matches_a_fresh_run(tmp_path):
    """Retrain's weights are cached with its row: a later run (e.g. methods added against the same
    references) relearns Retrain alike; a different attack is measured again, not taken from the cache."""
    from lightly_unlearn.demo.experiment import Experiment

    setting = Setting(model="moco", n_train=60, n_holdout=40, pretrain_epochs=3, num_views=3, batch_size=30)

    def references(**kw):
        exp = Experiment(setting, progress=lambda _: None, cache_dir=tmp_path, relearn_epochs=2, **kw)
        return exp.pretrain(), exp.unlearn("retrain")

    fresh = references()
    cached = references()
    for a, b in zip(fresh, cached):
        assert a.metrics == b.metrics and a.relearn_scores["forget_after"].tolist() == \
            b.relearn_scores["forget_after"].tolist()
    stronger = references(relearn_lr=0.01)
    assert stronger[1].metrics["relearn_lr"] == 0.01
    assert stronger[1].metrics["forget_holdout_auc"] == fresh[1].metrics["forget_holdout_auc"]
    assert stronger[1].relearn_scores["forget_after"].tolist() != fresh[1].relearn_scores["forget_after"].tolist()
