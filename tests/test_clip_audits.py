"""CLIP audits on hand-made embeddings with known answers, and end to end on a tiny model."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import digits_dataset

from lightly_unlearn import registry
from lightly_unlearn.audits.clip_audits import (
    ClipAlignmentGap,
    ClipPairMIA,
    ClipRetrieval,
    ClipZeroShot,
    retrieval_ranks,
    save_clip_gap_heatmap,
)
from lightly_unlearn.audits.clip_features import (
    CLIP_CACHE_KEY,
    CLIPFeatures,
    PairFeatures,
    compute_clip_inputs,
)
from lightly_unlearn.audits.features import AuditInputs
from lightly_unlearn.errors import AuditInputError


def _pairs(image, text, targets=None, ids=None):
    n = image.shape[0]
    return PairFeatures(
        keys=torch.arange(n),
        targets=torch.as_tensor(targets if targets is not None else [-1] * n),
        image=F.normalize(image.float(), dim=-1),
        text=F.normalize(text.float(), dim=-1),
        caption_ids=torch.as_tensor(ids if ids is not None else list(range(n))),
    )


def _inputs(**splits):
    inputs = AuditInputs(retain=None, forget=None)
    inputs.cache[CLIP_CACHE_KEY] = CLIPFeatures(**splits)
    return inputs


def _with_cos(cos):
    """Pairs whose image·text cosine is exactly ``cos`` (2-d unit vectors)."""
    cos = torch.as_tensor(cos, dtype=torch.float64)
    image = torch.stack([torch.ones_like(cos), torch.zeros_like(cos)], 1)
    text = torch.stack([cos, torch.sqrt(1 - cos**2)], 1)
    return _pairs(image, text)


def test_pair_mia_known_threshold():
    members = _with_cos([0.9, 0.8, 0.85, 0.95])
    nonmembers = _with_cos([0.1, 0.2, 0.3, 0.15])
    forget = _with_cos([0.9, 0.1, 0.2, 0.05])  # 3 of 4 below the threshold (0.8)
    m = ClipPairMIA()(_inputs(forget=forget, retain=members, holdout=nonmembers)).metrics
    assert m["clip_mia"] == pytest.approx(75.0)
    assert m["clip_mia_auc"] == pytest.approx(1.0)
    assert m["clip_mia_threshold"] == pytest.approx(0.8)  # the lowest member score
    assert m["clip_mia_attack_accuracy"] == pytest.approx(100.0)
    with pytest.raises(AuditInputError, match="holdout"):
        ClipPairMIA()(_inputs(forget=forget, retain=members))
    assert "clip_forget_holdout_tpr_at_1pct_fpr" not in m  # 4 non-member pairs resolve no 1 % FPR


def test_pair_mia_tpr_at_low_fpr():
    """100 non-member pairs at cosines 0.00 .. 0.99: the 1 % threshold is 0.98 (one above it)."""
    nonmembers = _with_cos(torch.arange(100) / 100)
    members = _with_cos(torch.full((100,), 0.5))
    forget = _with_cos([0.985, 0.995, 0.5, 0.2])
    m = ClipPairMIA()(_inputs(forget=forget, retain=members, holdout=nonmembers)).metrics
    assert m["clip_forget_holdout_tpr_at_1pct_fpr"] == pytest.approx(50.0)
    assert "clip_forget_holdout_tpr_at_0_1pct_fpr" not in m
    assert "clip_forget_holdout_tpr_at_1pct_fpr" in ClipPairMIA.metric_info


def test_retrieval_perfect_reversed_and_duplicate_captions():
    eye = torch.eye(6)
    m = ClipRetrieval(max_gallery=6)(_inputs(forget=_pairs(eye, eye), retain=_pairs(eye, eye))).metrics
    assert m["retrieval_forget_i2t_r1"] == 100.0 and m["retrieval_retain_t2i_r5"] == 100.0
    # texts shifted by one: nothing at rank 0, everything within rank 1
    shifted = _pairs(eye, eye.roll(1, 0))
    ranks = retrieval_ranks(shifted.image, shifted.text, shifted.caption_ids, shifted.caption_ids)
    assert ranks.tolist() == [1] * 6
    m = ClipRetrieval(max_gallery=6)(_inputs(forget=shifted)).metrics
    assert m["retrieval_forget_i2t_r1"] == 0.0 and m["retrieval_forget_i2t_r5"] == 100.0
    # identical captions: retrieving the twin caption counts as correct
    ids = torch.tensor([0, 0, 1, 1, 2, 2])
    twins = _pairs(eye, eye[[1, 0, 3, 2, 5, 4]], ids=ids)
    assert retrieval_ranks(twins.image, twins.text, ids, ids).tolist() == [0] * 6


def test_zero_shot_per_class_and_forgotten_class():
    class_text = torch.eye(3)
    img = torch.eye(3)[[0, 1, 2, 2, 0, 1]]
    test = _pairs(img, img, targets=[0, 1, 2, 1, 0, 1])  # one class-1 pair predicted as 2
    feats = dict(
        forget=_pairs(torch.eye(3)[[1, 1]], torch.eye(3)[[1, 1]], targets=[1, 1]),
        retain=_pairs(torch.eye(3)[[0, 2]], torch.eye(3)[[0, 2]], targets=[0, 2]),
        holdout=test,
        class_text=class_text,
    )
    res = ClipZeroShot()(_inputs(**feats))
    assert res.metrics["zs_forget"] == 100.0
    assert res.metrics["zs_test"] == pytest.approx(100 * 5 / 6)
    assert res.arrays["per_class_test"].tolist() == pytest.approx([100.0, 100 * 2 / 3, 100.0])
    assert res.metrics["zs_test_forget_classes"] == pytest.approx(100 * 2 / 3)  # class 1 inferred
    assert res.metrics["zs_test_other_classes"] == 100.0


def test_alignment_gap_matrix_and_forgetting_score(tmp_path):
    eye = torch.eye(4)
    before = ClipAlignmentGap()(_inputs(forget=_pairs(eye, eye)))
    same = ClipAlignmentGap()(_inputs(forget=_pairs(eye, eye)), before=before)
    assert np.allclose(same.arrays["gap_matrix"], 0) and same.metrics["clip_forgetting_score"] == 0
    # after: own captions no longer align (each text moved to the next image's direction)
    after = ClipAlignmentGap()(_inputs(forget=_pairs(eye, eye.roll(1, 0))), before=before)
    g = after.arrays["gap_matrix"]
    assert np.allclose(np.diag(g), 1.0)
    assert after.metrics["clip_forgetting_score"] == pytest.approx(1.0 - (-4 / 12))
    png = save_clip_gap_heatmap(g, tmp_path / "gap.png")
    assert open(png, "rb").read(4) == b"\x89PNG"


def test_registered_as_entry_points():
    for name in ("clip_mia", "clip_retrieval", "clip_zero_shot", "clip_alignment_matrix"):
        assert name in registry.available("audit")
        assert registry.load("audit", name)().name == name


def test_compute_clip_inputs_on_tiny_model():
    from lightly_unlearn import CLIPModule
    from lightly_unlearn.clip import DIGIT_NAMES, DIGIT_TEMPLATES, CaptionDataset
    from lightly_unlearn.clip.data import tiny_clip_kwargs

    torch.manual_seed(0)
    module = CLIPModule(model_name="ViT-B-32", model_kwargs=tiny_clip_kwargs(width=32, embed_dim=16))
    pairs = CaptionDataset(digits_dataset(24), DIGIT_NAMES, DIGIT_TEMPLATES)
    inputs = compute_clip_inputs(
        module, forget=pairs, retain=pairs, holdout=pairs, image_transform=module.preprocess_val,
        classnames=DIGIT_NAMES, templates=DIGIT_TEMPLATES, num_samples=12,
    )
    feats = inputs.cache[CLIP_CACHE_KEY]
    assert feats.forget.image.shape == (12, 16) and feats.class_text.shape == (10, 16)
    assert inputs.forget.clean.shape == (12, 16)  # image features double as clean features
    torch.testing.assert_close(feats.forget.image.norm(dim=-1), torch.ones(12))
    assert module.training  # eval mode restored
    for audit in (ClipPairMIA(), ClipRetrieval(), ClipZeroShot(), ClipAlignmentGap()):
        res = audit(inputs)
        assert all(np.isfinite(v) for v in res.metrics.values())


def test_clip_features_are_sharded_across_ranks_and_gathered_like_one_process():
    """Two ranks simulated in one process: each embeds half of every split (13 sampled pairs:
    7 + 7, one padded), and the gathered features equal one process's, row for row."""
    from lightly_unlearn import CLIPModule
    from lightly_unlearn.clip import DIGIT_NAMES, DIGIT_TEMPLATES, CaptionDataset
    from lightly_unlearn.clip.data import tiny_clip_kwargs

    class Counted(CaptionDataset):
        fetched = 0

        def __getitem__(self, i):
            Counted.fetched += 1
            return super().__getitem__(i)

    torch.manual_seed(0)
    module = CLIPModule(model_name="ViT-B-32", model_kwargs=tiny_clip_kwargs(width=32, embed_dim=16))
    pairs = Counted(digits_dataset(30), DIGIT_NAMES, DIGIT_TEMPLATES)
    kw = dict(forget=pairs, retain=pairs, image_transform=module.preprocess_val, num_samples=13,
              seed=3, batch_size=4)
    one = compute_clip_inputs(module, **kw).cache[CLIP_CACHE_KEY]

    sent = []  # what rank 1 contributes to each all_gather, in call order
    Counted.fetched = 0
    compute_clip_inputs(module, rank=1, world_size=2, all_gather=lambda t: sent.append(t) or t[None], **kw)
    assert Counted.fetched == 2 * 7  # its shard of both splits only
    two = compute_clip_inputs(module, rank=0, world_size=2,
                              all_gather=lambda t: torch.stack([t, sent.pop(0)]), **kw).cache[CLIP_CACHE_KEY]
    assert not sent
    for split in ("forget", "retain"):
        a, b = getattr(one, split), getattr(two, split)
        assert b.keys.tolist() == a.keys.tolist() and b.tokens is None
        assert torch.equal(b.targets, a.targets) and torch.equal(b.caption_ids, a.caption_ids)
        torch.testing.assert_close(b.image, a.image, atol=1e-6, rtol=0)
        torch.testing.assert_close(b.text, a.text, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="all_gather"):
        compute_clip_inputs(module, rank=0, world_size=2, **kw)
