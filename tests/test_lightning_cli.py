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
from lightly_unlearn.errors import ModelSpecError, NamespaceMismatchError
from lightly_unlearn.io import sha256_file

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


# -- LightningCLI of one namespace, classes of the other ------------------------------------------

_OTHER_NAMESPACE = '''
import lightning.pytorch as L
import pytorch_lightning as pl


class PLModel(pl.LightningModule):  # lightly's style
    pass


class LModel(L.LightningModule):
    pass


class PLCallback(pl.Callback):
    pass
'''


@pytest.fixture
def classes_module(tmp_path, monkeypatch):
    """An importable module ``ns_classes`` with a module / callback of each namespace."""
    pytest.importorskip("jsonargparse")
    (tmp_path / "ns_classes.py").write_text(_OTHER_NAMESPACE)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("ns_classes", None)
    import ns_classes

    yield ns_classes
    sys.modules.pop("ns_classes", None)


def test_lightning_cli_model_class_of_the_other_namespace(classes_module):
    """`LightningCLI(model_class=...)`: raised before parsing, naming both namespaces and the fix."""
    from lightning.pytorch.cli import LightningCLI as LCLI
    from pytorch_lightning.cli import LightningCLI as PLCLI

    from lightly_unlearn import CLIPModule, PLCLIPModule
    from lightly_unlearn.image_folder import ImageFolderDataModule

    with pytest.raises(NamespaceMismatchError) as info:  # lightly's pl module, lightning's CLI
        LCLI(classes_module.PLModel, ImageFolderDataModule, run=False, args=[])
    message = str(info.value)
    assert "PLModel is a pytorch_lightning.LightningModule" in message
    assert "this LightningCLI is from lightning.pytorch" in message
    assert "pytorch_lightning.cli.LightningCLI" in message
    with pytest.raises(NamespaceMismatchError, match=r"use lightly_unlearn\.PLCLIPModule"):
        PLCLI(CLIPModule, ImageFolderDataModule, run=False, args=[])
    with pytest.raises(NamespaceMismatchError, match=r"use lightly_unlearn\.CLIPModule .*lightning\.pytorch"):
        LCLI(PLCLIPModule, run=False, args=[])
    with pytest.raises(NamespaceMismatchError, match="Trainer is a pytorch_lightning.Trainer"):
        LCLI(classes_module.LModel, trainer_class=pl.Trainer, run=False, args=[])


def _cli_error(cli_class, args, capsys) -> str:
    with pytest.raises(SystemExit) as info:
        cli_class(args=args)
    assert info.value.code == 2
    return capsys.readouterr().err


def test_lightning_cli_class_path_of_the_other_namespace(classes_module, tmp_path, capsys):
    """A `class_path` on the command line or in a config file: the CLI's error starts with the hint."""
    from lightning.pytorch.cli import LightningCLI as LCLI
    from pytorch_lightning.cli import LightningCLI as PLCLI

    err = _cli_error(LCLI, ["fit", "--model=ns_classes.PLModel"], capsys)
    assert ("error: PLModel is a pytorch_lightning.LightningModule, but this LightningCLI is from "
            "lightning.pytorch") in err
    assert "pytorch_lightning.cli.LightningCLI" in err
    assert "Given value: ns_classes.PLModel" in err  # jsonargparse's own message follows
    err = _cli_error(PLCLI, ["fit", "--model=lightly_unlearn.CLIPModule"], capsys)
    assert "error: CLIPModule is a lightning.pytorch.LightningModule" in err
    assert "use lightly_unlearn.PLCLIPModule" in err
    config = tmp_path / "config.yaml"
    config.write_text("model:\n  class_path: ns_classes.LModel\n"
                      "trainer:\n  callbacks:\n    - class_path: ns_classes.PLCallback\n")
    err = _cli_error(LCLI, ["fit", "--config", str(config)], capsys)
    assert "error: PLCallback is a pytorch_lightning.Callback, but this LightningCLI is from lightning.pytorch" in err
    err = _cli_error(PLCLI, ["fit", "--model=ns_classes.PLModel", "--config", str(config)], capsys)
    assert "LModel is a lightning.pytorch.LightningModule, but this LightningCLI is from pytorch_lightning" in err
    err = _cli_error(LCLI, ["fit", "--model=ns_classes.NoSuchModel"], capsys)  # others: as before
    assert "is a pytorch_lightning" not in err and "ns_classes.NoSuchModel" in err


@pytest.mark.parametrize("name", ["lightning.pytorch.cli", "pytorch_lightning.cli"])
def test_cli_hint_is_installed_when_the_cli_module_is_imported(name, monkeypatch):
    """The hint comes from an import hook: `<ns>.cli` imported after lightly_unlearn is wrapped."""
    import ast
    import importlib

    import lightly_unlearn.namespaces as namespaces

    pytest.importorskip("jsonargparse")
    nodes = list(ast.walk(ast.parse(Path(namespaces.__file__).read_text())))
    imported = {alias.name for node in nodes if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in nodes if isinstance(node, ast.ImportFrom)}
    assert not {m for m in imported if m.startswith("jsonargparse") or m.endswith(".cli")}
    package = importlib.import_module(name.rsplit(".", 1)[0])
    original = importlib.import_module(name)
    monkeypatch.setattr(package, "cli", original)  # both restored after the test
    monkeypatch.delitem(sys.modules, name)
    fresh = importlib.import_module(name)  # a new module object, as on a first import
    assert fresh is not original
    assert fresh.LightningArgumentParser.__dict__.get("_lightly_unlearn_hint") is True
    assert "__wrapped__" in vars(fresh.LightningArgumentParser.__dict__["error"])
    other = pl.Trainer if name.startswith("lightning") else L.Trainer
    with pytest.raises(NamespaceMismatchError, match="this LightningCLI is from"):
        fresh.LightningArgumentParser().add_lightning_class_args(other, "trainer")
