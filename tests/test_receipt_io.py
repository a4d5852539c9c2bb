"""No data loss and the unlearning receipt: atomic writes, weights_only loading with an
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
from lightly_unlearn.errors import ConfigurationError, UntrustedCheckpointError
from lightly_unlearn.io import (
    atomic_torch_save,
    atomic_write,
    load_checkpoint,
    sha256_file,
)
from lightly_unlearn.receipt import read_receipt, verify_receipt
from lightly_unlearn.weights_digest import state_dict_sha256, weights_record


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
    assert receipt["hyperparameters"] == {"alpha": 1.2, "beta": 8.0, "gamma": None,  # defaults
                                          "extra_encoder": "auto"}
    forget = receipt["forget_set"]
    assert forget["num_forget"] == 3 and forget["num_samples"] == 24
    # the digits are PIL images with no file: committed by their pixels, one proof per item
    assert forget["commitment"]["content"] == "pixels" and forget["commitment"]["num_items"] == 3
    assert sorted(p.name for p in (tmp / "out" / "proofs").iterdir()) == [
        f"item-{i}.proof.json" for i in (0, 5, 9)]
    assert "sha256" not in forget  # no hash of positions poses as the forget set's identity
    assert receipt["input_checkpoint"]["sha256"] == digest
    assert receipt["input_checkpoint"]["unchanged"] is True
    assert receipt["weights"]["sha256"] == state_dict_sha256(trainer.lightning_module.state_dict())
    (ckpt,) = (tmp / "out" / "ckpt").glob("*.ckpt")  # ModelCheckpoint's file holds the final weights
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
    with pytest.raises(ConfigurationError, match="missing.ckpt: no such file"):
        verify_receipt(written, tmp_path / "missing.ckpt")


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


# -- signed receipts -------------------------------------------------------------------------------
def _cli(capsys, *argv):
    code = cli_main(list(map(str, argv)))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    from lightly_unlearn.receipt import generate_signing_key

    return generate_signing_key(tmp_path_factory.mktemp("keys") / "k")


def test_keygen_writes_a_private_key_and_never_overwrites_it(tmp_path, capsys):
    import stat

    code, out, _ = _cli(capsys, "keygen", "--out", tmp_path / "keys")
    key, pub = tmp_path / "keys" / "receipt_signing.key", tmp_path / "keys" / "receipt_signing.pub"
    assert code == 0 and str(key) in out and str(pub) in out
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" in key.read_bytes() and b"PUBLIC KEY" in pub.read_bytes()
    before = key.read_bytes(), pub.read_bytes()
    code, _, err = _cli(capsys, "keygen", "--out", tmp_path / "keys")
    assert code == 2 and "already exists" in err and len(err.strip().splitlines()) == 1
    assert (key.read_bytes(), pub.read_bytes()) == before


def test_signed_receipt_detects_forgery(run, keys, tmp_path, capsys):
    from lightly_unlearn.io import sha256_bytes
    from lightly_unlearn.receipt import (
        _canonical,
        generate_signing_key,
        key_id,
        load_public_key,
        seal,
        sign_receipt,
    )

    _, trainer, _, pretrained, _, _ = run
    key, pub = keys
    final = tmp_path / "final.ckpt"
    trainer.save_checkpoint(final)
    signed = ReceiptCallback(path=tmp_path / "r.json", signing_key=key).write(trainer, final)
    code, out, _ = _cli(capsys, "verify-receipt", signed, "--checkpoint", final, "--public-key", pub)
    assert code == 0 and out.startswith("Signature OK") and "OK:" in out
    assert _cli(capsys, "verify-receipt", signed, "--checkpoint", pretrained, "--public-key", pub)[0] == 1

    receipt = json.loads(signed.read_text())
    forged = dict(receipt, method="retrain")  # edited, and its unkeyed hash recomputed
    forged["receipt_sha256"] = sha256_bytes(_canonical(forged))
    resealed = seal(dict(receipt, method="retrain"))  # the same with the signature dropped
    other_key, _ = generate_signing_key(tmp_path / "other")
    resigned = sign_receipt(dict(receipt, method="retrain"), other_key)  # signed by another key
    # same key, content changed: the edit is said first; another key: both key ids are named
    given, other = key_id(load_public_key(pub)), resigned["signature"]["key_id"][:16]
    edited = f"SIGNATURE INVALID: the receipt was edited after it was signed, or its signature is corrupt (it names the given key {given}"
    for name, fake, why in [("forged", forged, edited), ("resealed", resealed, "UNSIGNED"),
                            ("resigned", resigned, f"names signing key {other}, not the given key {given}")]:
        (tmp_path / f"{name}.json").write_text(json.dumps(fake))
        code, out, err = _cli(capsys, "verify-receipt", tmp_path / f"{name}.json", "--checkpoint", final,
                              "--public-key", pub)
        assert code == 1 and why in err, (name, out, err)
        # without the public key the edit is not detectable: exit 0, but the first line says so
        code, out, _ = _cli(capsys, "verify-receipt", tmp_path / f"{name}.json", "--checkpoint", final)
        assert code == 0 and out.startswith("UNSIGNED") and "proves nothing against deliberate edits" in out


def test_unsigned_receipt_says_so_first_and_accepts_any_hex_case(run, tmp_path, capsys):
    from lightly_unlearn.receipt import seal

    tmp, _, _, _, _, _ = run
    path = tmp / "out" / "unlearning_receipt.json"
    (ckpt,) = (tmp / "out" / "ckpt").glob("*.ckpt")
    code, out, _ = _cli(capsys, "verify-receipt", path, "--checkpoint", ckpt)
    assert code == 0 and out.splitlines()[0].startswith("UNSIGNED: the receipt is unsigned")
    receipt = json.loads(path.read_text())
    receipt["output_checkpoint"]["sha256"] = receipt["output_checkpoint"]["sha256"].upper()
    receipt = seal(receipt)
    receipt["receipt_sha256"] = receipt["receipt_sha256"].upper()
    (tmp_path / "upper.json").write_text(json.dumps(receipt))
    assert _cli(capsys, "verify-receipt", tmp_path / "upper.json", "--checkpoint", ckpt)[0] == 0
    # an unsigned receipt checked against a public key fails: it cannot be attributed
    _, pub = _keys_for(tmp_path)
    code, _, err = _cli(capsys, "verify-receipt", path, "--checkpoint", ckpt, "--public-key", pub)
    assert code == 1 and "UNSIGNED" in err


def _keys_for(tmp_path):
    from lightly_unlearn.receipt import generate_signing_key

    return generate_signing_key(tmp_path / "keys")


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda text, r: text.replace('"num_forget": 3', '"num_forget": NaN'), "finite"),
        (lambda text, r: json.dumps(dict(r, method=5)), "method must be a string"),
        (lambda text, r: json.dumps({**r, "forget_set": {**r["forget_set"], "commitment": {
            **r["forget_set"]["commitment"], "root": "xyz"}}}), "root must be 64 hex"),
        (lambda text, r: json.dumps(dict(r, signature={"algorithm": "ed25519", "value": "??"})),
         "signature.value must be 64 bytes"),
        (lambda text, r: text.replace('"method": "ac"', '"method": "ac", "method": "retrain"'), "duplicate key"),
        (lambda text, r: json.dumps([r]), "JSON object"),
        (lambda text, r: text[: len(text) // 2], "not a readable JSON receipt"),
    ],
)
def test_malformed_receipt_exits_2_with_one_line(run, tmp_path, capsys, edit, message):
    tmp, _, _, _, _, _ = run
    text = (tmp / "out" / "unlearning_receipt.json").read_text()
    (tmp_path / "bad.json").write_text(edit(text, json.loads(text)))
    (ckpt,) = (tmp / "out" / "ckpt").glob("*.ckpt")
    code, out, err = _cli(capsys, "verify-receipt", tmp_path / "bad.json", "--checkpoint", ckpt)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1 and not out, err


def test_receipt_values_are_json_safe(tmp_path):
    from lightly_unlearn.receipt import build_receipt, read_receipt, verify_receipt, write_receipt

    final = atomic_write(tmp_path / "w.ckpt", b"weights")
    receipt = build_receipt(
        method="ac", hyperparameters={"alpha": 1.0}, weights=weights_record({"w": torch.ones(1)}),
        num_forget=2, num_samples=9, commitment_missing="test",
        output_checkpoint={"path": str(final), "sha256": sha256_file(final), "bytes": 7},
        audits={"after": {"emia_threshold": float("inf"), "gap": float("-inf"), "x": torch.tensor(float("nan"))}},
    )
    path = write_receipt(tmp_path / "r.json", receipt)
    strict = json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}"))
    assert strict["audits"]["after"] == {"emia_threshold": "inf", "gap": "-inf", "x": "nan"}
    assert verify_receipt(read_receipt(path), final)[0]


# -- the output-path check ----------------------------------------------------------------------------
def test_check_output_path(tmp_path):
    import os

    from lightly_unlearn.errors import OutputPathError
    from lightly_unlearn.paths import check_output_path
    from lightly_unlearn.receipt import build_receipt, write_receipt

    ckpt = atomic_write(tmp_path / "in" / "model.ckpt", b"w")
    data = tmp_path / "images"
    data.mkdir()
    os.link(ckpt, tmp_path / "hard.ckpt")
    (tmp_path / "soft.json").symlink_to(ckpt)
    other = atomic_write(tmp_path / "notes.txt", "mine")
    refused = {
        "model.ckpt is the input": (ckpt, "file"),
        "hard.ckpt is the input": (tmp_path / "hard.ckpt", "file"),
        "soft.json is the input .*through a symlink": (tmp_path / "soft.json", "file"),
        "inside the input folder": (data / "sub" / "out", "dir"),
        "images is inside the input folder": (data, "dir"),
        "is an existing folder": (tmp_path / "in", "file"),
        "exists and is not a folder": (other, "dir"),
        "is not a folder, so nothing": (ckpt / "r.json", "file"),
    }
    for message, (path, kind) in refused.items():
        with pytest.raises(OutputPathError, match=message):
            check_output_path(path, inputs=[ckpt, data], kind=kind)
    with pytest.raises(OutputPathError, match="already exists and is not a previous output"):
        check_output_path(other, replaceable=lambda p: False)
    previous = write_receipt(tmp_path / "old.json", build_receipt(
        method="ft", hyperparameters={}, weights=weights_record({"w": torch.ones(1)}), num_forget=1,
        num_samples=2, commitment_missing="test"))
    from lightly_unlearn.receipt import is_receipt

    assert check_output_path(previous, inputs=[ckpt], replaceable=is_receipt) == previous
    assert not is_receipt(other) and not is_receipt(ckpt)
    assert check_output_path(tmp_path / "new" / "deeper" / "r.json", inputs=[ckpt, data]).name == "r.json"


# -- full disk and killed writers -------------------------------------------------------------------
def test_audit_cli_full_disk_is_one_line_and_leaves_no_temporary(tmp_path, capsys, monkeypatch):
    import errno

    import lightly_unlearn.io as io_module

    data = tmp_path / "images"
    data.mkdir()
    for i, (image, _) in enumerate(digits_dataset(3)):
        image.save(data / f"{i}.png")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    embed = tmp_path / "embed.py"
    embed.write_text("def embed(x):\n    return x.flatten(1)\n")
    monkeypatch.setattr(io_module.os, "fsync", full)
    code, _, err = _cli(capsys, "audit", "--before", f"{embed}:embed", "--after", f"{embed}:embed",
                        "--data", data, "--out", tmp_path / "out", "--num-views", "2", "--no-progress")
    assert code == 1 and "No space left on device" in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    # no folder, no temporary sibling, no lock: the reports appear whole or not at all
    assert sorted(p.name for p in tmp_path.iterdir()) == ["embed.py", "images"]


def test_a_killed_writers_temporary_is_removed_by_the_next_write(tmp_path):
    import os
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    stale = tmp_path / f".report.md.{dead}.x1y2.tmp"
    stale.write_text("half a rep")
    live = tmp_path / f".report.md.{os.getppid()}.a1b2.tmp"  # a running writer's: kept
    live.write_text("in progress")
    atomic_write(tmp_path / "report.md", "done")
    assert not stale.exists() and live.exists() and (tmp_path / "report.md").read_text() == "done"


def test_any_command_reports_a_full_disk_in_one_line(tmp_path, capsys, monkeypatch):
    import errno

    import lightly_unlearn.receipt as receipt_module

    def full(out_dir):
        raise OSError(errno.ENOSPC, "No space left on device", str(out_dir))

    monkeypatch.setattr(receipt_module, "generate_signing_key", full)
    code, _, err = _cli(capsys, "keygen", "--out", tmp_path / "k")
    assert code == 1 and err.startswith("lightly-unlearn keygen: error: No space left on device")
    assert len(err.strip().splitlines()) == 1
