"""The relearning test trains a copy on the retain set and re-audits; the user's objects stay as they were."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import digits_dataset, make_moco, make_simclr, tiny_transform

import lightly_unlearn
from lightly_unlearn import ForgetRetainDataModule, registry
from lightly_unlearn.audits.verdict import RELEARN_RESISTANT_METHOD, assess, relearn_warnings


def _dm(forget, holdout=True, **kw):
    return ForgetRetainDataModule(
        digits_dataset(48), forget, tiny_transform(), batch_size=16,
        holdout=digits_dataset(40, offset=100) if holdout else None, **kw,
    )


def _state(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("forget", [[7], [1, 5, 9, 20, 33]])
def test_relearn_trains_a_copy_and_reports_auc_before_and_after(forget):
    """BatchNorm in the projection head, as lightly's; 1- and 5-sample forget sets."""
    module = make_simclr("pl")()
    dm = _dm(forget, seed=3)
    state, criterion = _state(module), module.criterion
    config = (dm.mode, dm.batch_size, dm.seed, dm.extra_view)
    result = lightly_unlearn.relearn(module, dm, epochs=2, num_views=4, n_resamples=200)
    # the user's module and datamodule are untouched
    for key, value in module.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert module.criterion is criterion and module.training and module._trainer is None
    assert (dm.mode, dm.batch_size, dm.seed, dm.extra_view) == config
    # the copy trained: 2 epochs of 2 retain batches of 16
    assert result.steps == 4 and result.epochs == 2
    m = result.metrics
    assert m["relearn_forget_samples"] == len(forget) and m["relearn_holdout_samples"] == 40
    assert m["relearn_forget_holdout_auc_change"] == pytest.approx(
        m["relearn_forget_holdout_auc"] - m["relearn_before_forget_holdout_auc"])
    assert m["relearn_forget_holdout_auc_change_ci_low"] <= m["relearn_forget_holdout_auc_change_ci_high"]
    assert "relearn_forget_holdout_tpr_at_1pct_fpr" not in m  # 40 holdout samples cannot resolve 1 %
    assert result.scores["forget_after"].shape == (len(forget),)
    assert result.scores["forget_after"].tolist() != result.scores["forget_before"].tolist()


def test_relearn_is_seeded_and_leaves_the_global_rng_alone():
    module, dm = make_simclr("pl")(), _dm([2, 4, 6])
    torch.manual_seed(11)
    expected_next = torch.rand(1)
    torch.manual_seed(11)
    first = lightly_unlearn.relearn(module, dm, epochs=1, num_views=3, n_resamples=100)
    assert torch.equal(torch.rand(1), expected_next)
    second = lightly_unlearn.relearn(module, dm, epochs=1, num_views=3, n_resamples=100)
    assert first.metrics == second.metrics
    other = lightly_unlearn.relearn(module, dm, epochs=1, num_views=3, n_resamples=100, seed=5)
    assert other.metrics["relearn_forget_holdout_auc"] != first.metrics["relearn_forget_holdout_auc"] or \
        other.scores["holdout_after"].tolist() != first.scores["holdout_after"].tolist()


def test_relearn_lr_override_sets_every_param_group():
    """lr=0 on a model without BatchNorm: the copy trains steps but its weights cannot move."""
    module, dm = make_simclr("lightning")(batch_norm=False), _dm([2, 4, 6])
    frozen = lightly_unlearn.relearn(module, dm, epochs=2, lr=0.0, num_views=3, n_resamples=100)
    assert frozen.steps == 4 and frozen.metrics["relearn_lr"] == 0.0
    assert frozen.scores["forget_after"].tolist() == frozen.scores["forget_before"].tolist()
    assert frozen.metrics["relearn_forget_holdout_auc_change"] == 0.0
    moved = lightly_unlearn.relearn(module, dm, epochs=2, num_views=3, n_resamples=100)
    assert moved.scores["forget_after"].tolist() != moved.scores["forget_before"].tolist()


def test_relearn_batch_size_and_moco():
    module, dm = make_moco("pl")(), _dm([1, 2, 3, 4, 5])
    result = lightly_unlearn.relearn(module, dm, epochs=1, batch_size=8, num_views=3, n_resamples=100)
    assert result.steps == 43 // 8 and dm.batch_size == 16


def test_relearn_refuses_what_it_cannot_measure():
    module = make_simclr("pl")()
    with pytest.raises(ValueError, match="holdout="):
        lightly_unlearn.relearn(module, _dm([1, 2], holdout=False), epochs=1)
    with pytest.raises(ValueError, match="epochs"):
        lightly_unlearn.relearn(module, _dm([1, 2]), epochs=0)
    with pytest.raises(TypeError, match="ForgetRetainDataModule"):
        lightly_unlearn.relearn(module, object(), epochs=1)


def _relearn_metrics(before, after, change_ci, auc_ci):
    return {"relearn_before_forget_holdout_auc": before, "relearn_forget_holdout_auc": after,
            "relearn_forget_holdout_auc_change_ci_low": change_ci[0],
            "relearn_forget_holdout_auc_change_ci_high": change_ci[1],
            "relearn_forget_holdout_auc_ci_low": auc_ci[0], "relearn_forget_holdout_auc_ci_high": auc_ci[1],
            "relearn_epochs": 3.0}


def test_relearned_needs_a_rise_beyond_the_interval_and_membership_above_chance():
    back = _relearn_metrics(0.50, 0.80, (0.15, 0.45), (0.70, 0.90))
    [warning] = relearn_warnings(back)
    assert warning["code"] == "relearned" and "0.500 -> 0.800" in warning["message"]
    assert "3 epoch" in warning["message"]
    # it names the method that removes rather than hides, a registered one
    assert f"method '{RELEARN_RESISTANT_METHOD}'" in warning["message"]
    assert registry.load("method", RELEARN_RESISTANT_METHOD)().data == "retain"
    # inside the measurement's own interval: no warning
    assert relearn_warnings(_relearn_metrics(0.50, 0.56, (-0.02, 0.14), (0.45, 0.66))) == []
    # back from overshoot to chance: a rise, but no membership
    assert relearn_warnings(_relearn_metrics(0.30, 0.52, (0.12, 0.32), (0.42, 0.62))) == []
    # the verdict leads with it, after collapse only
    verdict = assess({"forget_holdout_auc": 0.9, "forget_holdout_auc_se": 0.02},
                     {"forget_holdout_auc": 0.5, "forget_holdout_auc_se": 0.05, **back})
    assert verdict.codes == ["relearned"] and verdict.line.startswith("RELEARNED")


def test_relearn_result_feeds_the_verdict():
    module, dm = make_simclr("pl")(), _dm([1, 2, 3])
    result = lightly_unlearn.relearn(module, dm, epochs=1, num_views=3, n_resamples=100)
    audit = result.to_audit_result()
    assert audit.metrics == result.metrics and set(audit.arrays) == set(result.scores)
    as_state = copy.deepcopy(audit.to_state())  # plain types: goes into checkpoints and JSON
    assert as_state["metrics"]["relearn_epochs"] == 1.0


def test_relearn_after_an_unlearning_fit(tmp_path):
    """The usual path: the module is still attached to the unlearning trainer."""
    import pytorch_lightning as pl
    from conftest import trainer_kwargs

    from lightly_unlearn import UnlearnCallback

    module, dm = make_simclr("pl")(), _dm([1, 2, 3, 4, 5])
    trainer = pl.Trainer(**trainer_kwargs(tmp_path, callbacks=[UnlearnCallback("ac", beta=1.0)]))
    trainer.fit(module, datamodule=dm)
    state, mode = _state(module), dm.mode
    result = lightly_unlearn.relearn(module, dm, epochs=1, num_views=3, n_resamples=100)
    assert module.trainer is trainer and dm.trainer is trainer and dm.mode == mode
    assert all(torch.equal(v, state[k]) for k, v in module.state_dict().items())
    assert result.steps == 2 and list(tmp_path.iterdir()) == []
