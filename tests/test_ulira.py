"""The per-example U-LiRA test (``benchmarks/ulira.py``) on synthetic shadow runs: calibrating
each example against its own shadow scores finds what one population threshold cannot."""

import numpy as np
import pytest
from conftest import load_benchmark


def synthetic_runs(effect: float, shift: float = 0.0, runs: int = 12, targets: int = 40, seed: int = 0):
    """Scores = a per-example level (spread 1.0) + noise (0.05); the method's model adds
    ``effect`` to the targets it forgot and ``shift`` to every target."""
    rng = np.random.default_rng(seed)
    level = rng.normal(0, 1.0, targets)
    out = []
    for _ in range(runs):
        forgotten = sorted(rng.choice(targets, targets // 2, replace=False).tolist())
        member = np.isin(np.arange(targets), forgotten)
        retrain = level + rng.normal(0, 0.05, targets)
        method = level + rng.normal(0, 0.05, targets) + shift + effect * member
        out.append({"forgotten": forgotten, "scores": {"retrain": retrain.tolist(), "m": method.tolist()}})
    return out


def test_per_example_calibration_finds_a_small_effect_that_one_threshold_misses():
    ulira = load_benchmark("ulira.py")
    runs = synthetic_runs(effect=0.3)
    online = ulira.evaluate(runs, "m", "online", bootstrap=20)
    population = ulira.evaluate(runs, "m", "population", bootstrap=20)
    assert online["auc"] > 0.95 and online["tpr_at_1pct_fpr"] > 50
    assert population["auc"] < 0.65  # the per-example spread hides it
    assert online["positives"] == 12 * 20 and online["negatives"] == 12 * 40
    assert online["tpr_at_0_1pct_fpr"] is None  # 480 negatives cannot resolve 0.1 %


def test_no_effect_sits_at_chance_and_a_shared_shift_is_caught_only_by_raw_scores():
    ulira = load_benchmark("ulira.py")
    none = ulira.evaluate(synthetic_runs(effect=0.0), "m", "online", bootstrap=20)
    assert 0.4 < none["auc"] < 0.6 and none["tpr_at_1pct_fpr"] < 6
    shifted = synthetic_runs(effect=0.0, shift=0.2)
    assert ulira.evaluate(shifted, "m", "online", bootstrap=20)["auc"] > 0.95  # the model differs
    relative = ulira.evaluate(shifted, "m", "online", relative=True, bootstrap=20)
    assert relative["auc"] < 0.65  # ... but no forgotten example stands out


def test_trials_are_fitted_without_the_run_they_score():
    ulira = load_benchmark("ulira.py")
    runs = synthetic_runs(effect=0.3, runs=4)
    pos, neg = ulira.trials(runs, "m", "offline")
    # offline statistic of run 0's negatives: (score - mean of the *other* runs) / their spread
    others = np.array([r["scores"]["retrain"] for r in runs[1:]])
    expected = (np.array(runs[0]["scores"]["retrain"]) - others.mean(0)) / ((others - others.mean(0)).std() + 1e-12)
    np.testing.assert_allclose(neg[0], expected)
    assert [len(p) for p in pos] == [20] * 4


@pytest.mark.parametrize("kind", ["online", "offline", "population"])
def test_statistic_orders_member_like_scores_higher(kind):
    ulira = load_benchmark("ulira.py")
    mu_in, mu_out = np.array([1.0]), np.array([0.0])
    low, high = (ulira.statistic(kind, np.array([x]), mu_in, 0.5, mu_out, 0.5)[0] for x in (0.0, 1.0))
    assert high > low
