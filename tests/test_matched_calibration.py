"""AC's ``calibration='matched'``: the forget terms follow the measured forget-vs-holdout
alignment gap, so they fade at the holdout's level and reverse past it (issue 9, item 5b)."""

import pytest
import pytorch_lightning as pl
import torch
from conftest import digits_dataset, make_simclr, tiny_transform, trainer_kwargs
from torch import nn

from lightly_unlearn import ForgetRetainDataModule, UnlearnCallback, registry
from lightly_unlearn.losses.rows import RowTerms
from lightly_unlearn.methods.base import StepContext

# 3 samples, 6 rows; sample 1 is a forget sample -> rows 1 and 4 (as in test_methods.py)
POS = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
LSE = torch.tensor([2.0, 4.0, 5.0, 6.0, 9.0, 7.0])  # per-row loss = [1, 2, 2, 2, 4, 1]
FORGET = torch.tensor([False, True, False])


def ac(**hp):
    return registry.load("method", "ac")(**hp)


def ctx(level_gap, anchor=None, extra=None):
    return StepContext(
        terms=RowTerms(POS.clone(), LSE.clone(), 2), forget=FORGET,
        anchor=anchor if anchor is not None else torch.zeros(3, 2), extra=extra,
        module=nn.Linear(1, 1), progress=0.0, forget_fraction=0.5, level_gap=level_gap,
    )


@pytest.mark.parametrize(
    "gap, weight",
    [(0.05, 1.0), (0.002, 1.0), (0.0005, 0.5), (0.0, 0.0), (-0.0005, -0.5), (-0.2, -1.0)],
)
def test_weight_is_full_above_parity_zero_at_it_and_reversed_below(gap, weight):
    """Full strength while the forget samples align more than holdout ones, 0 at parity,
    reversed past it, with a linear zone of +-0.001 (cosine) around parity."""
    assert ac(calibration="matched").matched_weight((gap, 0.01)) == pytest.approx(weight)
    assert ac().matched_weight(None) == 1.0  # 'down': the reference, always full strength


def test_at_parity_the_objective_is_plain_training_on_the_retain_rows():
    # retain rows 0, 2, 3, 5: losses 1 + 2 + 2 + 1 over 4 rows; no forget row, no beta term
    anchor, extra = torch.randn(3, 4), torch.randn(1, 4)
    loss = ac(calibration="matched", beta=4.0).objective(ctx((0.0, 0.01), anchor, extra))
    assert loss.item() == pytest.approx(6 / 4)
    full = ac(calibration="matched", beta=0.0).objective(ctx((0.05, 0.01)))
    assert full.item() == pytest.approx(ac(beta=0.0).objective(ctx(None)).item())


def test_past_parity_positive_calibration_raises_the_forget_alignment():
    anchor = torch.randn(3, 4)
    extra = torch.randn(1, 4, requires_grad=True)

    def cos_after_step(level_gap):
        e = extra.detach().clone().requires_grad_(True)
        ac(calibration="matched", beta=4.0).objective(ctx(level_gap, anchor, e)).backward()
        stepped = e.detach() - 0.5 * e.grad
        return torch.nn.functional.cosine_similarity(anchor[1:2], stepped).item()

    before = torch.nn.functional.cosine_similarity(anchor[1:2], extra.detach()).item()
    assert cos_after_step((0.05, 0.01)) < before  # above the holdout's level: pushed down
    assert cos_after_step((-0.05, 0.01)) > before  # past it: pulled back up


def test_options_are_validated_when_the_callback_is_built():
    with pytest.raises(ValueError, match="calibration must be one of 'down', 'matched'"):
        UnlearnCallback("ac", calibration="holdout")
    with pytest.raises(TypeError, match="calibration must be a string"):
        UnlearnCallback("ac", calibration=1)


def _fit(tmp_path, holdout=True, epochs=2, **hp):
    dm = ForgetRetainDataModule(digits_dataset(32), list(range(6)), tiny_transform(), batch_size=8,
                                holdout=digits_dataset(16, offset=200) if holdout else None)
    callback = UnlearnCallback("ac", calibration="matched", **hp)
    seen = []
    objective = callback.method.objective
    callback.method.objective = lambda c: seen.append(c.level_gap) or objective(c)
    trainer = pl.Trainer(**trainer_kwargs(tmp_path, max_epochs=epochs), callbacks=[callback])
    trainer.fit(make_simclr("pl")(), datamodule=dm)
    return trainer, callback, seen


def test_the_callback_measures_the_gap_each_epoch_and_hands_it_to_the_method(tmp_path):
    trainer, callback, seen = _fit(tmp_path, beta=1.0)
    per_epoch = sorted(set(seen), key=seen.index)
    assert len(seen) == 2 * 4 and len(per_epoch) == 2  # 4 steps per epoch, one value per epoch
    assert all(se > 0 for _, se in per_epoch)
    assert trainer.callback_metrics["calibration/alignment_level_gap"] == pytest.approx(per_epoch[1][0])


def test_the_measurement_leaves_batch_norm_statistics_and_training_mode_alone(tmp_path):
    """The check runs in eval mode between epochs: a BatchNorm model's running statistics,
    weights and train mode are exactly as before it."""
    from lightly_unlearn.audits.features import resolve_embed_fn
    from lightly_unlearn.callbacks.holdout_stopping import alignment_level_gap

    model = make_simclr("pl")()
    assert any(isinstance(m, nn.BatchNorm1d) for m in model.modules())
    dm = ForgetRetainDataModule(digits_dataset(32), list(range(6)), tiny_transform(), batch_size=8,
                                holdout=digits_dataset(16, offset=200))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    gap, se = alignment_level_gap(resolve_embed_fn("head", model, None), dm, model)
    assert model.training and se > 0
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_matched_needs_a_holdout_before_any_training(tmp_path):
    with pytest.raises(ValueError, match="holdout="):
        _fit(tmp_path, holdout=False)
