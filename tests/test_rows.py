"""Per-row contrastive terms must be lightly's loss, row by row."""

import torch
from lightly.loss import NTXentLoss

from lightly_unlearn.losses.rows import ntxent_row_terms, row_mask


def test_rows_equal_ntxent_without_bank():
    torch.manual_seed(0)
    z0, z1 = torch.randn(6, 8), torch.randn(6, 8)
    crit = NTXentLoss(temperature=0.3)
    terms = ntxent_row_terms(crit, z0, z1)
    assert terms.rows_per_sample == 2 and terms.loss.shape == (12,)
    torch.testing.assert_close(terms.loss.mean(), crit(z0, z1))


def test_row_layout_is_view0_then_view1():
    # Row i (view-0 anchor) has positive z1[i]; row N+i (view-1 anchor) has positive z0[i].
    torch.manual_seed(1)
    z0, z1 = torch.randn(4, 8), torch.randn(4, 8)
    terms = ntxent_row_terms(NTXentLoss(temperature=0.5), z0, z1)
    cos = torch.nn.functional.cosine_similarity(z0, z1)
    torch.testing.assert_close(terms.positive[:4], cos / 0.5)
    torch.testing.assert_close(terms.positive[4:], cos / 0.5)


def test_rows_equal_ntxent_with_memory_bank_and_bank_semantics_kept():
    torch.manual_seed(0)
    crit = NTXentLoss(temperature=0.1, memory_bank_size=(32, 8))
    reference = NTXentLoss(temperature=0.1, memory_bank_size=(32, 8))
    reference.memory_bank.bank = crit.memory_bank.bank.clone()
    z0 = torch.randn(5, 8, requires_grad=True)
    z1 = torch.randn(5, 8)
    terms = ntxent_row_terms(crit, z0, z1)
    assert terms.rows_per_sample == 1 and terms.loss.shape == (5,)
    torch.testing.assert_close(terms.loss.mean(), reference(z0, z1))
    # the bank was updated exactly as the stock criterion updates it
    torch.testing.assert_close(crit.memory_bank.bank, reference.memory_bank.bank)
    assert int(crit.memory_bank.bank_ptr) == 5


def test_cross_entropy_is_restored():
    crit = NTXentLoss()
    original = crit.cross_entropy
    ntxent_row_terms(crit, torch.randn(3, 4), torch.randn(3, 4))
    assert crit.cross_entropy is original


def test_row_mask_is_concat_not_repeat():
    m = torch.tensor([True, False, False])
    assert row_mask(m, 2).tolist() == [True, False, False, True, False, False]
    assert row_mask(m, 1).tolist() == m.tolist()


def test_concat_mask_selects_the_forget_samples_rows():
    # Fails with the element-wise repeat bug ([m0, m0, m1, m1, ...]) of the reference code:
    # the masked rows must be exactly the rows anchored on the forget sample's two views.
    torch.manual_seed(0)
    z0, z1 = torch.randn(4, 8), torch.randn(4, 8)
    z1[0] = z0[0]  # sample 0 perfectly aligned: its two rows have positive logit 1/τ
    terms = ntxent_row_terms(NTXentLoss(temperature=0.5), z0, z1)
    forget = torch.tensor([True, False, False, False])
    rows = row_mask(forget, terms.rows_per_sample)
    torch.testing.assert_close(terms.positive[rows], torch.full((2,), 2.0))
    buggy = forget.repeat_interleave(2)
    assert not torch.allclose(terms.positive[buggy], torch.full((2,), 2.0))
