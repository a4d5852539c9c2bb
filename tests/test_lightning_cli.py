"""LightningCLI in both namespaces, weights-only starts, and namespace-mismatch errors."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import lightning.pytorch as L
import pytest
import pytorch_lightning as pl
import torch
from conftest import digits_dataset, make_simclr, tiny_transform, trainer_kwargs

from lightly_unlearn import ForgetRetainDataModule, ReceiptCallback, UnlearnCallback
from lightly_unlearn.io import sha256_file
from lightly_unlearn.model_loading import ModelSpecError
from lightly_unlearn.namespaces import NamespaceMismatchError

RECIPE = Path(__file__).resolve().parents[1] / "examples" / "lightning_cli"
CALLBACKS = ("UnlearnCallback", "AuditCallback", "ReceiptCallback", "HoldoutAlignmentStopping")


@pytest.mark.parametrize("namespace", [pl, L], ids=["pytorch_lightning", "lightning.pytorch"])
def test_callbacks_are_callbacks_of_both_namespaces(namespace):
    import lightly_unlearn

    for name in CALLBACKS:
        assert issubclass(getattr(lightly_unlearn, name), namespace.Callback), name
    assert issubclass(ForgetRetainDataModule, namespace.LightningDataModule)


@pytest.fixture
def recipe(tmp_path, monkeypatch):
    """The README's LightningCLI recipe copied to tmp_path, with tiny inputs."""
    pytest.importorskip("jsonargparse")
    folder = tmp_path / "recipe"
    shutil.copytree(RECIPE, folder, ignore=shutil.ignore_patterns("cli_data", "cli_out", "__pycache__"))
    monkeypatch.chdir(folder)
    monkeypatch.syspath_prepend(str(folder))
    for name in ("model", "prepare", "main"):
        sys.modules.pop(name, None)
    import prepare

    torch.manual_seed(0)
    prepare.prepare("cli_data", images=64, holdout=32, pretrain_epochs=0)
    yield folder
    for name in ("model", "prepare", "main"):
        sys.modules.pop(name, None)


TINY = ["--trainer.max_epochs=1", "--trainer.enable_progress_bar=false",
        "--data.init_args.batch_size=16", "--data.init_args.image_size=8"]


@pytest.mark.slow
def test_readme_recipe_with_pytorch_lightning_cli(recipe):
    """`python main.py fit --config config.yaml` (pytorch_lightning.cli, lightly's module)."""
    import main
    import model

    pretrained = Path("cli_data/pretrained.ckpt")
    digest = sha256_file(pretrained)
    cli = main.cli_main(["fit", "--config", "config.yaml", *TINY])
    assert isinstance(cli.trainer, pl.Trainer) and cli.trainer.current_epoch == 1
    unlearn = next(cb for cb in cli.trainer.callbacks if isinstance(cb, UnlearnCallback))
    assert unlearn.method.name == "ac" and unlearn.init_checkpoint == "cli_data/pretrained.ckpt"
    assert unlearn.hyperparameters["alpha"] == 1.0 and unlearn.hyperparameters["beta"] == 1.0  # not the default
    receipt_cb = next(cb for cb in cli.trainer.callbacks if isinstance(cb, ReceiptCallback))
    from lightly_unlearn.receipt import read_receipt, verify_receipt

    receipt = read_receipt(receipt_cb.written)
    output = Path(receipt["output_checkpoint"]["path"])
    assert verify_receipt(receipt, output)[0]
    assert receipt["input_checkpoint"]["sha256"] == digest == sha256_file(pretrained)
    assert Path("cli_out/audits/report.md").is_file()
    loaded = model.SimCLR.load_from_checkpoint(output, weights_only=True)  # the user's class
    assert isinstance(loaded, model.SimCLR)


@pytest.mark.slow
def test_lightning_pytorch_cli_with_callbacks_from_the_command_line(recipe):
    """lightning.pytorch.cli.LightningCLI, `--trainer.callbacks+=lightly_unlearn.UnlearnCallback`."""
    from lightning.pytorch.cli import LightningCLI

    from lightly_unlearn.image_folder import ImageFolderDataModule

    LModule = make_simclr("L")
    torch.save({"state_dict": LModule().state_dict()}, "cli_data/l_pretrained.ckpt")
    cli = LightningCLI(
        LModule, ImageFolderDataModule, run=True,
        args=["fit", "--data.data=cli_data/images", "--data.forget=cli_data/forget.txt",
              "--data.image_size=8", "--data.batch_size=16", "--trainer.max_epochs=1",
              "--trainer.accelerator=cpu", "--trainer.logger=false",
              "--trainer.enable_checkpointing=false", "--trainer.enable_progress_bar=false",
              "--trainer.default_root_dir=cli_out",
              "--trainer.callbacks+=lightly_unlearn.UnlearnCallback",
              "--trainer.callbacks.method=finetune",
              "--trainer.callbacks.init_checkpoint=cli_data/l_pretrained.ckpt"],
    )
    assert isinstance(cli.trainer, L.Trainer) and cli.trainer.current_epoch == 1
    assert any(isinstance(cb, UnlearnCallback) and cb.method.name == "finetune"
               for cb in cli.trainer.callbacks)


class _FirstWeights(L.Callback):
    def on_train_start(self, trainer, pl_module):
        self.weights = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}


def test_init_checkpoint_loads_weights_only(tmp_path):
    """Weights come from the checkpoint before training; the loop (epochs) starts fresh."""
    Model = make_simclr("L")
    torch.manual_seed(1)
    source = Model()
    ckpt = tmp_path / "pretrained.ckpt"
    torch.save({"state_dict": source.state_dict(), "hyper_parameters": {}, "epoch": 99}, ckpt)
    torch.manual_seed(2)
    model, seen = Model(), _FirstWeights()
    dm = ForgetRetainDataModule(digits_dataset(64), list(range(8)), tiny_transform(), batch_size=16)
    receipt = ReceiptCallback(path=tmp_path / "out" / "receipt.json")
    trainer = L.Trainer(**trainer_kwargs(tmp_path, callbacks=[
        UnlearnCallback(method="finetune", init_checkpoint=str(ckpt)), seen, receipt]))
    trainer.fit(model, datamodule=dm)
    for key, value in source.state_dict().items():
        assert torch.equal(seen.weights[key], value), key
    assert trainer.current_epoch == 1
    assert receipt.input_record["sha256"] == sha256_file(ckpt)  # the receipt names the input


def test_init_checkpoint_of_another_class_fails_in_one_line(tmp_path):
    ckpt = tmp_path / "other.ckpt"
    torch.save({"state_dict": {"encoder.weight": torch.zeros(2, 2)}}, ckpt)
    dm = ForgetRetainDataModule(digits_dataset(64), list(range(8)), tiny_transform(), batch_size=16)
    trainer = L.Trainer(**trainer_kwargs(tmp_path, callbacks=[
        UnlearnCallback(method="finetune", init_checkpoint=str(ckpt))]))
    with pytest.raises(ModelSpecError) as info:
        trainer.fit(make_simclr("L")(), datamodule=dm)
    message = str(info.value)
    assert "\n" not in message
    assert "missing keys (backbone.1.weight, backbone.1.bias, projection_head" in message
    assert "1 unexpected keys (encoder.weight)" in message
    assert "the class that wrote this checkpoint?" in message


def test_namespace_mismatch_names_both_namespaces(tmp_path):
    dm = ForgetRetainDataModule(digits_dataset(64), list(range(8)), tiny_transform(), batch_size=16)
    with pytest.raises(NamespaceMismatchError) as info:  # lightly's pl module, lightning Trainer
        L.Trainer(**trainer_kwargs(tmp_path)).fit(make_simclr("pl")(), datamodule=dm)
    assert "pytorch_lightning" in str(info.value) and "lightning.pytorch" in str(info.value)
    assert "pl.Trainer" in str(info.value)
    with pytest.raises(NamespaceMismatchError, match="lightly_unlearn.PLCLIPModule"):
        from lightly_unlearn import CLIPModule

        pl.Trainer(**trainer_kwargs(tmp_path)).fit(CLIPModule.__new__(CLIPModule), datamodule=dm)
    with pytest.raises(NamespaceMismatchError, match="lightly_unlearn.CLIPModule"):
        from lightly_unlearn import PLCLIPModule

        L.Trainer(**trainer_kwargs(tmp_path)).fit(PLCLIPModule.__new__(PLCLIPModule), datamodule=dm)
    with pytest.raises(TypeError, match="must be a `LightningModule`"):  # others: Lightning's own
        pl.Trainer(**trainer_kwargs(tmp_path)).fit(torch.nn.Linear(2, 2), datamodule=dm)
