"""CLIP per-row terms equal open_clip's ClipLoss; masks are concat([m, m]); AC/NegGrad on CLIP rows."""

import math

import open_clip
import pytest
import torch
import torch.nn.functional as F

from lightly_unlearn.losses.alignment_calibration import alignment_calibration_objective
from lightly_unlearn.losses.clip_rows import clip_row_terms, is_clip_criterion
from lightly_unlearn.losses.rows import row_mask


def _features(n=6, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    img = F.normalize(torch.randn(n, d, generator=g), dim=-1)
    txt = F.normalize(torch.randn(n, d, generator=g), dim=-1)
    return img, txt


@pytest.mark.parametrize("bias", [None, -1.5])
def test_row_terms_mean_equals_clip_loss(bias):
    img, txt = _features()
    scale = torch.tensor(1 / 0.07)
    loss = open_clip.ClipLoss()
    b = None if bias is None else torch.tensor(bias)
    terms = clip_row_terms(loss, img, txt, scale, b)
    assert terms.rows_per_sample == 2 and terms.loss.shape == (12,)
    expected = loss(img, txt, scale) if b is None else loss(img, txt, scale, b)
    torch.testing.assert_close(terms.loss.mean(), expected)
    # image rows are CE over texts, text rows CE over images
    logits = scale * img @ txt.T + (0.0 if b is None else b)
    labels = torch.arange(6)
    torch.testing.assert_close(terms.loss[:6], F.cross_entropy(logits, labels, reduction="none"))
    torch.testing.assert_close(terms.loss[6:], F.cross_entropy(logits.T, labels, reduction="none"))
    torch.testing.assert_close(terms.positive[:6], torch.diagonal(logits))


def test_gradient_equals_clip_loss():
    img, txt = _features()
    img.requires_grad_(True)
    scale = torch.tensor(math.exp(2.0))
    loss = open_clip.ClipLoss()
    (g1,) = torch.autograd.grad(clip_row_terms(loss, img, txt, scale).loss.mean(), img)
    (g2,) = torch.autograd.grad(loss(img, txt, scale), img)
    torch.testing.assert_close(g1, g2)


def test_global_rows_are_sliced_to_this_rank():
    """world_size > 1 without local_loss: all N·W rows are computed; this rank's N are kept."""
    img, txt = _features(n=4)

    class FakeGathered(open_clip.ClipLoss):
        def get_logits(self, i, t, s, logit_bias=None):  # as if 2 ranks held [other, ours]
            other_i, other_t = _features(n=4, seed=1)
            all_i, all_t = torch.cat([other_i, i]), torch.cat([other_t, t])
            li = s * all_i @ all_t.T
            return li, li.T

    loss = FakeGathered(rank=1, world_size=2)
    terms = clip_row_terms(loss, img, txt, torch.tensor(10.0))
    assert terms.loss.shape == (8,)
    other_i, other_t = _features(n=4, seed=1)
    logits = 10.0 * img @ torch.cat([other_t, txt]).T
    torch.testing.assert_close(terms.loss[:4], F.cross_entropy(logits, torch.arange(4, 8), reduction="none"))


def test_mask_is_concat_not_repeat_and_ac_reduces_to_plain_loss():
    img, txt = _features()
    loss = open_clip.ClipLoss()
    terms = clip_row_terms(loss, img, txt, torch.tensor(5.0))
    m = torch.tensor([True, False, False, True, False, False])
    rows = row_mask(m, terms.rows_per_sample)
    assert rows.tolist() == m.tolist() + m.tolist()
    # alpha = gamma = 1: AC objective is the plain mean over rows
    torch.testing.assert_close(alignment_calibration_objective(terms, m, 1.0), terms.loss.mean())
    assert is_clip_criterion(loss)
    from lightly.loss import NTXentLoss

    assert not is_clip_criterion(NTXentLoss())
