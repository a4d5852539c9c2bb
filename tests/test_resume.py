"""Resume: an unlearning run that crashes after 2 of 4 epochs and resumes from its
Lightning checkpoint ends with the same weights as an uninterrupted 4-epoch run.

Tolerance: final weights |Δ| <= 1e-6 and audit numbers |Δ| <= 1e-4 (CPU, one thread: observed
bit-identical). What makes it exact: the training loader's order depends only on (seed, epoch)
(``ForgetRetainDataModule`` uses a seeded ``DistributedSampler`` whose epoch Lightning restores),
optimizer state is in the checkpoint, and the views are deterministic here. Random augmentations
and AC's random partners draw from the global torch RNG, which Lightning checkpoints do not hold:
with them a resumed run is a statistically equivalent run, not an identical one.
"""

from __future__ import annotations

import lightning.pytorch as L
import pytest
import torch
from conftest import digits_dataset, make_simclr
from ddp_parity_script import transforms
from lightning.pytorch.callbacks import ModelCheckpoint

from lightly_unlearn import AuditCallback, ForgetRetainDataModule, UnlearnCallback
from lightly_unlearn.audits.runner import flat_metrics
from lightly_unlearn.io import load_checkpoint, sha256_file

FORGET = [2, 9]
HP = {"alpha": 1.5, "beta": 1.0}


class Crashed(RuntimeError):
    pass


class CrashAtEpoch(L.Callback):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            raise Crashed(f"simulated crash at the start of epoch {self.epoch}")


def _dm(forget=FORGET):
    train_t, audit_view = transforms()
    dm = ForgetRetainDataModule(
        digits_dataset(24), forget, train_t, batch_size=8, holdout=digits_dataset(9, offset=200)
    )
    dm.view_transform = audit_view
    return dm


def _model():
    torch.manual_seed(0)
    return make_simclr("L")()


def _fit(tmp_path, name, *, extra=(), ckpt_path=None, forget=FORGET, hp=HP):
    model = _model()
    unlearn = UnlearnCallback("ac", **hp)
    audit = AuditCallback(audits=("emia", "alignment_matrix"), num_views=3, batch_size=8)
    trainer = L.Trainer(
        max_epochs=4,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path / name),
        callbacks=[unlearn, audit, *extra, ModelCheckpoint(dirpath=tmp_path / name, save_last=True)],
    )
    trainer.fit(model, datamodule=_dm(forget), ckpt_path=ckpt_path)
    return model, audit


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("resume")
    full, full_audit = _fit(tmp, "full")
    with pytest.raises(Crashed):
        _fit(tmp, "crashed", extra=[CrashAtEpoch(2)])
    return tmp, full, full_audit


def test_resumed_run_equals_uninterrupted_run(interrupted):
    tmp, full, full_audit = interrupted
    ckpt = tmp / "crashed" / "last.ckpt"
    digest = sha256_file(ckpt)
    state = load_checkpoint(ckpt)  # weights_only=True: callback state is plain Python
    assert state["epoch"] == 1  # two epochs (0 and 1) done
    (unlearn_state,) = [v for k, v in state["callbacks"].items() if k.startswith("UnlearnCallback")]
    assert unlearn_state["method"] == "ac"
    assert unlearn_state["hyperparameters"] == {"alpha": 1.5, "beta": 1.0, "gamma": None,
                                                "extra_encoder": "auto"}
    assert unlearn_state["forget_sha256"] == _dm().forget_sha256
    (audit_state,) = [v for k, v in state["callbacks"].items() if k.startswith("AuditCallback")]
    assert audit_state["before"] is not None

    resumed, audit = _fit(tmp, "resumed", ckpt_path=str(ckpt))
    assert sha256_file(ckpt) == digest  # the input checkpoint is never modified
    for name, w in full.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], w, atol=1e-6, rtol=0, msg=name)
    # "before" numbers came back from the checkpoint (not re-measured on the half-unlearned model)
    assert flat_metrics(audit.before) == pytest.approx(flat_metrics(full_audit.before), abs=1e-4)
    assert flat_metrics(audit.after) == pytest.approx(flat_metrics(full_audit.after), abs=1e-4)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"forget": [2, 10]}, "different forget set"),
        ({"hp": {"alpha": 0.5, "beta": 1.0}}, "hyper-parameters"),
    ],
    ids=["forget_set", "hyperparameters"],
)
def test_resume_with_a_different_forget_set_or_hparams_is_refused(interrupted, change, message):
    tmp, _, _ = interrupted
    ckpt = tmp / "crashed" / "last.ckpt"
    digest = sha256_file(ckpt)
    with pytest.raises(ValueError, match=message):
        _fit(tmp, "refused", ckpt_path=str(ckpt), **change)
    assert sha256_file(ckpt) == digest
    assert not (tmp / "refused").exists() or not any((tmp / "refused").rglob("*.ckpt"))


def test_checkpoint_without_newer_options_resumes_at_their_defaults():
    """A checkpoint written before an option existed ran it at its default (or at the method's
    ``before_option`` value where the new default behaves differently): resuming it with that
    value is accepted, another value refused; a changed default is a changed run."""
    from lightly_unlearn import UnlearnCallback

    older = {"method": "ac", "hyperparameters": {"alpha": 1.0, "beta": 8.0},  # before gamma
             "forget_sha256": None, "num_forget": None}
    UnlearnCallback("ac", extra_encoder="momentum").load_state_dict(older)
    with pytest.raises(ValueError, match="hyper-parameters"):
        UnlearnCallback("ac", gamma=0.5, extra_encoder="momentum").load_state_dict(older)
    beta4 = {**older, "hyperparameters": {"alpha": 1.0, "beta": 4.0, "gamma": None}}
    UnlearnCallback("ac", beta=4.0, extra_encoder="momentum").load_state_dict(beta4)
    with pytest.raises(ValueError, match="hyper-parameters"):  # beta's default was 4 until 2bfd457
        UnlearnCallback("ac", extra_encoder="momentum").load_state_dict(beta4)
    # before extra_encoder existed, the extra view went through the momentum encoder on MoCo;
    # today's default ('auto': online on MoCo) is another run
    with pytest.raises(ValueError, match="hyper-parameters"):
        UnlearnCallback("ac", beta=4.0).load_state_dict(beta4)
    # a checkpoint with every option resumes at exactly its values
    today = {**older, "hyperparameters": UnlearnCallback("ac").hyperparameters}
    UnlearnCallback("ac").load_state_dict(today)
