"""HoldoutAlignmentStopping: the calibrated mode stops once forget samples align like holdout ones."""

import copy

import pytest
import pytorch_lightning as pl
import torch
from conftest import digits_dataset, make_simclr, tiny_transform, trainer_kwargs

from lightly_unlearn import (
    AuditCallback,
    ForgetRetainDataModule,
    HoldoutAlignmentStopping,
    UnlearnCallback,
)


def _fit(tmp_path, stopper, holdout=True, epochs=4):
    dm = ForgetRetainDataModule(digits_dataset(32), list(range(6)), tiny_transform(), batch_size=8,
                                holdout=digits_dataset(16, offset=200) if holdout else None)
    trainer = pl.Trainer(**trainer_kwargs(tmp_path, max_epochs=epochs),
                         callbacks=[UnlearnCallback("ac", beta=1.0), stopper])
    trainer.fit(make_simclr("pl")(), datamodule=dm)
    return trainer


def _seeded_fit(tmp_path, stopper, epochs):
    torch.manual_seed(0)  # the same model, batches and views in every run
    return _fit(tmp_path, stopper, epochs=epochs)


def test_stops_once_training_brings_the_gap_below_the_margin(tmp_path):
    """AC (beta = 1) pushes the forget samples' alignment down epoch by epoch: with a margin
    between the first check and a later one, the run goes on past the first check and stops at
    the first epoch whose gap crossed the margin."""
    free = HoldoutAlignmentStopping(margin=-2.0, num_samples=8, num_views=2)  # never stops
    _seeded_fit(tmp_path / "free", free, epochs=4)
    gaps = free.history
    assert len(gaps) == 4 and min(gaps[1:]) < gaps[0], gaps  # the gap falls during training
    margin = (gaps[0] + min(gaps[1:])) / 2  # not reached at the first check, reached later
    crossing = next(i for i, g in enumerate(gaps) if g <= margin)
    assert crossing >= 1

    stopper = HoldoutAlignmentStopping(margin=margin, num_samples=8, num_views=2)
    trainer = _seeded_fit(tmp_path / "stopped", stopper, epochs=4)
    assert stopper.history == pytest.approx(gaps[: crossing + 1])  # same run up to the stop
    assert stopper.history[0] > margin >= stopper.history[-1]
    assert stopper.stopped_epoch == crossing and trainer.current_epoch == crossing + 1
    assert trainer.callback_metrics["calibration/alignment_level_gap"] == pytest.approx(gaps[crossing])


def test_runs_on_while_forget_samples_align_more_than_holdout(tmp_path):
    stopper = HoldoutAlignmentStopping(margin=-2.0, num_samples=8, num_views=2, min_epochs=1)
    trainer = _fit(tmp_path, stopper, epochs=3)
    assert trainer.current_epoch == 3 and stopper.stopped_epoch is None and len(stopper.history) == 3
    assert stopper.state_dict()["history"] == stopper.history


def test_gap_is_the_audits_alignment_level_gap_of_the_model(tmp_path):
    """The gap is the audits' ``alignment_level_gap`` (EMIA's, on the same seeded samples and
    views) of the model as it is, and other weights give another gap."""
    dm = ForgetRetainDataModule(digits_dataset(32), list(range(6)), tiny_transform(), batch_size=8,
                                holdout=digits_dataset(16, offset=200))
    stopper = HoldoutAlignmentStopping(margin=-2.0, num_samples=8, num_views=3)
    audit = AuditCallback(audits=["emia"], num_samples=8, num_views=3, embed_fn="head",
                          save_files=False, verbose=False)
    trainer = pl.Trainer(**trainer_kwargs(tmp_path, max_epochs=1),
                         callbacks=[UnlearnCallback("ac", beta=1.0), stopper, audit])
    trainer.fit(make_simclr("pl")(), datamodule=dm)
    audited = audit.after["emia"].metrics["alignment_level_gap"]
    assert stopper.history[-1] == pytest.approx(audited, abs=1e-6)
    assert audit.before["emia"].metrics["alignment_level_gap"] != pytest.approx(audited, abs=1e-4)
    other = copy.deepcopy(trainer.lightning_module)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in other.backbone.parameters():
            p.add_(0.5 * torch.randn_like(p))
    assert stopper.level_gap(trainer, other) != pytest.approx(audited, abs=1e-4)


def test_needs_a_holdout(tmp_path):
    with pytest.raises(ValueError, match="holdout="):
        _fit(tmp_path, HoldoutAlignmentStopping(), holdout=False)
