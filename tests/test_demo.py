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
    for header in ("RA", "TA", "UA", "EMIA", "CMIA", "F-vs-H AUC", "Avg.Gap", "Indist.Gap", "FS", "time/RT"):
        assert header in printed
    for name in ("original", "retrain", "finetune", "gradient_ascent", "neggrad", "l1_sparse", "ac"):
        assert name in printed
    assert str(out.resolve()) in printed
    results = json.loads((out / "results.json").read_text())
    assert [r["method"] for r in results["summary"]][:2] == ["original", "retrain"]
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
