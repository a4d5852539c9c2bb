"""Forget-vs-holdout membership numbers: TPR at low FPR and the paired AUC interval."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_curve

from lightly_unlearn.audits.membership import (
    compare_aucs,
    forget_holdout_metrics,
    low_fpr_key,
    min_holdout_for,
    roc_auc,
    tpr_at_fpr,
    unresolved_low_fpr,
)


def test_tpr_at_fpr_by_hand():
    # 150 holdout scores 0, 1, ..., 149: floor(1 % of 150) = 1 may lie above the threshold, so the
    # threshold is the 149th smallest (148); forget scores strictly above it count.
    holdout = np.arange(150, dtype=float)
    forget = np.array([147.0, 148.0, 148.5, 149.0, 200.0])
    assert tpr_at_fpr(forget, holdout, 1.0) == pytest.approx(60.0)  # 148.5, 149, 200
    assert (holdout > 148).mean() <= 0.01
    # the definition is numpy's inverted-CDF (1 - x) quantile
    assert np.quantile(holdout, 0.99, method="inverted_cdf") == 148.0
    # 1000 holdout scores: 0.1 % lets exactly one through (threshold 998)
    big = np.arange(1000, dtype=float)
    assert tpr_at_fpr(np.array([998.0, 998.5, 999.5]), big, 0.1) == pytest.approx(200 / 3)


def test_tpr_at_fpr_matches_the_roc_curve_without_ties():
    rng = np.random.default_rng(0)
    forget, holdout = rng.normal(0.5, 1, 40), rng.normal(0, 1, 1200)
    labels = np.r_[np.ones(40), np.zeros(1200)]
    fpr, tpr, _ = roc_curve(labels, np.r_[forget, holdout], drop_intermediate=False)
    for x in (1.0, 0.1):
        best = 100 * tpr[fpr <= x / 100].max()
        assert tpr_at_fpr(forget, holdout, x) == pytest.approx(best)


def test_low_fpr_needs_enough_holdout_samples():
    assert min_holdout_for(1.0) == 100 and min_holdout_for(0.1) == 1000
    forget = np.ones(5)
    assert tpr_at_fpr(forget, np.zeros(99), 1.0) is None
    assert tpr_at_fpr(forget, np.zeros(100), 1.0) == 100.0
    assert tpr_at_fpr(forget, np.zeros(999), 0.1) is None
    m = forget_holdout_metrics(forget, np.linspace(0, 2, 400))
    assert low_fpr_key(1.0) in m and low_fpr_key(0.1) not in m
    assert unresolved_low_fpr(m) == {low_fpr_key(0.1): "needs ≥ 1000 holdout samples (has 400)"}
    clip = {"clip_forget_holdout_auc": 0.5, "clip_holdout_samples": 50.0}
    assert set(unresolved_low_fpr(clip)) == {"clip_forget_holdout_tpr_at_1pct_fpr",
                                             "clip_forget_holdout_tpr_at_0_1pct_fpr"}


def test_compare_aucs_pairs_the_samples():
    rng = np.random.default_rng(1)
    forget, holdout = rng.normal(0, 1, 30), rng.normal(0, 1, 300)
    same = compare_aucs(forget, holdout, forget, holdout, n_resamples=200)
    assert same.difference == 0.0 and same.difference_ci == (0.0, 0.0)
    assert same.auc_a == pytest.approx(roc_auc(forget, holdout))
    assert same.auc_a_ci[0] < same.auc_a < same.auc_a_ci[1]
    # forget scores raised by 1.5 under scoring a: the interval of the change excludes 0
    up = compare_aucs(forget + 1.5, holdout, forget, holdout, n_resamples=200)
    assert up.difference > 0.3 and up.difference_ci[0] > 0 and up.auc_a_ci[0] > 0.5
    # deterministic for a seed
    assert compare_aucs(forget + 0.1, holdout, forget, holdout, n_resamples=200, seed=3) == \
        compare_aucs(forget + 0.1, holdout, forget, holdout, n_resamples=200, seed=3)


def test_compare_aucs_with_one_forget_sample():
    holdout = np.linspace(0, 1, 200)
    c = compare_aucs(np.array([0.99]), holdout, np.array([0.5]), holdout, n_resamples=200)
    # 198 of the 200 holdout scores (i / 199) lie below 0.99, 100 below 0.5
    assert c.auc_a == pytest.approx(0.99) and c.difference == pytest.approx(0.49)
    assert c.difference_ci[0] > 0.3
    with pytest.raises(ValueError, match="same samples"):
        compare_aucs(np.ones(2), holdout, np.ones(3), holdout)
