"""No data loss and the unlearning receipt (issue #6): atomic writes, weights_only loading with an
explicit opt-in, input checkpoints never modified, a receipt that verify-receipt checks."""

from __future__ import annotations

import json

import lightning.pytorch as L
import numpy as np
import pytest
import torch
from conftest import digits_dataset, make_simclr, tiny_transform, trainer_kwargs
from lightning.pytorch.callbacks import ModelCheckpoint

from lightly_unlearn import AuditCallback, ForgetRetainDataModule, UnlearnCallback
from lightly_unlearn.callbacks.receipt import ReceiptCallback
from lightly_unlearn.cli import main as cli_main
from lightly_unlearn.io import (
    UntrustedCheckpointError,
    atomic_torch_save,
    atomic_write,
    load_checkpoint,
    sha256_file,
)
from lightly_unlearn.receipt import read_receipt, verify_receipt


def test_atomic_writes_keep_the_old_file_on_failure(tmp_path):
    path = atomic_write(tmp_path / "out.json", "old")

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        atomic_torch_save({"x": Unpicklable()}, path)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]  # no temporary left behind


def test_load_checkpoint_is_weights_only_unless_trusted(tmp_path):
    safe = atomic_torch_save({"state_dict": {"w": torch.ones(2)}}, tmp_path / "safe.ckpt")
    assert torch.equal(load_checkpoint(safe)["state_dict"]["w"], torch.ones(2))
    legacy = tmp_path / "legacy.ckpt"
    torch.save({"a": np.arange(3)}, legacy)
    with pytest.raises(UntrustedCheckpointError, match=r"load_checkpoint\(path, trusted=True\)"):
        load_checkpoint(legacy)
    assert load_checkpoint(legacy, trusted=True)["a"].tolist() == [0, 1, 2]
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.ckpt")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("receipt")
    torch.manual_seed(0)
    model = make_simclr("L")()
    pretrained = atomic_torch_save({"state_dict": model.state_dict()}, tmp / "in" / "pretrained.ckpt")
    digest = sha256_file(pretrained)
    model.load_state_dict(load_checkpoint(pretrained)["state_dict"])
    dm = ForgetRetainDataModule(digits_dataset(24), [0, 5, 9], tiny_transform(), batch_size=8,
                                holdout=digits_dataset(8, offset=300))
    receipt_cb = ReceiptCallback(input_checkpoint=pretrained)
    trainer = L.Trainer(
        **trainer_kwargs(tmp / "out", max_epochs=2, enable_checkpointing=True),
        callbacks=[UnlearnCallback("ac", alpha=1.2), AuditCallback(audits=("emia",), num_views=2),
                   receipt_cb, ModelCheckpoint(dirpath=tmp / "out" / "ckpt")],
    )
    trainer.fit(model, datamodule=dm)
    return tmp, trainer, receipt_cb, pretrained, digest, dm


def test_receipt_contents(run):
    tmp, trainer, cb, pretrained, digest, dm = run
    assert sha256_file(pretrained) == digest  # the input checkpoint was never modified
    receipt = read_receipt(tmp / "out" / "unlearning_receipt.json")
    assert receipt["method"] == "ac"
    assert receipt["hyperparameters"] == {"alpha": 1.2, "beta": 4.0, "gamma": None}  # beta: the default
    assert receipt["forget_set"]["sha256"] == dm.forget_sha256
    assert receipt["forget_set"]["num_forget"] == 3 and receipt["forget_set"]["num_samples"] == 24
    assert receipt["input_checkpoint"]["sha256"] == digest
    assert receipt["input_checkpoint"]["unchanged"] is True
    (ckpt,) = (tmp / "out" / "ckpt").glob("*.ckpt")
    assert receipt["output_checkpoint"]["sha256"] == sha256_file(ckpt)
    assert {"torch", "lightly", "lightning", "lightly-unlearn"} <= receipt["versions"].keys()
    assert "emia" in receipt["audits"]["before"] and "emia" in receipt["audits"]["after"]
    assert receipt["started_at"] <= receipt["finished_at"]
    assert receipt["training"]["global_step"] == trainer.global_step


def test_verify_receipt_cli(run, tmp_path, capsys):
    tmp, trainer, cb, pretrained, _, _ = run
    path = tmp / "out" / "unlearning_receipt.json"
    (ckpt,) = (tmp / "out" / "ckpt").glob("*.ckpt")
    assert cli_main(["verify-receipt", str(path), "--checkpoint", str(ckpt)]) == 0
    assert "OK" in capsys.readouterr().out
    assert cli_main(["verify-receipt", str(path), "--checkpoint", str(pretrained)]) == 1
    assert "MISMATCH" in capsys.readouterr().err
    tampered = json.loads(path.read_text())
    tampered["method"] = "retrain"
    (tmp_path / "t.json").write_text(json.dumps(tampered))
    assert cli_main(["verify-receipt", str(tmp_path / "t.json"), "--checkpoint", str(ckpt)]) == 1
    assert "modified" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("{not json")
    assert cli_main(["verify-receipt", str(tmp_path / "bad.json"), "--checkpoint", str(ckpt)]) == 2
    assert cli_main(["verify-receipt", str(path), "--checkpoint", str(tmp_path / "nope.ckpt")]) == 2


def test_write_after_save_checkpoint(run, tmp_path):
    _, trainer, cb, _, _, _ = run
    final = tmp_path / "final.ckpt"
    trainer.save_checkpoint(final)
    written = ReceiptCallback(path=tmp_path / "r.json").write(trainer, final)
    assert verify_receipt(written, final)[0]
    assert not verify_receipt(written, tmp_path / "missing.ckpt")[0]


def test_checkpoint_callback_that_could_overwrite_the_input_is_refused(tmp_path):
    model = make_simclr("L")()
    trainer_a = L.Trainer(**trainer_kwargs(tmp_path / "a", max_steps=1, enable_checkpointing=True),
                          callbacks=[UnlearnCallback("ft"), ModelCheckpoint(dirpath=tmp_path / "ck", save_last=True)])
    dm = ForgetRetainDataModule(digits_dataset(24), [0, 1], tiny_transform(), batch_size=8)
    trainer_a.fit(model, datamodule=dm)
    last = tmp_path / "ck" / "last.ckpt"
    digest = sha256_file(last)
    trainer_b = L.Trainer(
        **trainer_kwargs(tmp_path / "b", max_steps=2, enable_checkpointing=True),
        callbacks=[UnlearnCallback("ft"), ReceiptCallback(),
                   ModelCheckpoint(dirpath=tmp_path / "ck", save_last=True)],
    )
    with pytest.raises(ValueError, match="could overwrite it"):
        trainer_b.fit(model, datamodule=dm, ckpt_path=str(last))
    assert sha256_file(last) == digest


def test_atomic_outputs_get_ordinary_permissions(tmp_path):
    import os
    import stat

    from lightly_unlearn.io import atomic_write

    path = atomic_write(tmp_path / "report.md", "hello")
    mode = stat.S_IMODE(os.stat(path).st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask and path.read_text() == "hello"
