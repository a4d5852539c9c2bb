"""Warnings as data and the verdict: each code with a case that fires it and one that does not;
label handling, probe cache, EMIA threshold and holdout-key regressions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lightly_unlearn.audits import (
    CMIA,
    AlignmentMatrix,
    AuditInputs,
    AuditResult,
    LinearProbe,
    SplitFeatures,
    assess,
    best_threshold,
)
from lightly_unlearn.audits.alignment import (
    bootstrap_forgetting_score,
    cross_sample_cosine,
    forgetting_beyond_drift,
    forgetting_score,
)
from lightly_unlearn.audits.emia import attack_accuracy, emia_metrics
from lightly_unlearn.audits.figures import gap_figure
from lightly_unlearn.audits.membership import auc_standard_error
from lightly_unlearn.audits.report import markdown_report
from lightly_unlearn.audits.schema import AuditRecord
from lightly_unlearn.errors import AuditInputError

# a healthy run: strong signal before, indistinguishable after, FS well beyond drift
HEALTHY_BEFORE = {"forget_holdout_auc": 0.80, "forget_holdout_auc_se": 0.04, "ra": 95.0,
                  "ta": 90.0, "ra_samples": 400, "ta_samples": 400, "cross_cosine_holdout": 0.6}  # fmt: skip
HEALTHY_AFTER = {"forget_holdout_auc": 0.52, "forget_holdout_auc_se": 0.05, "ra": 94.0,
                 "ta": 89.5, "ra_samples": 400, "ta_samples": 400, "cross_cosine_holdout": 0.62,
                 "forgetting_score": 0.15, "holdout_drift_score": 0.01,
                 "forgetting_beyond_drift": 0.14, "forgetting_beyond_drift_se": 0.02}  # fmt: skip


def codes(before, after):
    return assess(before, after).codes


def test_healthy_run_has_no_warning_and_says_consistent():
    v = assess(HEALTHY_BEFORE, HEALTHY_AFTER)
    assert v.warnings == []
    assert "consistent with forgetting" in v.line and "+0.1400" in v.line
    assert v.to_dict()["warnings"] == [] and v.evidence["forgetting_beyond_drift"] == 0.14


@pytest.mark.parametrize(
    "change",
    [
        {"cross_cosine_holdout": 0.995},  # every image points the same way
        {"cross_cosine_holdout": 0.97},  # spread 0.4 -> 0.03: lost > 90 % of it
        {"ra": 78.0},  # the run: RA 100 -> 78
        {"ta": 57.0},
    ],
)
def test_collapse_fires(change):
    v = assess(HEALTHY_BEFORE, {**HEALTHY_AFTER, **change})
    assert v.codes[0] == "collapse"
    assert v.line.startswith("COLLAPSE") and "consistent with forgetting" not in v.line


def test_collapse_does_not_fire_on_small_changes():
    # 0.9 cosine (spread 0.4 -> 0.1, a quarter kept) and a 4-point utility loss are not collapse
    after = {**HEALTHY_AFTER, "cross_cosine_holdout": 0.9, "ra": 91.0, "ta": 86.0}
    assert "collapse" not in codes(HEALTHY_BEFORE, after)
    # a 6-point drop on 20 samples is within sampling error (1.96 SE ~ 19 points)
    small = {**HEALTHY_BEFORE, "ra_samples": 20}
    assert "collapse" not in codes(small, {**HEALTHY_AFTER, "ra": 89.0, "ra_samples": 20})


def test_no_membership_signal():
    before = {**HEALTHY_BEFORE, "forget_holdout_auc": 0.44}  # the model
    v = assess(before, HEALTHY_AFTER)
    assert v.codes == ["no_membership_signal"] and "consistent" not in v.line
    assert v.line.startswith("NO_MEMBERSHIP_SIGNAL")
    # 0.56 with SE 0.04 is within 1.96 SE of 0.5: still no signal; 0.6 is a signal
    assert "no_membership_signal" in codes({**HEALTHY_BEFORE, "forget_holdout_auc": 0.56}, HEALTHY_AFTER)
    assert "no_membership_signal" not in codes({**HEALTHY_BEFORE, "forget_holdout_auc": 0.6}, HEALTHY_AFTER)


def test_overshoot():
    assert codes(HEALTHY_BEFORE, {**HEALTHY_AFTER, "forget_holdout_auc": 0.30}) == ["overshoot"]
    # below 0.5 but within sampling error: not overshoot
    assert codes(HEALTHY_BEFORE, {**HEALTHY_AFTER, "forget_holdout_auc": 0.43}) == []


def test_holdout_drift_and_no_holdout():
    # the report: FS +0.148 with holdout drift +0.145
    drift = {**HEALTHY_AFTER, "forgetting_score": 0.148, "holdout_drift_score": 0.145,
             "forgetting_beyond_drift": 0.003, "forgetting_beyond_drift_se": 0.02}  # fmt: skip
    v = assess(HEALTHY_BEFORE, drift)
    assert v.codes == ["holdout_drift"] and "No evidence of forgetting beyond general drift" in v.line
    assert "consistent with forgetting" not in v.line
    no_holdout = {k: v for k, v in HEALTHY_AFTER.items() if "drift" not in k}
    assert codes(HEALTHY_BEFORE, no_holdout) == ["no_holdout"]
    # FS <= 0: no forgetting claimed, so no drift warning; the verdict says no evidence
    none = {**HEALTHY_AFTER, "forgetting_score": -0.01, "forgetting_beyond_drift": -0.02}
    v = assess(HEALTHY_BEFORE, none)
    assert v.codes == [] and v.line.startswith("No evidence")


def test_worst_warning_leads_and_recorded_warnings_are_kept():
    after = {**HEALTHY_AFTER, "ra": 50.0, "forgetting_beyond_drift": 0.0}
    before = {**HEALTHY_BEFORE, "forget_holdout_auc": 0.5}
    v = assess(before, after, [{"code": "partly_labelled", "message": "m"}])
    assert v.codes == ["collapse", "no_membership_signal", "holdout_drift", "partly_labelled"]
    assert v.line.startswith("COLLAPSE") and "also: no_membership_signal" in v.line
    result = AuditResult(metrics=dict(HEALTHY_AFTER))
    result.warn("missing_labels", "TA skipped")
    v = assess({"x": AuditResult(metrics=dict(HEALTHY_BEFORE))}, {"x": result})
    assert v.codes == ["missing_labels"] and "consistent with forgetting" not in v.line
    report = markdown_report(AuditRecord({}, before=HEALTHY_BEFORE, after=HEALTHY_AFTER, verdict=v))
    assert "`missing_labels`: TA skipped" in report and "Forgetting beyond general drift" in report


def test_auc_standard_error_hanley_mcneil():
    # at A = 0.5 the formula reduces to sqrt((n1 + n2 + 1) / (12 n1 n2))
    assert auc_standard_error(0.5, 32, 400) == pytest.approx(np.sqrt(433 / (12 * 32 * 400)), rel=1e-3)
    # against a bootstrap of the AUC on synthetic scores
    rng = np.random.default_rng(0)
    pos, neg = rng.normal(0.5, 1, 60), rng.normal(0, 1, 80)
    m = emia_metrics(rng.normal(0, 1, 80), neg, pos)
    boot = []
    for _ in range(400):
        p, n = rng.choice(pos, len(pos)), rng.choice(neg, len(neg))
        boot.append((p[:, None] > n[None, :]).mean())
    assert m["forget_holdout_auc_se"] == pytest.approx(np.std(boot), rel=0.25)


def test_forgetting_beyond_drift_and_its_bootstrap():
    rng = np.random.default_rng(0)
    n = 30
    forgotten = rng.normal(0, 0.01, (n, n)) + np.eye(n) * 0.2  # diagonal fell by 0.2
    unchanged = rng.normal(0, 0.01, (n, n))
    diff, se = forgetting_beyond_drift(forgotten, unchanged, num_boot=300)
    assert diff == pytest.approx(forgetting_score(torch.as_tensor(forgotten)) - forgetting_score(torch.as_tensor(unchanged)))
    assert diff > 0.15 and 0 < se < 0.02
    same, se_same = forgetting_beyond_drift(forgotten, forgotten, num_boot=300)
    assert same == pytest.approx(0.0) and abs(same) < 1.96 * se_same
    boot = bootstrap_forgetting_score(forgotten, 200)
    assert np.nanmean(boot) == pytest.approx(0.2, abs=0.02)


def test_cross_sample_cosine():
    collapsed = torch.ones(10, 3, 8) + 1e-4 * torch.randn(10, 3, 8)
    assert cross_sample_cosine(collapsed) > 0.999
    assert abs(cross_sample_cosine(torch.eye(8))) < 1e-9  # orthogonal samples
    x = torch.randn(6, 5)
    u = torch.nn.functional.normalize(x, dim=1)
    c = u @ u.T
    assert cross_sample_cosine(x) == pytest.approx(float(c[~torch.eye(6, dtype=bool)].mean()), abs=1e-6)


# -- label handling -----------------------------------------------------------------------------
def _split(feats, targets, start=0):
    return SplitFeatures(torch.arange(start, start + len(targets)), torch.as_tensor(targets),
                         clean=torch.as_tensor(feats, dtype=torch.float32))  # fmt: skip


@pytest.fixture(scope="module")
def digits_inputs():
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return x, y


def _inputs(x, y, retain_y=None, forget_y=None, holdout_y=None):
    return AuditInputs(
        retain=_split(x[:600], y[:600] if retain_y is None else retain_y),
        forget=_split(x[600:700], y[600:700] if forget_y is None else forget_y),
        holdout=_split(x[1000:1300], y[1000:1300] if holdout_y is None else holdout_y),
    )


def test_unlabelled_holdout_skips_cmia_and_ta(digits_inputs):
    x, y = digits_inputs
    inputs = _inputs(x, y, holdout_y=np.full(300, -1))
    cmia = CMIA()(inputs)
    assert "cmia" not in cmia.metrics  # was 2.2 instead of 12.2, silently
    assert [w["code"] for w in cmia.warnings] == ["missing_labels"]
    probe = LinearProbe()(inputs)
    assert "ta" not in probe.metrics and probe.warnings[0]["code"] == "missing_labels"


def test_unlabelled_forget_skips_cmia_and_ua(digits_inputs):
    x, y = digits_inputs
    inputs = _inputs(x, y, forget_y=np.full(100, -1))
    assert "cmia" not in CMIA()(inputs).metrics  # was CMIA 100
    probe = LinearProbe()(inputs)
    assert "ua" not in probe.metrics and "ra" in probe.metrics  # was UA 0


def test_partly_unlabelled_splits_use_their_labelled_samples(digits_inputs):
    x, y = digits_inputs
    full = LinearProbe()(_inputs(x, y)).metrics
    ry, fy, hy = y[:600].copy(), y[600:700].copy(), y[1000:1300].copy()
    ry[::3], fy[::4], hy[::5] = -1, -1, -1
    part = LinearProbe()(_inputs(x, y, ry, fy, hy))
    assert part.metrics["ra_samples"] == 400 and part.metrics["ua_samples"] == 75
    assert part.metrics["ta_samples"] == 240
    # -1 is not a class: accuracies stay close to the fully labelled ones (were 77.5/75.3/78.9)
    for key in ("ra", "ta", "ua"):
        assert part.metrics[key] > full[key] - 6, key
    assert {w["code"] for w in part.warnings} == {"partly_labelled"}
    assert any("400 labelled of 600 retain" in w["message"] for w in part.warnings)
    cmia = CMIA()(_inputs(x, y, ry, fy, hy))
    assert cmia.metrics["cmia_samples"] == 75 and cmia.warnings


def test_probe_cache_is_keyed_by_its_arguments(digits_inputs):
    x, y = digits_inputs
    alone = LinearProbe(C=1e-6)(_inputs(x, y)).metrics["ra"]
    inputs = _inputs(x, y)
    CMIA()(inputs)  # fits the default probe first
    after_cmia = LinearProbe(C=1e-6)(inputs).metrics["ra"]
    assert after_cmia == alone  # was 99.0 vs 52.5: results depended on audit order
    assert LinearProbe()(inputs).metrics["ra"] != alone


def test_emia_threshold_is_achievable_for_adjacent_floats():
    low = np.float64(0.5)
    high = np.nextafter(low, 1.0)  # adjacent: their midpoint rounds to one of them
    t, acc = best_threshold(np.array([high]), np.array([low]))
    assert acc == 1.0 and attack_accuracy(np.array([high]), np.array([low]), t) == 1.0
    # float32 inputs: comparisons in float64 agree with the reported accuracy
    low32 = np.float32(0.3)
    members = np.array([np.nextafter(low32, np.float32(1)), 0.7], dtype=np.float32)
    nonmembers = np.array([low32, 0.1], dtype=np.float32)
    t, acc = best_threshold(members, nonmembers)
    assert attack_accuracy(members, nonmembers, t) == acc == 1.0


def _views(n, seed):
    return torch.randn(n, 3, 8, generator=torch.Generator().manual_seed(seed))


def test_holdout_drift_checks_holdout_keys():
    forget = SplitFeatures(torch.arange(6), torch.zeros(6), views=_views(6, 0))
    holdout = SplitFeatures(torch.arange(10, 18), torch.zeros(8), views=_views(8, 1))
    audit = AlignmentMatrix(num_boot=50)
    before = audit(AuditInputs(None, forget, holdout))
    after = audit(AuditInputs(None, forget, holdout), before=before)
    assert after.metrics["holdout_drift_score"] == pytest.approx(0.0, abs=1e-6)
    assert "forgetting_beyond_drift_se" in after.metrics and "holdout_gap_matrix" in after.arrays
    other = SplitFeatures(torch.arange(20, 28), torch.zeros(8), views=_views(8, 1))
    with pytest.raises(AuditInputError, match="different holdout samples"):
        audit(AuditInputs(None, forget, other), before=before)


def test_heat_map_names_legend_holdout_panel_and_clip():
    gap = np.eye(5) * 0.2
    names = [f"img_{i}.png" for i in range(5)]
    fig = gap_figure(gap, "G", 0.2, labels=names, holdout_gap=np.zeros((4, 4)),
                     holdout_labels=list("abcd"), verdict="COLLAPSE: broken",
                     warnings=[{"code": "collapse", "message": "m"}])  # fmt: skip
    image_axes = [ax for ax in fig.axes if ax.images]
    assert len(image_axes) == 2
    assert [t.get_text() for t in image_axes[0].get_xticklabels()] == names
    assert "COLLAPSE" in fig._suptitle.get_text() and "warnings: collapse" in fig._suptitle.get_text()
    assert any("diagonal" in t.get_text() for t in fig.texts)
    clip = gap_figure(gap, "G", kind="clip")
    assert "image × caption" in clip._suptitle.get_text()
    assert [ax for ax in clip.axes if ax.images][0].get_xlabel() == "caption j"


@pytest.mark.parametrize("holdout", [True, False], ids=["two_panels", "one_panel"])
def test_long_verdict_is_wrapped_above_the_panel_titles(holdout):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    verdict = assess(
        {"cross_cosine_forget": 0.4, "cross_cosine_holdout": 0.4, "ra": 90.0, "ta": 85.0},
        {"cross_cosine_forget": 0.999, "cross_cosine_holdout": 0.998, "ra": 20.0, "ta": 18.0,
         "forgetting_score": 0.1},
    )  # fmt: skip
    assert verdict.line.startswith("COLLAPSE") and len(verdict.line) > 300
    gap = np.eye(12) * 0.1
    fig = gap_figure(gap, "Alignment gap matrix (after)", 0.1, labels=[f"{i}.png" for i in range(12)],
                     holdout_gap=gap if holdout else None, verdict=verdict.line,
                     warnings=verdict.warnings)  # fmt: skip
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    title = fig._suptitle.get_window_extent(renderer)
    assert 0 <= title.x0 and title.x1 <= fig.bbox.x1 and title.y1 <= fig.bbox.y1  # on the page
    for ax in [ax for ax in fig.axes if ax.images]:
        assert ax.title.get_window_extent(renderer).y1 < title.y0  # below the title's last line
