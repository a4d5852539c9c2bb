"""Bad-input matrix: every case fails before any training, with a message that names the problem
and says what to fix, and writes nothing (no new file anywhere under the case's folder, inputs
included; the model's weights are unchanged; the SHA-256 of the input checkpoints is unchanged).

One exception, stated: for a checkpoint of a *different* forget set, Lightning loads the
checkpoint's weights into the module before any callback or datamodule can read the checkpoint's
state, so there the module holds the checkpoint's weights (no optimizer step was taken, nothing
was written, the checkpoint file is unchanged).
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import textwrap
from pathlib import Path

import lightning.pytorch as L
import pytest
import torch
from conftest import (
    digits_dataset,
    fake_distribution,
    make_simclr,
    tiny_transform,
    trainer_kwargs,
    write_cli_project,
)
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


def _bomb_bytes():
    """A 177-byte PNG whose header claims 13 500 x 13 500 pixels (a decompression bomb)."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 13_500, 13_500, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def _bomb(tmp):
    (_images(tmp) / "bomb.png").write_bytes(_bomb_bytes())


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
# -- the command line: every case below is refused at the door (exit 2) -------------------------
CLI = "cli"  # each case gets a copy of a small CLI project here (see write_cli_project)


def _c(t, *parts):
    return t / CLI / Path(*parts) if parts else t / CLI


def _unlearn(t, *extra, model=None, **options):
    """``lightly-unlearn unlearn`` on the case's project; ``options`` replace (``None``: drop)
    the defaults, ``extra`` is appended."""
    c = _c(t)
    argv = {
        "--model": model or f"{c / 'code' / 'tiny_model.py'}:TinySimCLR@{c / 'pretrained' / 'pretrained.ckpt'}",
        "--data": str(c / "images"), "--forget": str(c / "forget.txt"), "--out": str(t / "run" / "out"),
        "--holdout": str(c / "holdout"), "--epochs": "1", "--batch-size": "4", "--transform": "simclr",
        "--image-size": "8", "--accelerator": "cpu", "--devices": "1",
    }
    argv.update({k.replace("_", "-") if k.startswith("--") else f"--{k.replace('_', '-')}": v
                 for k, v in options.items()})
    flat = ["unlearn", "--no-progress"]
    for key, value in argv.items():
        if value is not None:
            flat += [key, value]
    raise SystemExit(cli_main([*flat, *extra]))


def _audit(t, *extra, **options):
    c = _c(t)
    argv = {"--before": "torch.nn:Flatten", "--after": "torch.nn:Flatten", "--data": str(c / "images"),
            "--out": str(t / "run" / "audit_out"), "--num-views": "2"}
    argv.update({f"--{k.replace('_', '-')}": v for k, v in options.items()})
    flat = ["audit", "--no-progress"]
    for key, value in argv.items():
        if value is not None:
            flat += [key, value]
    raise SystemExit(cli_main([*flat, *extra]))


def _model_file(t, body, name="user_model.py"):
    """A model file beside tiny_model.py, importing its classes; returns its --model prefix."""
    path = _c(t, "code", name)
    path.write_text("from tiny_model import TinySimCLR, TinyBNSimCLR  # noqa\n" + textwrap.dedent(body))
    return str(path)


def _with_ckpt(file_and_class, ckpt="pretrained/pretrained.ckpt"):
    return lambda t: f"{file_and_class}@{_c(t, ckpt)}"


def _model_case(body, cls="TinySimCLR", **options):
    """(prepare, action) of a case whose --model is a file with ``body``."""
    return (lambda t: _model_file(t, body),
            lambda t, m: _unlearn(t, model=f"{_c(t, 'code', 'user_model.py')}:{cls}@"
                                           f"{_c(t, 'pretrained', 'pretrained.ckpt')}", **options))


def _ckpt(t, payload, name="bad.ckpt"):
    torch.save(payload, _c(t, "pretrained", name))


def _weights(t, name="pretrained.ckpt"):
    return torch.load(_c(t, "pretrained", name), weights_only=True)


def _with_value(t, key, value, name="pretrained.ckpt"):
    state = _weights(t, name)
    state["state_dict"][key] = torch.full_like(state["state_dict"][key], value)
    _ckpt(t, state)


def _unlearn_ckpt(t, *extra, name="bad.ckpt", cls="TinySimCLR"):
    _unlearn(t, *extra, model=f"{_c(t, 'code', 'tiny_model.py')}:{cls}@{_c(t, 'pretrained', name)}")


class _PlantedPickle:
    """Unpickling this creates a file: proof that a loader ran code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path(self.marker).write_text, ("code ran",))


def _planted(t, path):
    """A checkpoint-format file that creates ``t/PWNED`` when loaded with weights_only=False."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": _PlantedPickle(t / "PWNED")}, path)


def _keys(t, kind):
    """A signing key file of ``kind`` under cli/keys/; returns nothing (the path is fixed)."""
    from cryptography.hazmat.primitives import serialization as S
    from cryptography.hazmat.primitives.asymmetric import ed448, ed25519, rsa

    from lightly_unlearn.receipt import generate_signing_key

    folder = _c(t, "keys")
    key, pub = generate_signing_key(folder)
    pem = {"key": None, "0644": None, "pub": None, "folder": None,
           "rsa": lambda: rsa.generate_private_key(65537, 1024).private_bytes(
               S.Encoding.PEM, S.PrivateFormat.PKCS8, S.NoEncryption()),
           "ed448": lambda: ed448.Ed448PrivateKey.generate().private_bytes(
               S.Encoding.PEM, S.PrivateFormat.PKCS8, S.NoEncryption()),
           "encrypted": lambda: ed25519.Ed25519PrivateKey.generate().private_bytes(
               S.Encoding.PEM, S.PrivateFormat.PKCS8, S.BestAvailableEncryption(b"secret")),
           "openssh": lambda: ed25519.Ed25519PrivateKey.generate().private_bytes(
               S.Encoding.PEM, S.PrivateFormat.OpenSSH, S.NoEncryption()),
           "garbage": lambda: b"not a key at all\n"}[kind]
    target = folder / "test.key"
    if pem is not None:
        target.write_bytes(pem())
        target.chmod(0o600)
    elif kind == "0644":
        key.chmod(0o644)
    elif kind == "folder":
        target.mkdir()


_KEY_FILES = {"0644": "receipt_signing.key", "pub": "receipt_signing.pub"}


def _key_case(kind, message):
    name = _KEY_FILES.get(kind, "test.key")
    return (lambda t: _keys(t, kind),
            lambda t, m: _unlearn(t, "--signing-key", str(_c(t, "keys", name))), message)


def _image(t, folder, name, data: bytes):
    (_c(t, folder) / name).parent.mkdir(parents=True, exist_ok=True)
    (_c(t, folder) / name).write_bytes(data)


def _encoded(kind):
    import io
    import struct
    import zlib

    import numpy as np
    from PIL import Image

    pixels = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    buffer = io.BytesIO()
    pixels.save(buffer, {"jpg": "JPEG", "bmp": "BMP", "png": "PNG"}[kind])
    data = bytearray(buffer.getvalue())
    if kind != "png":
        return bytes(data[: len(data) // 2])  # truncated: verify() accepts it, decoding fails
    at = data.index(b"IDAT")  # scramble the compressed pixels, keep the chunk's CRC valid
    length = struct.unpack(">I", data[at - 4: at])[0]
    body = bytearray(data[at + 4: at + 4 + length])
    for i in range(10, 40):
        body[i] ^= 0xFF
    data[at + 4: at + 4 + length] = body
    data[at + 4 + length: at + 8 + length] = struct.pack(">I", zlib.crc32(b"IDAT" + bytes(body)))
    return bytes(data)


def _forget(t, data: bytes):
    _c(t, "forget.txt").write_bytes(data)


def _plugin(t, entries: str, module: str = "", name="evil-plugin"):
    """A distribution in cli/plugins (put on sys.path by the action) declaring ``entries``."""
    fake_distribution(_c(t, "plugins"), name, entries, {f"{name.replace('-', '_')}_mod.py": module} if module else None)


def _on_path(action):
    def run(t, m):
        sys.path.insert(0, str(_c(t, "plugins")))
        action(t, m)
    return run


def _holding_out(t, m):
    from lightly_unlearn.output_folder import OutputFolder

    with OutputFolder(t / "run" / "out") as other:
        other.claim()
        _unlearn(t)


def _limit_file_size(t, m):
    import resource

    real = resource.getrlimit

    def small(which):
        return (100, 100) if which == resource.RLIMIT_FSIZE else real(which)

    resource.getrlimit = small
    try:
        _unlearn(t)
    finally:
        resource.getrlimit = real


def _demo_experiment(t):
    from lightly_unlearn.demo.experiment import Experiment, Setting

    return Experiment(Setting(n_train=20, n_holdout=10, pretrain_epochs=1), progress=lambda _: None,
                      cache_dir=t / "inputs" / "cache")


BENCH_CACHE = "inputs/bench_cache/clip_seed0_0123456789ab_pretrained.pt"


def _pkg(t):
    pkg = _c(t, "code", "user_pkg")
    pkg.mkdir()
    (pkg / "__init__.py").write_text("import torch\ntorch.manual_seed(0)\n")
    (pkg / "model.py").write_text("from tiny_model import TinySimCLR  # noqa\n")


def _pkg_action(t, m):
    sys.path.insert(0, str(_c(t, "code")))
    _unlearn(t, model=f"user_pkg.model:TinySimCLR@{_c(t, 'pretrained', 'pretrained.ckpt')}")


TOP_LEVEL_TRAINING = '''
import pytorch_lightning as pl
model = TinySimCLR()
trainer = pl.Trainer(max_epochs=1)
trainer.fit(model)
'''

CLI_CASES = {
    # --model: what importing the file may run (item 2)
    "cli_model_file_trains_at_top_level": (
        *_model_case(TOP_LEVEL_TRAINING), "user_model.py line 6: `trainer.fit\\(model\\)`.*if __name__"),
    "cli_model_file_exits_at_top_level": (
        *_model_case("import sys\nsys.exit(0)\n"), "user_model.py line 3: `sys.exit\\(0\\)`"),
    "cli_model_file_exits_when_allowed": (
        lambda t: _model_file(t, "import sys\nsys.exit(0)\n"),
        lambda t, m: _unlearn(t, "--allow-module-code", model=f"{_c(t, 'code', 'user_model.py')}:TinySimCLR@"
                                                              f"{_c(t, 'pretrained', 'pretrained.ckpt')}"),
        "importing .*user_model.py.* called sys.exit\\(0\\)"),
    "cli_model_file_exits_nonzero_when_allowed": (
        lambda t: _model_file(t, "raise SystemExit(3)\n"),
        lambda t, m: _unlearn(t, "--allow-module-code", model=f"{_c(t, 'code', 'user_model.py')}:TinySimCLR@"
                                                              f"{_c(t, 'pretrained', 'pretrained.ckpt')}"),
        "called sys.exit\\(3\\)"),
    "cli_model_file_raises_when_allowed": (
        lambda t: _model_file(t, "raise RuntimeError('CUDA missing')\n"),
        lambda t, m: _unlearn(t, "--allow-module-code", model=f"{_c(t, 'code', 'user_model.py')}:TinySimCLR@"
                                                              f"{_c(t, 'pretrained', 'pretrained.ckpt')}"),
        "cannot import .*RuntimeError: CUDA missing"),
    "cli_model_file_syntax_error": (*_model_case("def broken(:\n"), "user_model.py line 2: cannot parse it"),
    "cli_model_file_loops": (*_model_case("for i in range(3):\n    pass\n"), "line 2.*`for` statement"),
    "cli_model_file_with_block": (*_model_case("with open(__file__) as f:\n    pass\n"), "`with` statement"),
    "cli_model_result_of_fit_assigned": (
        *_model_case("import pytorch_lightning as pl\ntrainer = pl.Trainer()\nout = trainer.fit(None)\n"),
        "calls a method of `trainer`"),
    "cli_model_package_init_runs_code": (_pkg, _pkg_action, "user_pkg/__init__.py line 2: `torch.manual_seed"),
    "cli_model_file_missing": (
        None, lambda t, m: _unlearn(t, model=f"{t / 'nope.py'}:TinySimCLR@{_c(t, 'pretrained', 'pretrained.ckpt')}"),
        "no such Python file .*nope.py"),
    "cli_model_class_missing": (
        None, lambda t, m: _unlearn(t, model=f"{_c(t, 'code', 'tiny_model.py')}:Nope@{_c(t, 'pretrained', 'pretrained.ckpt')}"),
        "has no attribute 'Nope'"),
    "cli_model_not_a_class": (
        None, lambda t, m: _unlearn(t, model=f"{_c(t, 'code', 'tiny_nets.py')}:make_backbone@{_c(t, 'pretrained', 'pretrained.ckpt')}"),
        "make_backbone' is not a class"),
    "cli_model_without_colon": (None, lambda t, m: _unlearn(t, model="tiny_model@x.ckpt"), "expected 'pkg.module:Name'"),
    "cli_model_without_checkpoint": (
        None, lambda t, m: _unlearn(t, model=f"{_c(t, 'code', 'tiny_model.py')}:TinySimCLR"), "names no checkpoint"),
    "cli_model_nothing_after_at": (
        None, lambda t, m: _unlearn(t, model=f"{_c(t, 'code', 'tiny_model.py')}:TinySimCLR@"), "nothing after '@'"),
    "cli_model_not_lightning": (
        *_model_case("from torch import nn\nclass Plain(nn.Module):\n    def __init__(self, hidden=32):\n"
                     "        super().__init__()\n        self.backbone = nn.Linear(2, 2)\n", cls="Plain"),
        "does not fit|not a LightningModule"),
    "cli_model_without_criterion": (
        *_model_case("class NoLoss(TinySimCLR):\n    def __init__(self, hidden=32):\n        super().__init__(hidden)\n"
                     "        del self.criterion\n", cls="NoLoss"),
        "no attribute 'criterion'.*self.criterion = NTXentLoss"),
    # checkpoints (item 8)
    "cli_checkpoint_missing": (
        None, lambda t, m: _unlearn_ckpt(t, name="missing.ckpt"), "checkpoint file .*missing.ckpt does not exist"),
    "cli_checkpoint_is_text": (
        lambda t: _c(t, "pretrained", "bad.ckpt").write_text("hello"), lambda t, m: _unlearn_ckpt(t),
        "cannot load .*bad.ckpt with torch.load\\(weights_only=True\\)"),
    "cli_checkpoint_runs_code_when_unpickled": (
        lambda t: _planted(t, _c(t, "pretrained", "bad.ckpt")), lambda t, m: _unlearn_ckpt(t),
        "cannot load .*bad.ckpt with torch.load\\(weights_only=True\\)"),
    "cli_checkpoint_is_a_list": (lambda t: _ckpt(t, [1, 2]), lambda t, m: _unlearn_ckpt(t), "holds a list, not a state dict"),
    "cli_checkpoint_hyper_parameters_list": (
        lambda t: _ckpt(t, {**_weights(t), "hyper_parameters": [["hidden", 32]]}), lambda t, m: _unlearn_ckpt(t),
        "'hyper_parameters' is a list, not a mapping"),
    "cli_checkpoint_hyper_parameters_string": (
        lambda t: _ckpt(t, {**_weights(t), "hyper_parameters": "hidden=32"}), lambda t, m: _unlearn_ckpt(t),
        "'hyper_parameters' is a str, not a mapping"),
    "cli_checkpoint_hyper_parameters_unknown": (
        lambda t: _ckpt(t, {**_weights(t), "hyper_parameters": {"width": 32}}), lambda t, m: _unlearn_ckpt(t),
        "cannot build TinySimCLR\\(width=32\\)"),
    "cli_checkpoint_other_shapes": (
        lambda t: _ckpt(t, {**_weights(t), "hyper_parameters": {"hidden": 16}}), lambda t, m: _unlearn_ckpt(t),
        "tensors of another shape"),
    "cli_checkpoint_of_another_class": (
        None, lambda t, m: _unlearn(t, model=f"{_c(t, 'code', 'tiny_model.py')}:Other@{_c(t, 'pretrained', 'pretrained.ckpt')}"),
        "2 missing keys \\(extra.weight, extra.bias\\).*the class that wrote this checkpoint"),
    "cli_checkpoint_nan_weights": (
        lambda t: _with_value(t, "backbone.1.weight", float("nan")), lambda t, m: _unlearn_ckpt(t),
        "NaN or infinite values in 1 tensor\\(s\\) \\(backbone.1.weight\\)"),
    "cli_checkpoint_inf_weights": (
        lambda t: _with_value(t, "projection_head.layers.0.weight", float("inf")), lambda t, m: _unlearn_ckpt(t),
        "NaN or infinite values .*projection_head"),
    "cli_checkpoint_nan_batchnorm_running_var": (
        lambda t: _with_value(t, "backbone.1.running_var", float("nan"), name="pretrained_bn.ckpt"),
        lambda t, m: _unlearn_ckpt(t, cls="TinyBNSimCLR"), "NaN or infinite values .*backbone.1.running_var"),
    # signing keys, checked before any work (item 8)
    "cli_signing_key_missing": (
        None, lambda t, m: _unlearn(t, "--signing-key", str(t / "none.key")), "none.key: no such file.*keygen"),
    "cli_signing_key_mode_0644": _key_case("0644", "readable by other users \\(mode 0644\\).*chmod 600"),
    "cli_signing_key_rsa": _key_case("rsa", "RSAPrivateKey, not an Ed25519 key"),
    "cli_signing_key_ed448": _key_case("ed448", "Ed448PrivateKey, not an Ed25519 key"),
    "cli_signing_key_encrypted": _key_case("encrypted", "not an unencrypted PEM private key.*encrypted"),
    "cli_signing_key_openssh": _key_case("openssh", "OpenSSH format"),
    "cli_signing_key_is_the_public_key": _key_case("pub", "receipt_signing.pub is a public key; signing needs the private"),
    "cli_signing_key_garbage": _key_case("garbage", "not an unencrypted PEM private key"),
    "cli_signing_key_is_a_folder": _key_case("folder", "test.key: no such file"),
    # images, decoded fully before any training (item 8)
    "cli_truncated_jpeg": (
        lambda t: _image(t, "images", "zz.jpg", _encoded("jpg")), lambda t, m: _unlearn(t),
        "--data: cannot read image .*zz.jpg \\(image file is truncated"),
    "cli_truncated_bmp": (
        lambda t: _image(t, "images", "zz.bmp", _encoded("bmp")), lambda t, m: _unlearn(t),
        "--data: cannot read image .*zz.bmp"),
    "cli_png_with_broken_compressed_data": (
        lambda t: _image(t, "images", "zz.png", _encoded("png")), lambda t, m: _unlearn(t),
        "--data: cannot read image .*zz.png"),
    "cli_text_named_png": (
        lambda t: _image(t, "images", "sub/notes.png", b"not an image"), lambda t, m: _unlearn(t),
        "cannot read image .*sub/notes.png"),
    "cli_empty_image_file": (
        lambda t: _image(t, "images", "empty.png", b""), lambda t, m: _unlearn(t), "cannot read image .*empty.png"),
    "cli_decompression_bomb": (
        lambda t: _image(t, "images", "bomb.png", _bomb_bytes()), lambda t, m: _unlearn(t),
        "bomb.png is refused by Pillow's decompression-bomb limit"),
    "cli_truncated_jpeg_in_holdout": (
        lambda t: _image(t, "holdout", "zz.jpg", _encoded("jpg")), lambda t, m: _unlearn(t),
        "--holdout: cannot read image .*zz.jpg"),
    "cli_data_folder_missing": (None, lambda t, m: _unlearn(t, data=str(t / "nowhere")), "--data .*nowhere: no such folder"),
    "cli_data_folder_without_images": (
        lambda t: (t / "inputs" / "empty").mkdir(), lambda t, m: _unlearn(t, data=str(t / "inputs" / "empty")),
        "no image files"),
    "cli_holdout_missing": (None, lambda t, m: _unlearn(t, holdout=str(t / "nowhere")), "--holdout .*nowhere: no such folder"),
    # the holdout is never the training data (item 7)
    "cli_holdout_is_data": (
        None, lambda t, m: _unlearn(t, holdout=str(_c(t, "images"))), "--holdout .*images is --data .*never saw"),
    "cli_holdout_inside_data": (
        lambda t: _image(t, "images", "held/a.png", _c(t, "holdout", "img_012.png").read_bytes()),
        lambda t, m: _unlearn(t, holdout=str(_c(t, "images", "held"))), "--holdout .*held is inside --data"),
    "cli_holdout_contains_data": (
        None, lambda t, m: _unlearn(t, holdout=str(_c(t))), "--holdout .*cli contains --data"),
    "cli_holdout_through_a_symlink": (
        lambda t: (t / "inputs" / "link").symlink_to(_c(t, "images")),
        lambda t, m: _unlearn(t, holdout=str(t / "inputs" / "link")), "--holdout .*link is --data"),
    "cli_holdout_image_with_training_content": (
        lambda t: _image(t, "holdout", "copy.png", _c(t, "images", "img_003.png").read_bytes()),
        lambda t, m: _unlearn(t), "--holdout .*copy.png has the same content as --data .*img_003.png"),
    # forget lists (item 8)
    "cli_forget_missing": (None, lambda t, m: _unlearn(t, forget=str(t / "none.txt")), "--forget .*none.txt: no such file"),
    "cli_forget_unknown_names": (
        lambda t: _forget(t, b"img_000.png\nnot_there.png\n"), lambda t, m: _unlearn(t),
        "1 name\\(s\\) are not image files of the data folder: 'not_there.png'"),
    "cli_forget_only_comments": (
        lambda t: _forget(t, b"# nothing\n\n   # still nothing\n"), lambda t, m: _unlearn(t), "lists no file names"),
    "cli_forget_utf16_without_bom": (
        lambda t: _forget(t, "img_000.png\n".encode("utf-16-le")), lambda t, m: _unlearn(t),
        "line 1: holds NUL bytes .*UTF-16 or UTF-32 without a byte-order mark"),
    "cli_forget_latin1": (
        lambda t: _forget(t, "img_000.png\nbild_ä.png\n".encode("latin-1")), lambda t, m: _unlearn(t),
        "line 2: not UTF-8 text"),
    "cli_forget_utf16_with_bom_names_cleanly": (  # decoded: the unknown name is shown as written
        lambda t: _forget(t, "img_000.png\nbild_ä.png\n".encode("utf-16")), lambda t, m: _unlearn(t),
        "not image files of the data folder: 'bild_ä.png'\\."),
    "cli_forget_bom_utf8_names_cleanly": (
        lambda t: _forget(t, "\ufeffnope.png\n".encode()), lambda t, m: _unlearn(t), "data folder: 'nope.png'\\."),
    "cli_forget_broken_quote": (
        lambda t: _forget(t, b'"img_000.png\n'), lambda t, m: _unlearn(t),
        "line 1: .*starts with a quote but is not a JSON string"),
    "cli_forget_text_after_quote": (
        lambda t: _forget(t, b'"img_000.png" extra\n'), lambda t, m: _unlearn(t), "line 1: text after the quoted name"),
    "cli_forget_quoted_name_with_spaces_and_hash": (  # expressible, and reported exactly
        lambda t: _forget(t, b'"  my # file.png "\n'), lambda t, m: _unlearn(t), "data folder: '  my # file.png '\\."),
    "cli_forget_everything": (
        lambda t: _forget(t, "\n".join(f"img_{i:03d}.png" for i in range(12)).encode()), lambda t, m: _unlearn(t),
        "whole dataset"),
    # --out: one run per folder, never over or inside inputs (items 6, 7)
    "cli_out_inside_data": (None, lambda t, m: _unlearn(t, out=str(_c(t, "images", "out"))), "inside the input folder"),
    "cli_out_is_checkpoint_folder": (
        None, lambda t, m: _unlearn(t, out=str(_c(t, "pretrained"))), "pretrained|input checkpoint"),
    "cli_out_is_a_file": (
        lambda t: (t / "inputs" / "out.txt").write_text("x"), lambda t, m: _unlearn(t, out=str(t / "inputs" / "out.txt")),
        "exists and is not a folder"),
    "cli_out_holds_an_earlier_run": (
        lambda t: ((t / "inputs" / "done").mkdir(), (t / "inputs" / "done" / "unlearned.ckpt").write_text("x")),
        lambda t, m: _unlearn(t, out=str(t / "inputs" / "done")), "already holds unlearned.ckpt from an earlier run"),
    "cli_out_in_use_by_another_run": (None, _holding_out, f"is in use by another run \\(pid {os.getpid()} on "),
    "cli_out_is_the_forget_list": (None, lambda t, m: _unlearn(t, out=str(_c(t, "forget.txt"))), "is the input"),
    "cli_out_is_a_symlink": (
        lambda t: ((t / "inputs" / "real").mkdir(), (t / "inputs" / "alias").symlink_to(t / "inputs" / "real")),
        lambda t, m: _unlearn(t, out=str(t / "inputs" / "alias")), "is a symbolic link"),
    "cli_file_size_limit_below_checkpoint": (None, _limit_file_size, "file size limit \\(ulimit -f\\) is 100 bytes"),
    # method, hyper-parameters, roles, plugins
    "cli_unknown_method": (None, lambda t, m: _unlearn(t, method="forgetall"), "Unknown method 'forgetall'. Available"),
    "cli_unknown_hyperparameter": (None, lambda t, m: _unlearn(t, "--hp", "lamda=1"), "lamda"),
    "cli_hyperparameter_nan": (None, lambda t, m: _unlearn(t, "--hp", "alpha=nan"), "alpha must be a finite number"),
    "cli_hyperparameter_nested_200k_deep": (
        None, lambda t, m: _unlearn(t, "--hp", "alpha=" + "[" * 200_000 + "]" * 200_000), "alpha must be"),
    "cli_hyperparameter_syntax": (None, lambda t, m: _unlearn(t, "--hp", "alpha"), "expected NAME=VALUE"),
    "cli_unknown_role_attribute": (None, lambda t, m: _unlearn(t, "--role", "backbone=trunk"), "--role.*trunk"),
    "cli_broken_plugin": (
        lambda t: _plugin(t, "[lightly_unlearn.methods]\nbroken = evil_plugin_mod:Broken\n",
                          "raise ImportError('needs a package that is not installed')\n"),
        _on_path(lambda t, m: _unlearn(t, method="broken")), "broken.*loading it failed.*not installed"),
    "cli_plugin_replacing_a_builtin": (
        lambda t: _plugin(t, "[lightly_unlearn.methods]\nac = lightly_unlearn.methods.finetune:FineTune\n"),
        _on_path(lambda t, m: _unlearn(t, method="ac")),
        "'ac' is built into lightly-unlearn, and evil-plugin declares it too.*may not replace a built-in"),
    "cli_two_plugins_one_name": (
        lambda t: (_plugin(t, "[lightly_unlearn.methods]\nhalf = lightly_unlearn.methods.finetune:FineTune\n"),
                   _plugin(t, "[lightly_unlearn.methods]\nhalf = lightly_unlearn.methods.neggrad:NegGrad\n",
                           name="other-plugin")),
        _on_path(lambda t, m: _unlearn(t, method="half")), "'half' is declared by evil-plugin and other-plugin"),
    "cli_plugin_that_fails_to_build": (
        lambda t: _plugin(t, "[lightly_unlearn.methods]\nfragile = evil_plugin_mod:Fragile\n",
                          "class Fragile:\n    def __init__(self, **hp):\n        raise RuntimeError('bad plugin')\n"),
        _on_path(lambda t, m: _unlearn(t, method="fragile")), "--method fragile.*bad plugin"),
    # sizes, devices, trainer settings (item 8)
    "cli_image_size_20000": (None, lambda t, m: _unlearn(t, image_size="20000"), "--image-size 20000: .*GiB"),
    "cli_image_size_zero": (None, lambda t, m: _unlearn(t, image_size="0"), "--image-size: must be at least 1"),
    "cli_epochs_not_a_number": (None, lambda t, m: _unlearn(t, epochs="five"), "--epochs: expected a whole number"),
    "cli_accelerator_gpu_without_cuda": (
        None, lambda t, m: _unlearn(t, accelerator="gpu"), "--accelerator gpu: no CUDA device is available"),
    "cli_precision_unknown": (None, lambda t, m: _unlearn(t, precision="7-bit"), "--precision: .*7-bit"),
    "cli_strategy_unknown": (None, lambda t, m: _unlearn(t, strategy="telepathy"), "--strategy.*telepathy"),
    "cli_unknown_transform": (None, lambda t, m: _unlearn(t, transform="byol"), "invalid choice: 'byol'"),
    # explicit flags vs the module's conventions (item 7)
    "cli_image_size_without_transform_over_module_transform": (
        *_model_case("from lightly.transforms import SimCLRTransform\n\n\nclass WithViews(TinySimCLR):\n"
                     "    transform = SimCLRTransform(input_size=8)\n", cls="WithViews", transform=None),
        "--image-size sets the crop size of --transform.*WithViews.transform"),
    "cli_module_transform_class_fails": (
        *_model_case("class Views:\n    def __init__(self, size):\n        pass\n\n    def __call__(self, x):\n"
                     "        return [x, x]\n\n\nclass WithViews(TinySimCLR):\n    transform = Views\n", cls="WithViews",
                     transform=None, image_size=None),
        "WithViews.transform is a class, and WithViews.transform\\(\\) failed"),
    # audit CLI
    "audit_cli_device_cuda_without_cuda": (None, lambda t, m: _audit(t, device="cuda"), "--device cuda: no CUDA device"),
    "audit_cli_device_unknown": (None, lambda t, m: _audit(t, device="quantum"), "--device 'quantum'"),
    "audit_cli_out_holds_reports": (
        lambda t: ((t / "inputs" / "reports").mkdir(), (t / "inputs" / "reports" / "report.md").write_text("mine")),
        lambda t, m: _audit(t, out=str(t / "inputs" / "reports")), "already holds report.md from an earlier run"),
    "audit_cli_holdout_is_data": (
        None, lambda t, m: _audit(t, holdout=str(_c(t, "images"))), "--holdout .*images is --data"),
    "audit_cli_image_size_20000": (None, lambda t, m: _audit(t, image_size="20000"), "GiB"),
    "audit_cli_truncated_jpeg": (
        lambda t: _image(t, "images", "zz.jpg", _encoded("jpg")), lambda t, m: _audit(t),
        "cannot read image .*zz.jpg \\(image file is truncated"),
    "audit_cli_one_view": (None, lambda t, m: _audit(t, num_views="1"), "--num-views must be at least 2"),
    "audit_cli_max_samples_one": (None, lambda t, m: _audit(t, max_samples="1"), "--max-samples must be at least 2"),
    "audit_cli_data_with_one_image": (
        lambda t: ((t / "inputs" / "one").mkdir(),
                   (t / "inputs" / "one" / "a.png").write_bytes(_c(t, "images", "img_000.png").read_bytes())),
        lambda t, m: _audit(t, data=str(t / "inputs" / "one")), "found 1 image file\\(s\\); .*at least 2"),
    "audit_cli_model_file_exits": (
        lambda t: _model_file(t, "import sys\nsys.exit(0)\n\ndef embed(x):\n    return x\n"),
        lambda t, m: _audit(t, before=f"{_c(t, 'code', 'user_model.py')}:embed"), "called sys.exit\\(0\\)"),
    # verify-receipt: JSON that would exhaust the parser's stack
    "verify_receipt_nested_200k_deep": (
        lambda t: (t / "inputs" / "receipt.json").write_text("[" * 200_000 + "]" * 200_000),
        lambda t, m: (_ for _ in ()).throw(SystemExit(cli_main(
            ["verify-receipt", str(t / "inputs" / "receipt.json"), "--checkpoint", str(t / INPUT)]))),
        "receipt.json is not a readable JSON receipt: it is nested more than 64 levels deep"),
    # caches of the demo and the benchmark: a planted pickle is data, never code (item 7)
    "demo_cache_planted_pickle": (
        lambda t: _planted(t, _demo_experiment(t)._cache_path("pretrained")),
        lambda t, m: _demo_experiment(t).pretrain(), "cache file .*_pretrained.pt is not plain data"),
    "benchmark_cache_planted_pickle": (
        lambda t: _planted(t, t / BENCH_CACHE),
        lambda t, m: __import__("lightly_unlearn.demo.experiment", fromlist=["read_cache"]).read_cache(t / BENCH_CACHE),
        "cache file .*clip_seed0_.* is not plain data"),
}

#: messages that must not appear (wrong advice)
FORBIDDEN = {
    "cli_signing_key_is_the_public_key": "chmod",
    "cli_checkpoint_nan_weights": "learning rate",
    "cli_checkpoint_inf_weights": "learning rate",
    "cli_checkpoint_nan_batchnorm_running_var": "learning rate",
}

CASES.update(CLI_CASES)

#: cases in which Lightning restores the checkpoint's weights before our checks can run
LOADS_CHECKPOINT = {"checkpoint_of_other_forget_set", "resume_last_without_input_checkpoint"}


def _files(root: Path) -> dict[str, str]:
    """Every file (inputs included) with its SHA-256; folders are not counted (Lightning's logger
    makes its empty version folder before any hook)."""
    return {str(p.relative_to(root)): sha256_file(p) for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def cli_template(tmp_path_factory):
    """One small CLI project (12 training images, 6 holdout, 2 forgotten), copied per case."""
    import sys

    path, modules = list(sys.path), set(sys.modules)
    root = tmp_path_factory.mktemp("cli_template") / CLI
    write_cli_project(root, n_data=12, n_holdout=6, forget=(0, 5))
    sys.path[:] = path
    for name in set(sys.modules) - modules:
        sys.modules.pop(name, None) if name in ("tiny_model", "tiny_nets") else None
    return root


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_fails_early_and_writes_nothing(tmp_path, case, other_forget_ckpt, cli_template,
                                                  capsys, monkeypatch, isolated_imports):
    import lightly_unlearn.cli.unlearn as unlearn_cli

    def no_training(*args, **kwargs):
        raise AssertionError("training started although the input is bad")

    monkeypatch.setattr(unlearn_cli, "_train", no_training)
    prepare, action, message = CASES[case]
    shutil.copytree(cli_template, tmp_path / CLI, symlinks=True)
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
    if case in FORBIDDEN:
        assert FORBIDDEN[case] not in text, text
    after = _files(tmp_path)
    assert after == before, f"{case} wrote or changed {sorted(set(after.items()) ^ set(before.items()))}"
    for name, value in model.state_dict().items():
        assert torch.equal(value, weights[name]), name
    assert sha256_file(other_forget_ckpt) == ckpt_digest
