"""Bad-input matrix: every case fails before any training, with a message that names the problem
and says what to fix, and writes nothing (no new file anywhere under the case's folder, inputs
included; the model's weights are unchanged; the SHA-256 of the input checkpoints is unchanged).

One exception, stated: for a checkpoint of a *different* forget set, Lightning loads the
checkpoint's weights into the module before any callback or datamodule can read the checkpoint's
state, so there the module holds the checkpoint's weights (no optimizer step was taken, nothing
was written, the checkpoint file is unchanged).
"""

from __future__ import annotations

import re
from pathlib import Path

import lightning.pytorch as L
import pytest
import torch
from conftest import digits_dataset, make_simclr, tiny_transform, trainer_kwargs
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch import nn

from lightly_unlearn import AuditCallback, ForgetRetainDataModule, UnlearnCallback
from lightly_unlearn.callbacks.receipt import ReceiptCallback
from lightly_unlearn.cli import main as cli_main
from lightly_unlearn.io import load_checkpoint, sha256_file

N = 24


def _fit(tmp, model, *, forget=(0, 5, 9, 14), method="ac", transform=None, hp=None, audits=None,
         holdout=True, ckpt_path=None, batch_size=8, dataset=None, receipt=None, ckpt_dir=None):
    audits = audits or ("emia", "alignment_matrix")
    dm = ForgetRetainDataModule(
        digits_dataset(N) if dataset is None else dataset,
        list(forget) if not isinstance(forget, set) else forget,
        transform or tiny_transform(),
        batch_size=batch_size,
        holdout=digits_dataset(8, offset=300) if holdout else None,
    )
    callbacks = [
        UnlearnCallback(method, **(hp or {})),
        receipt if receipt is not None else ReceiptCallback(),
        AuditCallback(audits=audits, num_views=2, batch_size=8),
        ModelCheckpoint(dirpath=ckpt_dir or tmp / "run" / "ckpt", save_last=True),
    ]
    kw = trainer_kwargs(tmp / "run", enable_checkpointing=True, logger=CSVLogger(tmp / "run"))
    L.Trainer(**kw, callbacks=callbacks).fit(model, datamodule=dm, ckpt_path=ckpt_path)


class NoCriterion(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 8))

    def training_step(self, batch, batch_idx):
        return self.backbone(batch[0][0]).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _one_view(image):
    from torchvision.transforms.functional import to_tensor

    return to_tensor(image)


@pytest.fixture(scope="module")
def other_forget_ckpt(tmp_path_factory):
    """A checkpoint of an AC run that forgot a different set."""
    tmp = tmp_path_factory.mktemp("other")
    torch.manual_seed(1)
    _fit(tmp, make_simclr("L")(), forget=(1, 2, 3, 4))
    return tmp / "run" / "ckpt" / "last.ckpt"


INPUT = "inputs/pretrained.ckpt"  # every case gets one; its SHA-256 must not change


def _images(tmp, n=3):
    data = tmp / "inputs" / "images"
    data.mkdir(exist_ok=True)
    for i, (image, _) in enumerate(digits_dataset(n)):
        image.save(data / f"{i}.png")
    return data


def _bomb(tmp):
    """A 177-byte PNG whose header claims 13 500 x 13 500 pixels (a decompression bomb)."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 13_500, 13_500, 1, 0, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    (_images(tmp) / "bomb.png").write_bytes(png)


def _audit_cli(tmp, *extra, out="run/audit_out"):
    code = cli_main(
        ["audit", "--before", "torch.nn:Flatten", "--after", "torch.nn:Flatten",
         "--data", str(tmp / "inputs" / "images"), "--out", str(tmp / out), "--no-progress", *extra]
    )
    raise SystemExit(code)


def _legacy_ckpt(tmp):
    import numpy as np

    torch.save({"state_dict": {}, "extra": np.arange(3)}, tmp / "inputs" / "legacy.ckpt")


def _receipt(tmp, **kw):
    return ReceiptCallback(**{k: tmp / v if isinstance(v, str) else v for k, v in kw.items()})


def _world_readable_key(tmp):
    from lightly_unlearn.receipt import generate_signing_key

    key, _ = generate_signing_key(tmp / "inputs" / "keys")
    key.chmod(0o644)


class LyingLength(torch.utils.data.Dataset):
    def __init__(self):
        self.items = digits_dataset(N)

    def __len__(self):
        return len(self.items) + 5  # says 29, serves 24

    def __getitem__(self, i):
        return self.items[i]


class Stream(torch.utils.data.IterableDataset):
    def __len__(self):
        return N

    def __iter__(self):
        return iter(digits_dataset(N))


def _frozen(tmp, model):
    model.requires_grad_(False)
    _fit(tmp, model)


def _meta(tmp, model):
    with torch.device("meta"):
        empty = make_simclr("L")()
    _fit(tmp, empty)


def _dicts():
    return [{"image": image, "label": label} for image, label in digits_dataset(N)]


# name: (prepare inputs (before the snapshot) or None, action(tmp, model), message regex)
CASES = {
    # forget ids
    "ids_out_of_range": (None, lambda t, m: _fit(t, m, forget=(0, N)), "out of range.*valid: 0..23"),
    "ids_negative": (None, lambda t, m: _fit(t, m, forget=(-1, 3)), "negative.*count from 0"),
    "ids_float": (None, lambda t, m: _fit(t, m, forget=(0.5, 3)), "must contain integers.*int"),
    "ids_duplicated": (None, lambda t, m: _fit(t, m, forget=(1, 1, 4)), "positions more than once: \\[1\\]"),
    "ids_as_set": (None, lambda t, m: _fit(t, m, forget={1, 4}), "sorted list"),
    "forget_empty": (None, lambda t, m: _fit(t, m, forget=(), method="ga"), "forget set is empty"),
    "forget_everything": (None, lambda t, m: _fit(t, m, forget=range(N)), "whole dataset.*keep some retain"),
    # checkpoints
    "checkpoint_of_other_forget_set": (None, None, "different forget set.*same forget_indices"),
    "untrusted_legacy_checkpoint": (
        _legacy_ckpt, lambda t, m: load_checkpoint(t / "inputs" / "legacy.ckpt"), "trusted=True"),
    "resume_last_without_input_checkpoint": (None, None, "could overwrite it.*input_checkpoint="),
    # outputs that would overwrite or sit in inputs
    "receipt_path_is_the_input_checkpoint": (
        None, lambda t, m: _fit(t, m, receipt=_receipt(t, input_checkpoint=INPUT, path=INPUT)),
        "pretrained.ckpt is the input .*pretrained.ckpt.*destroy the input"),
    "receipt_path_links_to_the_input": (
        lambda t: (t / "inputs" / "r.json").symlink_to(t / INPUT),
        lambda t, m: _fit(t, m, receipt=_receipt(t, input_checkpoint=INPUT, path="inputs/r.json")),
        "r.json is the input .*through a symlink"),
    "receipt_path_is_a_folder": (
        None, lambda t, m: _fit(t, m, receipt=_receipt(t, path="inputs")), "existing folder.*Give a file path"),
    "receipt_path_is_another_file": (
        lambda t: (t / "inputs" / "notes.txt").write_text("mine"),
        lambda t, m: _fit(t, m, receipt=_receipt(t, path="inputs/notes.txt")),
        "notes.txt already exists and is not a previous output"),
    "audit_cli_out_inside_data": (
        _images, lambda t, m: _audit_cli(t, out="inputs/images/out"), "inside the input folder .*images"),
    "demo_out_is_a_file": (
        lambda t: (t / "inputs" / "out").write_text("x"),
        lambda t, m: (_ for _ in ()).throw(SystemExit(cli_main(["demo", "--out", str(t / "inputs" / "out")]))),
        "--out .*out exists and is not a folder"),
    # signing keys
    "signing_key_missing": (
        None, lambda t, m: _receipt(t, signing_key="inputs/none.key"), "no such file.*keygen"),
    "signing_key_readable_by_others": (
        _world_readable_key, lambda t, m: _receipt(t, signing_key="inputs/keys/receipt_signing.key"),
        "readable by other users.*chmod 600"),
    # hyper-parameters, checked when the callback is built
    "hp_alpha_nan": (None, lambda t, m: _fit(t, m, hp={"alpha": float("nan")}), "alpha must be a finite number"),
    "hp_beta_inf": (None, lambda t, m: _fit(t, m, hp={"beta": float("inf")}), "beta must be a finite number"),
    "hp_alpha_none": (None, lambda t, m: _fit(t, m, hp={"alpha": None}), "alpha must be a finite number.*None"),
    "hp_lam_string": (
        None, lambda t, m: _fit(t, m, method="neggrad", hp={"lam": "1.0"}), "lam must be .*not a string"),
    "audits_as_a_string": (None, lambda t, m: _fit(t, m, audits="emia"), "got the string 'emia'.*\\('emia',\\)"),
    # data and module that used to fail deep inside torch
    "dataset_items_are_dicts": (None, lambda t, m: _fit(t, m, dataset=_dicts()), "items are dicts.*'image'"),
    "iterable_dataset": (None, lambda t, m: _fit(t, m, dataset=Stream()), "IterableDataset.*map-style"),
    "dataset_len_lies": (None, lambda t, m: _fit(t, m, dataset=LyingLength()), "is 29.*over-counts"),
    "model_fully_frozen": (None, _frozen, "no trainable parameter.*requires_grad"),
    "model_on_meta_device": (None, _meta, "'meta' device.*load_state_dict"),
    # module, transform, components
    "module_without_criterion": (
        None, lambda t, m: _fit(t, NoCriterion()), "no attribute 'criterion'.*self.criterion = NTXentLoss"),
    "transform_with_one_view": (
        None, lambda t, m: _fit(t, m, transform=_one_view), "at least two views.*SimCLRTransform"),
    "unknown_method": (None, lambda t, m: _fit(t, m, method="forgetall"), "Unknown method 'forgetall'. Available"),
    "unknown_hyperparameter": (
        None, lambda t, m: _fit(t, m, hp={"lamda": 1.0}), "unknown hyper-parameter.* alpha="),
    "unknown_audit": (None, lambda t, m: _fit(t, m, audits=("emai",)), "Unknown audit 'emai'. Available"),
    "audit_needs_holdout": (None, lambda t, m: _fit(t, m, holdout=False), "Pass `holdout=`"),
    # audit CLI
    "audit_cli_unreadable_image": (
        lambda t: (_images(t) / "broken.png").write_bytes(b"not a png"), lambda t, m: _audit_cli(t),
        "cannot read image .*broken.png"),
    "audit_cli_decompression_bomb": (
        _bomb, lambda t, m: _audit_cli(t), "bomb.png .*decompression-bomb limit.*MAX_IMAGE_PIXELS"),
    "audit_cli_batch_size_zero": (
        _images, lambda t, m: _audit_cli(t, "--batch-size", "0"), "--batch-size must be at least 1; got 0"),
}
#: cases in which Lightning restores the checkpoint's weights before our checks can run
LOADS_CHECKPOINT = {"checkpoint_of_other_forget_set", "resume_last_without_input_checkpoint"}


def _files(root: Path) -> dict[str, str]:
    """Every file (inputs included) with its SHA-256; folders are not counted (Lightning's logger
    makes its empty version folder before any hook)."""
    return {str(p.relative_to(root)): sha256_file(p) for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_fails_early_and_writes_nothing(tmp_path, case, other_forget_ckpt, capsys):
    prepare, action, message = CASES[case]
    (tmp_path / "inputs").mkdir()
    torch.manual_seed(0)
    model = make_simclr("L")()
    torch.save({"state_dict": model.state_dict()}, tmp_path / INPUT)
    if prepare is not None:
        prepare(tmp_path)
    ckpt_digest = sha256_file(other_forget_ckpt)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    if case == "checkpoint_of_other_forget_set":
        action = lambda t, m: _fit(t, m, ckpt_path=str(other_forget_ckpt))  # noqa: E731
    elif case == "resume_last_without_input_checkpoint":  # resuming per the README, receipt default
        action = lambda t, m: _fit(  # noqa: E731
            t, m, forget=(1, 2, 3, 4), ckpt_path=str(other_forget_ckpt), ckpt_dir=other_forget_ckpt.parent)
    if case in LOADS_CHECKPOINT:
        weights = load_checkpoint(other_forget_ckpt)["state_dict"]
    before = _files(tmp_path)

    with pytest.raises((Exception, SystemExit)) as err:
        action(tmp_path, model)

    text = str(err.value) + capsys.readouterr().err
    if isinstance(err.value, SystemExit):
        assert err.value.code == 2, text  # the CLI's "bad input" status
        assert "Traceback" not in text
    assert re.search(message, text, flags=re.S), text
    after = _files(tmp_path)
    assert after == before, f"{case} wrote or changed {sorted(set(after.items()) ^ set(before.items()))}"
    for name, value in model.state_dict().items():
        assert torch.equal(value, weights[name]), name
    assert sha256_file(other_forget_ckpt) == ckpt_digest
