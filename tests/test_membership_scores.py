"""PartCrop's membership features (``benchmarks/membership_scores.py``), as in the authors' code."""

import numpy as np
import torch
from conftest import load_benchmark


def test_bell_distributions_are_distributions_peaked_in_the_middle():
    bell = load_benchmark("membership_scores.py").bell_distributions(5, 16, torch.Generator().manual_seed(0))
    torch.testing.assert_close(bell.sum(1), torch.ones(5))
    assert (bell[:, 6:10].mean(1) > bell[:, [0, 15]].mean(1)).all()  # sorted draws: a bump


def test_partcrop_features_sorted_kl_and_part_whole_cosine():
    from lightly_unlearn.demo.model import ConvSimCLR

    torch.manual_seed(0)
    model = ConvSimCLR()
    images = torch.randn(3, 3, 16, 16)
    feats, cosine = load_benchmark("membership_scores.py").partcrop_features(model, images, num_parts=8, seed=0)
    assert feats.shape == (3, 16) and cosine.shape == (3,)
    uniform, bell = feats[:, :8], feats[:, 8:]
    assert (uniform >= -1e-5).all()  # KL divergences (up to the authors' 1e-6 smoothing)
    assert (uniform[:, :-1] >= uniform[:, 1:]).all() and (bell[:, :-1] >= bell[:, 1:]).all()  # sorted
    assert ((cosine >= -1) & (cosine <= 1)).all()
    again, _ = load_benchmark("membership_scores.py").partcrop_features(model, images, num_parts=8, seed=0)
    torch.testing.assert_close(feats, again)  # seeded crops


def test_cross_fitted_scores_every_sample_with_a_model_that_never_saw_it():
    from sklearn.metrics import roc_auc_score
    from sklearn.neighbors import KNeighborsClassifier

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(200, 5)), np.r_[np.ones(100), np.zeros(100)]  # no signal at all
    memoriser = lambda: KNeighborsClassifier(1)  # noqa: E731  (perfect on what it saw)
    assert roc_auc_score(y, memoriser().fit(x, y).predict_proba(x)[:, 1]) == 1.0
    scores = load_benchmark("membership_scores.py").cross_fitted(x, y, memoriser, seed=0)
    assert abs(roc_auc_score(y, scores) - 0.5) < 0.1  # scored out of fold: chance, as it should
