"""HoldoutAlignmentStopping: the calibrated mode stops once forget samples align like holdout ones."""

import pytest
import pytorch_lightning as pl
from conftest import digits_dataset, make_simclr, tiny_transform, trainer_kwargs

from lightly_unlearn import ForgetRetainDataModule, HoldoutAlignmentStopping, UnlearnCallback


def _fit(tmp_path, stopper, holdout=True, epochs=4):
    dm = ForgetRetainDataModule(digits_dataset(32), list(range(6)), tiny_transform(), batch_size=8,
                                holdout=digits_dataset(16, offset=200) if holdout else None)
    trainer = pl.Trainer(**trainer_kwargs(tmp_path, max_epochs=epochs),
                         callbacks=[UnlearnCallback("ac", beta=1.0), stopper])
    trainer.fit(make_simclr("pl")(), datamodule=dm)
    return trainer


def test_stops_at_the_first_check_that_reaches_the_margin(tmp_path):
    stopper = HoldoutAlignmentStopping(margin=1.0, num_samples=8, num_views=2)  # any gap <= 1
    trainer = _fit(tmp_path, stopper)
    assert trainer.current_epoch == 1 and stopper.stopped_epoch == 0 and len(stopper.history) == 1
    assert -1.0 <= stopper.history[0] <= 1.0
    assert "calibration/alignment_level_gap" in trainer.callback_metrics


def test_runs_on_while_forget_samples_align_more_than_holdout(tmp_path):
    stopper = HoldoutAlignmentStopping(margin=-2.0, num_samples=8, num_views=2, min_epochs=1)
    trainer = _fit(tmp_path, stopper, epochs=3)
    assert trainer.current_epoch == 3 and stopper.stopped_epoch is None and len(stopper.history) == 3
    assert stopper.state_dict()["history"] == stopper.history


def test_same_model_gives_the_same_gap(tmp_path):
    """Fixed seeded samples and views: two checks of one model agree exactly."""
    stopper = HoldoutAlignmentStopping(margin=-2.0, num_samples=8, num_views=3)
    trainer = _fit(tmp_path, stopper, epochs=1)
    model = trainer.lightning_module
    assert stopper.level_gap(trainer, model) == pytest.approx(stopper.level_gap(trainer, model))


def test_needs_a_holdout(tmp_path):
    with pytest.raises(ValueError, match="holdout="):
        _fit(tmp_path, HoldoutAlignmentStopping(), holdout=False)
