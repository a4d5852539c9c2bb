"""Sign and weights of every method's objective on a hand-made batch."""

import pytest
import torch
from lightly.loss import NTXentLoss
from torch import nn

from lightly_unlearn import AlignmentCalibrationLoss, registry
from lightly_unlearn.losses.rows import RowTerms, ntxent_row_terms
from lightly_unlearn.methods.base import StepContext

# 3 samples, 6 rows; sample 1 is a forget sample -> rows 1 and 4.
POS = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
LSE = torch.tensor([2.0, 4.0, 5.0, 6.0, 9.0, 7.0])  # per-row loss = [1, 2, 2, 2, 4, 1]
FORGET = torch.tensor([False, True, False])


def ctx(forget=FORGET, anchor=None, extra=None, module=None, forget_fraction=0.25):
    return StepContext(
        terms=RowTerms(POS.clone(), LSE.clone(), 2),
        forget=forget,
        anchor=anchor if anchor is not None else torch.zeros(3, 2),
        extra=extra,
        module=module if module is not None else nn.Linear(1, 1),
        progress=0.0,
        forget_fraction=forget_fraction,
    )


def method(name, **hp):
    return registry.load("method", name)(**hp)


def test_finetune_and_retrain_are_the_plain_mean():
    for name in ("finetune", "retrain"):
        assert method(name).objective(ctx()).item() == pytest.approx(12 / 6)


def test_gradient_ascent_is_minus_the_mean():
    assert method("ga").objective(ctx(forget=torch.ones(3, dtype=torch.bool))).item() == pytest.approx(-2.0)


def test_neggrad_subtracts_lambda_times_forget_rows_over_all_rows():
    # retain rows 0,2,3,5: 1+2+2+1 = 6; forget rows 1,4: 2+4 = 6
    assert method("ng").objective(ctx()).item() == pytest.approx((6 - 6) / 6)
    assert method("ng", lam=0.5).objective(ctx()).item() == pytest.approx((6 - 3) / 6)


def test_l1_sparse_adds_lambda_times_l1_norm():
    lin = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, -3.0]]))
    m = method("l1", lam=0.1)
    assert m.regularizer(lin, 0.0).item() == pytest.approx(0.4)
    assert method("l1", lam=0.1, schedule="linear").regularizer(lin, 0.5).item() == pytest.approx(0.2)
    with pytest.raises(ValueError, match="schedule"):
        method("l1", schedule="cosine")


def test_ac_weights_alpha_and_gamma_as_spec():
    # retain rows sum 6; forget rows: pos 2, 5; lse 4, 9
    a, g = 0.5, 2.0
    expected = (6 + (-a * (2 + 5) + g * (4 + 9))) / (4 + a * 2)
    assert method("ac", alpha=a, gamma=g).objective(ctx()).item() == pytest.approx(expected)


def test_ac_gamma_equal_alpha_gives_alpha_times_row_loss():
    a = 1.7
    expected = (6 + a * (2 + 4)) / (4 + a * 2)
    assert method("ac", alpha=a).objective(ctx()).item() == pytest.approx(expected)
    assert method("ac", alpha=a, gamma=a).objective(ctx()).item() == pytest.approx(expected)


def test_ac_alpha1_beta0_is_plain_training_on_the_batch():
    assert method("ac", alpha=1.0, beta=0.0).objective(ctx(extra=torch.ones(1, 2))).item() == pytest.approx(2.0)


def test_ac_beta_adds_scaled_cosine_of_forget_views():
    anchor = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    extra = torch.tensor([[1.0, 1.0]])  # cos with anchor[1] = 1/sqrt(2)
    base = method("ac", beta=0.0).objective(ctx()).item()
    got = method("ac", beta=2.0).objective(ctx(anchor=anchor, extra=extra)).item()
    assert got == pytest.approx(base + 2.0 * 0.25 * 2**-0.5)


def test_ac_batch_without_forget_samples_is_finite():
    none = torch.zeros(3, dtype=torch.bool)
    out = method("ac", beta=1.0).objective(ctx(forget=none, extra=torch.zeros(0, 2)))
    assert torch.isfinite(out) and out.item() == pytest.approx(2.0)


def test_unknown_hyperparameter_lists_valid_ones():
    with pytest.raises(TypeError, match="alpha=1.0"):
        method("ac", alpah=1.0)
    with pytest.raises(ValueError, match=">= 0"):
        method("ac", alpha=-1.0)


def test_drop_in_criterion_equals_ntxent_and_matches_method():
    torch.manual_seed(0)
    z0, z1 = torch.randn(5, 8), torch.randn(5, 8)
    crit = AlignmentCalibrationLoss(temperature=0.2, alpha=0.7, gamma=1.3)
    torch.testing.assert_close(crit(z0, z1), NTXentLoss(temperature=0.2)(z0, z1))
    forget = torch.tensor([True, False, True, False, False])
    terms = ntxent_row_terms(NTXentLoss(temperature=0.2), z0, z1)
    via_method = method("ac", alpha=0.7, gamma=1.3).objective(
        StepContext(terms, forget, z0, None, nn.Linear(1, 1), 0.0, 1.0)
    )
    torch.testing.assert_close(crit(z0, z1, forget_mask=forget), via_method)


def test_drop_in_criterion_beta_uses_forget_fraction():
    torch.manual_seed(0)
    z0, z1 = torch.randn(4, 8), torch.randn(4, 8)
    forget = torch.tensor([True, True, False, False])
    extra = z0[forget].clone()  # cos = 1
    plain = AlignmentCalibrationLoss(alpha=1.0)(z0, z1, forget_mask=forget)
    got = AlignmentCalibrationLoss(alpha=1.0, beta=2.0, forget_fraction=0.1)(
        z0, z1, forget_mask=forget, extra=extra
    )
    torch.testing.assert_close(got, plain + 0.2)


def test_drop_in_criterion_swaps_partners_among_forget_rows_when_asked():
    from lightly_unlearn.losses.alignment_calibration import swap_forget_partners

    z1 = torch.arange(5.0).view(5, 1).repeat(1, 3)
    forget = torch.tensor([True, False, True, True, False])
    for _ in range(20):
        swapped = swap_forget_partners(z1, forget)
        assert torch.equal(swapped[~forget], z1[~forget])  # retain rows untouched
        rows = swapped[forget][:, 0].tolist()
        assert sorted(rows) == [0.0, 2.0, 3.0] and all(r != i for r, i in zip(rows, [0.0, 2.0, 3.0]))
    torch.manual_seed(0)
    z0, z1 = torch.randn(5, 8), torch.randn(5, 8)
    plain = AlignmentCalibrationLoss(alpha=1.0)(z0, z1, forget_mask=forget)
    swapped = AlignmentCalibrationLoss(alpha=1.0, swap_partners=True)(z0, z1, forget_mask=forget)
    assert not torch.isclose(plain, swapped)


def test_drop_in_criterion_says_what_is_missing():
    z0, z1 = torch.randn(4, 8), torch.randn(4, 8)
    forget = torch.tensor([True, True, False, False])
    with pytest.raises(ValueError, match="pass\\s+extra="):
        AlignmentCalibrationLoss(beta=1.0)(z0, z1, forget_mask=forget)
    with pytest.raises(ValueError, match="extra must have shape \\(4, 8\\).*or \\(2, 8\\)"):
        AlignmentCalibrationLoss(beta=1.0)(z0, z1, forget_mask=forget, extra=torch.randn(3, 8))
    with pytest.raises(ValueError, match="bool tensor of shape \\(4,\\)"):
        AlignmentCalibrationLoss()(z0, z1, forget_mask=torch.tensor([1, 0, 0, 0]))
