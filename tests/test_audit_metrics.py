"""Audit metrics against brute force and hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from lightly_unlearn import registry
from lightly_unlearn.audits import (
    AlignmentMatrix,
    AuditInputs,
    AuditResult,
    SplitFeatures,
    alignment_matrix,
    alignment_scores,
    best_threshold,
    cmia_efficacy,
    emia_metrics,
    fit_probe,
    forgetting_score,
    gap_matrix,
    resolve_audits,
)
from lightly_unlearn.audits.emia import attack_accuracy
from lightly_unlearn.audits.features import dedupe, gather_split, shard


def brute_force_best_accuracy(members, nonmembers):
    """Accuracy at every realisable threshold: each distinct score, and +inf."""
    candidates = np.concatenate([np.unique(np.concatenate([members, nonmembers])), [np.inf]])
    return max(attack_accuracy(members, nonmembers, t) for t in candidates)


@pytest.mark.parametrize("seed", range(8))
def test_best_threshold_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    n_m, n_n = rng.integers(1, 60, size=2)
    members = rng.normal(0.3, 1.0, n_m)
    nonmembers = rng.normal(0.0, 1.0, n_n)
    if seed % 2:  # ties across and within the two sets
        members, nonmembers = np.round(members, 1), np.round(nonmembers, 1)
    t, acc = best_threshold(members, nonmembers)
    assert acc == pytest.approx(brute_force_best_accuracy(members, nonmembers))
    assert attack_accuracy(members, nonmembers, t) == pytest.approx(acc)


def test_known_threshold_and_efficacy():
    members = np.array([0.9, 0.8, 0.7, 0.6])
    nonmembers = np.array([0.1, 0.2, 0.3, 0.65])
    t, acc = best_threshold(members, nonmembers)
    assert acc == pytest.approx(7 / 8)
    assert 0.3 < t <= 0.6
    m = emia_metrics(members, nonmembers, forget_scores=np.array([0.05, 0.25, 0.75, 0.95]))
    assert m["emia"] == pytest.approx(50.0)  # 0.05 and 0.25 are below t
    assert m["emia_attack_accuracy"] == pytest.approx(87.5)
    assert m["emia_auc"] == pytest.approx(15 / 16)
    assert m["forget_holdout_auc"] == pytest.approx(
        roc_auc_score([1] * 4 + [0] * 4, [0.05, 0.25, 0.75, 0.95, *nonmembers])
    )
    assert m["alignment_level_gap"] == pytest.approx(0.5 - 0.3125)


def test_threshold_perfect_separation_and_extremes():
    t, acc = best_threshold(np.array([2.0, 3.0]), np.array([0.0, 1.0]))
    assert acc == 1.0 and t == 2.0  # the lowest member score: always realisable
    # members all below non-members: best is predicting everything one class
    t, acc = best_threshold(np.array([0.0]), np.array([1.0, 2.0]))
    assert acc == pytest.approx(2 / 3) and t == np.inf


def test_overshoot_shows_in_two_sided_auc():
    rng = np.random.default_rng(0)
    members, holdout = rng.normal(0.8, 0.05, 200), rng.normal(0.6, 0.05, 200)
    overshoot = rng.normal(0.3, 0.05, 200)  # less aligned than never-seen samples
    m = emia_metrics(members, holdout, overshoot)
    assert m["emia"] == 100.0  # one-sided efficacy "perfect"
    assert m["forget_holdout_auc"] < 0.05 and m["alignment_level_gap"] < -0.2


def test_alignment_scores_match_pairwise_definition():
    views = torch.randn(5, 4, 7)
    unit = torch.nn.functional.normalize(views, dim=-1)
    expected = torch.stack(
        [
            torch.stack([unit[i, a] @ unit[i, b] for a in range(4) for b in range(a + 1, 4)]).mean()
            for i in range(5)
        ]
    )
    torch.testing.assert_close(alignment_scores(views), expected, atol=1e-5, rtol=1e-5)


def test_alignment_matrix_matches_definition():
    views = torch.randn(3, 4, 6)
    unit = torch.nn.functional.normalize(views, dim=-1)
    expected = torch.einsum("iad,jbd->ij", unit, unit) / 16
    torch.testing.assert_close(alignment_matrix(views), expected, atol=1e-5, rtol=1e-5)


def test_alignment_matrix_constant_and_identity_like():
    constant = torch.ones(4, 5, 3)  # every view of every sample is the same vector
    torch.testing.assert_close(alignment_matrix(constant), torch.ones(4, 4))
    assert alignment_scores(constant).tolist() == pytest.approx([1.0] * 4)
    identity = torch.eye(4)[:, None, :].expand(4, 5, 4) * 3.0  # sample i -> e_i, any augmentation
    torch.testing.assert_close(alignment_matrix(identity), torch.eye(4))
    # before = identity-like, after = constant: own alignment unchanged, cross-alignment up by 1
    gap = gap_matrix(alignment_matrix(identity), alignment_matrix(constant))
    assert forgetting_score(gap) == pytest.approx(1.0)


def test_gap_matrix_is_zero_for_same_model():
    views = torch.randn(6, 4, 8)
    inputs = AuditInputs(
        retain=None, forget=SplitFeatures(torch.arange(6), torch.zeros(6), views=views)
    )
    audit = AlignmentMatrix()
    before = AuditResult.from_state(audit(inputs).to_state())  # through plain types, like a ckpt
    after = audit(inputs, before=before)
    assert np.abs(after.arrays["gap_matrix"]).max() < 1e-6
    assert after.metrics["forgetting_score"] == pytest.approx(0.0, abs=1e-6)


def test_cmia_on_synthetic_confidence_split():
    rng = np.random.default_rng(0)
    members = rng.uniform(0.9, 1.0, 200)  # confident on training data
    nonmembers = rng.uniform(0.2, 0.6, 200)
    forget = np.concatenate([rng.uniform(0.9, 1.0, 30), rng.uniform(0.2, 0.6, 70)])
    assert cmia_efficacy(members, nonmembers, forget) == pytest.approx(70.0, abs=2.0)
    assert cmia_efficacy(members, nonmembers, members[:50]) == pytest.approx(0.0, abs=2.0)


def test_probe_on_digits_features():
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    probe = fit_probe(x[:1000], y[:1000])
    assert probe.accuracy(x[:1000], y[:1000]) > 95
    assert probe.accuracy(x[1000:], y[1000:]) > 85
    # a probability per label: over the ten possible labels the confidences of a sample sum to 1,
    # and the true-label confidence is the entry of the sample's own label
    per_label = np.stack([probe.true_label_confidence(x[1000:1010], np.full(10, c)) for c in range(10)])
    np.testing.assert_allclose(per_label.sum(0), 1.0, atol=1e-6)
    conf = probe.true_label_confidence(x[1000:1010], y[1000:1010])
    np.testing.assert_allclose(conf, per_label[y[1000:1010], np.arange(10)])
    assert probe.true_label_confidence(x[:1], np.array([99]))[0] == 0.0  # unseen label
    views = np.repeat(x[:300, None, :], 2, axis=1) + np.random.default_rng(0).normal(
        0, 1, (300, 2, 64)
    )
    sgd = fit_probe(views, y[:300], mode="sgd_augmented", epochs=5)
    assert sgd.accuracy(x[300:600], y[300:600]) > 80


def test_dedupe_and_gather_drop_sampler_padding():
    keys = torch.arange(5)
    shards = [shard(keys, r, 2) for r in range(2)]
    assert [s.tolist() for s in shards] == [[0, 2, 4], [1, 3, 0]]  # key 0 padded

    def feats(k):
        return SplitFeatures(k, k * 10, clean=k[:, None].float().expand(-1, 3))

    mine, theirs = feats(shards[0]), feats(shards[1])
    queue = [theirs.keys, theirs.targets, theirs.clean]  # what rank 1 contributes, in call order
    merged = gather_split(mine, lambda t: torch.stack([t, queue.pop(0)]), world_size=2)
    assert merged.keys.tolist() == [0, 1, 2, 3, 4]
    assert merged.targets.tolist() == [0, 10, 20, 30, 40]
    assert merged.clean[:, 0].tolist() == [0, 1, 2, 3, 4]
    assert dedupe(feats(torch.tensor([3, 1, 3]))).keys.tolist() == [1, 3]


def test_audits_resolve_through_entry_points():
    assert {"emia", "linear_probe", "cmia", "alignment_matrix"} <= set(registry.available("audit"))
    assert [a.name for a in resolve_audits(["emia", "cmia"])] == ["emia", "cmia"]
    with pytest.raises(KeyError, match="Available audits"):
        resolve_audits(["nope"])
