"""Bad-input matrix (issue #6): every case fails before any training, with a message that says
what to fix, and writes nothing (no new file anywhere under the run's folder; the model's
weights are unchanged; the input checkpoint's SHA-256 is unchanged).

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
         holdout=True, ckpt_path=None, batch_size=8):
    audits = audits or ("emia", "alignment_matrix")
    dm = ForgetRetainDataModule(
        digits_dataset(N),
        list(forget) if not isinstance(forget, set) else forget,
        transform or tiny_transform(),
        batch_size=batch_size,
        holdout=digits_dataset(8, offset=300) if holdout else None,
    )
    callbacks = [
        UnlearnCallback(method, **(hp or {})),
        AuditCallback(audits=audits, num_views=2, batch_size=8),
        ReceiptCallback(),
        ModelCheckpoint(dirpath=tmp / "run" / "ckpt", save_last=True),
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


def _audit_cli(tmp):
    from PIL import Image

    data = tmp / "inputs" / "images"
    data.mkdir()
    for i, (image, _) in enumerate(digits_dataset(3)):
        image.save(data / f"{i}.png")
    (data / "broken.png").write_bytes(b"not a png")
    code = cli_main(
        ["audit", "--before", "torch.nn:Flatten", "--after", "torch.nn:Flatten",
         "--data", str(data), "--out", str(tmp / "run" / "audit_out"), "--no-progress"]
    )
    assert isinstance(Image, type(Image))  # PIL available
    if code != 0:
        raise SystemExit(code)


def _legacy_ckpt(tmp):
    import numpy as np

    path = tmp / "inputs" / "legacy.ckpt"
    torch.save({"state_dict": {}, "extra": np.arange(3)}, path)  # numpy: not weights_only-safe
    load_checkpoint(path)


CASES = {
    # forget ids
    "ids_out_of_range": (lambda t, m: _fit(t, m, forget=(0, N)), "out of range.*valid: 0..23"),
    "ids_negative": (lambda t, m: _fit(t, m, forget=(-1, 3)), "negative.*count from 0"),
    "ids_float": (lambda t, m: _fit(t, m, forget=(0.5, 3)), "must contain integers.*int"),
    "ids_duplicated": (lambda t, m: _fit(t, m, forget=(1, 1, 4)), "more than once.*sorted\\(set"),
    "ids_as_set": (lambda t, m: _fit(t, m, forget={1, 4}), "sorted list"),
    "forget_empty": (lambda t, m: _fit(t, m, forget=(), method="ga"), "forget set is empty"),
    "forget_everything": (lambda t, m: _fit(t, m, forget=range(N)), "whole dataset.*keep some retain"),
    "ac_single_forget_sample": (lambda t, m: _fit(t, m, forget=(3,)), "at least 2 forget samples"),
    "forget_smaller_than_batch": (
        lambda t, m: _fit(t, m, forget=(1, 2, 3), method="ga"), "Lower batch_size to at most 3"),
    # checkpoints
    "checkpoint_of_other_forget_set": (None, "different forget set.*same forget_indices"),
    "untrusted_legacy_checkpoint": (lambda t, m: _legacy_ckpt(t), "trusted=True"),
    # module, transform, components
    "module_without_criterion": (lambda t, m: _fit(t, NoCriterion()), "no attribute 'criterion'.*self.criterion = NTXentLoss"),
    "transform_with_one_view": (
        lambda t, m: _fit(t, m, transform=_one_view), "at least two views.*SimCLRTransform"),
    "unknown_method": (lambda t, m: _fit(t, m, method="forgetall"), "Unknown method 'forgetall'. Available"),
    "unknown_hyperparameter": (
        lambda t, m: _fit(t, m, hp={"lamda": 1.0}), "unknown hyper-parameter.* alpha="),
    "unknown_audit": (lambda t, m: _fit(t, m, audits=("emai",)), "Unknown audit 'emai'. Available"),
    "audit_needs_holdout": (lambda t, m: _fit(t, m, holdout=False), "Pass `holdout=`"),
    # audit CLI
    "audit_cli_unreadable_image": (lambda t, m: _audit_cli(t), "cannot read image .*broken.png"),
}


def _files(root: Path) -> set[str]:
    """Files, not folders (Lightning's logger makes its empty version folder before any hook),
    and not the inputs a case prepares under ``inputs/``."""
    return {
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and not p.relative_to(root).parts[0] == "inputs"
    }


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_fails_early_and_writes_nothing(tmp_path, case, other_forget_ckpt, capsys):
    action, message = CASES[case]
    (tmp_path / "inputs").mkdir()
    ckpt_digest = sha256_file(other_forget_ckpt)
    torch.manual_seed(0)
    model = make_simclr("L")()
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    if action is None:  # the mismatched checkpoint
        action = lambda t, m: _fit(t, m, ckpt_path=str(other_forget_ckpt))  # noqa: E731
        weights = load_checkpoint(other_forget_ckpt)["state_dict"]
    before = _files(tmp_path)

    with pytest.raises((Exception, SystemExit)) as err:
        action(tmp_path, model)

    text = str(err.value) + capsys.readouterr().err
    if isinstance(err.value, SystemExit):
        assert err.value.code == 2  # the CLI's "bad input" status
    assert re.search(message, text, flags=re.S), text
    new = _files(tmp_path) - before
    assert not new, f"{case} wrote {sorted(new)}"
    for name, value in model.state_dict().items():
        assert torch.equal(value, weights[name]), name
    assert sha256_file(other_forget_ckpt) == ckpt_digest


def test_matrix_has_at_least_twelve_cases():
    assert len(CASES) >= 12
