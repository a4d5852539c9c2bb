"""Receipts bound to the unlearned weights, deletion proofs a data owner checks with their own file,
and strict receipt parsing (docs/receipts.md)."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import threading

import lightning.pytorch as L
import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from conftest import digits_dataset, make_moco, make_simclr, tiny_transform, trainer_kwargs
from test_cli_unlearn import _args, setup  # noqa: F401  (the CLI's fixture; isolated_imports is in conftest)

from lightly_unlearn import AuditCallback, ForgetRetainDataModule, UnlearnCallback
from lightly_unlearn.callbacks.receipt import ReceiptCallback
from lightly_unlearn.cli import main as cli_main
from lightly_unlearn.errors import ConfigurationError, ReceiptError
from lightly_unlearn.forget_commitment import (
    _leaf,
    _node,
    commit_files,
    commit_forget_set,
    forget_set_commitment,
    proof_root,
    write_proofs,
)
from lightly_unlearn.image_folder import ImageFolderDataModule
from lightly_unlearn.io import loads_strict_json, sha256_bytes, sha256_file
from lightly_unlearn.receipt import (
    FORMAT_V1,
    MAX_RECEIPT_BYTES,
    _canonical,
    build_receipt,
    file_record,
    generate_signing_key,
    key_id,
    load_signing_key,
    read_receipt,
    verify_deletion,
    verify_receipt,
    write_receipt,
)
from lightly_unlearn.weights_digest import state_dict_sha256, weights_record


def _cli(capsys, *argv):
    code = cli_main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def _files(root):
    return {str(p.relative_to(root)): sha256_file(p) for p in root.rglob("*") if p.is_file()}


# -- the weights digest -----------------------------------------------------------------------------
def test_weights_digest_is_the_documented_encoding():
    state = {
        "b.weight": torch.arange(6, dtype=torch.float32).reshape(2, 3),
        "a.count": torch.tensor(7, dtype=torch.int64),
        "c.mask": torch.tensor([True, False]),
    }
    expected = hashlib.sha256(b"lightly-unlearn-weights/1\n")
    for name in sorted(state):
        t = state[name]
        header = json.dumps([name, str(t.dtype).removeprefix("torch."), list(t.shape)], separators=(",", ":"))
        expected.update(header.encode() + b"\n")
        expected.update(t.numpy().astype(t.numpy().dtype.newbyteorder("<")).tobytes())
    assert state_dict_sha256(state) == expected.hexdigest()


def test_weights_digest_ignores_layout_and_key_order_not_values_names_dtypes_or_shapes():
    w = torch.randn(4, 3)
    nan = torch.tensor([1.0, float("nan")])
    base = state_dict_sha256({"w": w, "b": torch.zeros(3), "n": nan})
    strided = w.t().contiguous().t()  # same values, column-major memory
    assert not strided.is_contiguous()
    assert state_dict_sha256({"n": nan.clone(), "b": torch.zeros(3), "w": strided}) == base
    changed = w.clone()
    changed[2, 1] += 1e-6
    for other in (
        {"w": changed, "b": torch.zeros(3), "n": nan},
        {"w": w.double(), "b": torch.zeros(3), "n": nan},
        {"w2": w, "b": torch.zeros(3), "n": nan},
        {"w": w.reshape(3, 4), "b": torch.zeros(3), "n": nan},
        {"w": w, "b": torch.zeros(3)},
    ):
        assert state_dict_sha256(other) != base
    with pytest.raises(ConfigurationError, match="entry 'extra' is a int, not a tensor"):
        state_dict_sha256({"w": w, "extra": 3})


# -- the natural Python flow ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    return generate_signing_key(tmp_path_factory.mktemp("keys") / "k")


@pytest.fixture(scope="module")
def natural(tmp_path_factory, keys):
    """fit with ReceiptCallback(signing_key=...), then trainer.save_checkpoint, as the README does
    (a BatchNorm SimCLR, lightly-example style; no ModelCheckpoint, no write() call)."""
    tmp = tmp_path_factory.mktemp("natural")
    torch.manual_seed(0)
    model = make_simclr("L")()
    dm = ForgetRetainDataModule(digits_dataset(24), [0, 5, 9, 14, 20], tiny_transform(), batch_size=8,
                                holdout=digits_dataset(8, offset=300))
    audit = AuditCallback(audits=("emia",), num_views=2)
    receipt_cb = ReceiptCallback(signing_key=keys[0])
    trainer = L.Trainer(**trainer_kwargs(tmp / "run"),
                        callbacks=[UnlearnCallback("ac"), audit, receipt_cb])
    trainer.fit(model, datamodule=dm)
    trainer.save_checkpoint(tmp / "unlearned.ckpt")
    return dict(tmp=tmp, trainer=trainer, model=model, audit=audit, cb=receipt_cb,
                receipt=tmp / "run" / "unlearning_receipt.json", ckpt=tmp / "unlearned.ckpt")


def test_save_checkpoint_after_fit_verifies_and_so_does_a_saved_state_dict(natural, keys, capsys):
    n = natural
    assert n["cb"].written == n["receipt"]  # written at fit end to the documented place
    code, out, _ = _cli(capsys, "verify-receipt", n["receipt"], "--checkpoint", n["ckpt"], "--public-key", keys[1])
    assert code == 0 and out.startswith("Signature OK") and "holds exactly the weights" in out
    torch.save(n["model"].state_dict(), n["tmp"] / "weights.pt")
    code, out, _ = _cli(capsys, "verify-receipt", n["receipt"], "--checkpoint", n["tmp"] / "weights.pt",
                        "--public-key", keys[1])
    assert code == 0 and "holds exactly the weights" in out
    receipt = read_receipt(n["receipt"])
    assert receipt["output_checkpoint"] is None  # the weights digest binds the file
    # BatchNorm buffers are weights too: the digest covers running stats and counters
    assert receipt["weights"]["num_tensors"] == len(n["model"].state_dict())
    assert any("running_var" in k for k in n["model"].state_dict())


def test_a_checkpoint_with_one_changed_weight_fails(natural, keys, capsys):
    n = natural
    state = torch.load(n["ckpt"], weights_only=True)
    name = "backbone.1.weight"
    state["state_dict"][name][0, 0] += 1e-4
    torch.save(state, n["tmp"] / "edited.ckpt")
    before = _files(n["tmp"])
    code, out, err = _cli(capsys, "verify-receipt", n["receipt"], "--checkpoint", n["tmp"] / "edited.ckpt",
                          "--public-key", keys[1])
    assert code == 1 and not out
    assert "MISMATCH" in err and "same tensor count and sizes, different values" in err
    assert _files(n["tmp"]) == before


def test_a_checkpoint_that_needs_unpickling_is_refused_in_one_line(natural, capsys):
    n = natural
    torch.save({"state_dict": n["model"].state_dict(), "extra": np.arange(3)}, n["tmp"] / "pickled.ckpt")
    code, out, err = _cli(capsys, "verify-receipt", n["receipt"], "--checkpoint", n["tmp"] / "pickled.ckpt")
    assert code == 2 and not out and len(err.strip().splitlines()) == 1
    assert "cannot be loaded with torch.load(weights_only=True)" in err and "torch.save(model.state_dict()" in err


def test_the_receipt_carries_the_audit_callbacks_kept_verdict(natural, tmp_path):
    from lightly_unlearn.audits.verdict import Verdict

    n = natural
    receipt = read_receipt(n["receipt"])
    assert receipt["audits"]["verdict"] == n["audit"].verdict.line
    kept = n["audit"].verdict
    try:  # the receipt reads the verdict the AuditCallback kept; it does not assess again
        n["audit"].verdict = Verdict(warnings=[{"code": "x", "message": "kept"}], line="KEPT VERDICT")
        written = ReceiptCallback(path=tmp_path / "r.json", audit=n["audit"]).write(n["trainer"])
    finally:
        n["audit"].verdict = kept
    again = read_receipt(written)
    assert again["audits"]["verdict"] == "KEPT VERDICT" and again["audits"]["warnings"][0]["code"] == "x"


def test_momentum_copies_synced_at_fit_end_are_in_the_digest(tmp_path, capsys):
    torch.manual_seed(0)
    model = make_moco("pl")()
    dm = ForgetRetainDataModule(digits_dataset(24), [3], tiny_transform(), batch_size=8)
    cb = ReceiptCallback()
    trainer = pl.Trainer(**trainer_kwargs(tmp_path / "run"), callbacks=[UnlearnCallback("ac"), cb])
    trainer.fit(model, datamodule=dm)
    state = model.state_dict()
    assert torch.equal(state["backbone_momentum.1.weight"], state["backbone.1.weight"])  # synced
    assert "criterion.bank" not in str(list(state))  # the memory bank is not persistent: not hashed
    assert cb.weights["sha256"] == state_dict_sha256(state)
    trainer.save_checkpoint(tmp_path / "moco.ckpt")
    assert _cli(capsys, "verify-receipt", cb.written, "--checkpoint", tmp_path / "moco.ckpt")[0] == 0


def test_write_refuses_a_checkpoint_of_other_weights(natural, tmp_path):
    n = natural
    other = make_simclr("L")()
    torch.save(other.state_dict(), tmp_path / "other.pt")
    with pytest.raises(ConfigurationError, match="does not hold the weights this unlearning run ended with"):
        ReceiptCallback(path=tmp_path / "r.json").write(n["trainer"], tmp_path / "other.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.pt"]


# -- the signature covers every field -------------------------------------------------------------
def _leaves(obj, path=()):
    if isinstance(obj, dict) and obj:
        for k, v in obj.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(obj, list) and obj:
        for i, v in enumerate(obj):
            yield from _leaves(v, (*path, i))
    else:
        yield path


def _edited(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str) and value:
        return ("0" if value[0] != "0" else "1") + value[1:]  # hex stays hex, base64 stays base64
    if isinstance(value, list):
        return ["x"]
    if isinstance(value, dict):
        return {"x": 1}
    return "x" if value is None else value + "x"


def test_editing_any_signed_field_fails_signature_verification(natural, keys):
    n = natural
    receipt = read_receipt(n["receipt"])
    assert verify_receipt(receipt, n["ckpt"], public_key=keys[1])[0]
    paths = [p for p in _leaves(receipt) if p not in (("receipt_sha256",), ("signature", "value"))]
    assert ("signature", "key_id") in paths and ("weights", "sha256") in paths and len(paths) > 30
    for path in paths:
        forged = copy.deepcopy(receipt)
        parent = forged
        for k in path[:-1]:
            parent = parent[k]
        parent[path[-1]] = _edited(parent[path[-1]])
        forged["receipt_sha256"] = sha256_bytes(_canonical(forged))  # the unkeyed seal recomputed
        try:
            ok, message = verify_receipt(forged, n["ckpt"], public_key=keys[1])
        except ReceiptError:
            continue  # a structural field (format, scheme, ...): malformed, exit 2
        assert not ok and message.startswith("SIGNATURE INVALID"), (path, message)
    # signature.key_id: covered by the signature
    forged = copy.deepcopy(receipt)
    forged["signature"]["key_id"] = "0123456789abcdef"
    forged["receipt_sha256"] = sha256_bytes(_canonical(forged))
    ok, message = verify_receipt(forged, n["ckpt"], public_key=keys[1])
    assert not ok and "SIGNATURE INVALID" in message
    # without re-sealing, any edit already breaks the unkeyed seal
    forged["receipt_sha256"] = receipt["receipt_sha256"]
    assert "modified after it was written" in verify_receipt(forged, n["ckpt"], public_key=keys[1])[1]


def test_format_1_receipts_still_verify_their_file_and_say_so(tmp_path, keys, capsys):
    """Receipts written before format /2: one file's SHA-256; signature.key_id unsigned."""
    import base64

    ckpt = tmp_path / "out.ckpt"
    torch.save({"state_dict": {"w": torch.ones(2)}}, ckpt)
    old = {"format": FORMAT_V1, "method": "ac", "hyperparameters": {},
           "forget_set": {"sha256": "0" * 64, "hash_of": "positions", "num_forget": 1, "num_samples": 4},
           "input_checkpoint": None, "output_checkpoint": file_record(ckpt), "audits": None,
           "training": {}, "versions": {}, "started_at": None, "finished_at": "2025-01-01T00:00:00+00:00"}
    old["receipt_sha256"] = sha256_bytes(_canonical(old))
    key = load_signing_key(keys[0])
    old["signature"] = {"algorithm": "ed25519", "key_id": key_id(key.public_key()),
                        "public_key": base64.b64encode(b"\0" * 32).decode(),
                        "value": base64.b64encode(key.sign(_canonical(old))).decode()}
    path = write_receipt(tmp_path / "old.json", old)
    code, out, _ = _cli(capsys, "verify-receipt", path, "--checkpoint", ckpt, "--public-key", keys[1])
    assert code == 0 and "signature.key_id is not covered by the signature" in out
    torch.save({"w": torch.ones(2)}, tmp_path / "same_weights.pt")  # /1 binds bytes, not weights
    code, _, err = _cli(capsys, "verify-receipt", path, "--checkpoint", tmp_path / "same_weights.pt")
    assert code == 1 and "binds that one file's bytes only" in err
    code, out, err = _cli(capsys, "verify-deletion", path, "--proof", path, "--file", ckpt)
    assert code == 2 and not out and "commits to forget positions, not to content" in err


# -- strict, capped receipt parsing ---------------------------------------------------------------
def _feed_fifo(fifo, data):
    def write():
        try:
            with open(fifo, "wb") as f:
                for i in range(0, len(data), 1 << 20):
                    f.write(data[i : i + (1 << 20)])
        except BrokenPipeError:
            pass  # the reader stopped at the cap

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize(
    "case, message",
    [
        ("overflow", "the number 1e400 is not finite"),
        ("nan", "NaN is not valid JSON"),
        ("infinity", "-Infinity is not valid JSON"),
        ("nested_200k", "nested more than 64 levels"),
        ("nested_500", "nested more than 64 levels"),
        ("large_file", f"larger than {MAX_RECEIPT_BYTES} bytes"),
        ("large_fifo", f"larger than {MAX_RECEIPT_BYTES} bytes"),
        ("large_stdin", f"larger than {MAX_RECEIPT_BYTES} bytes"),
        ("not_utf8", "not UTF-8"),
    ],
)
def test_malformed_receipt_inputs_exit_2_in_one_line(natural, tmp_path, monkeypatch, capsys, case, message):
    import io
    import sys

    text = natural["receipt"].read_text()
    arg, thread = tmp_path / "bad.json", None
    if case == "overflow":
        arg.write_text(text.replace('"num_forget": 5', '"num_forget": 1e400'))
    elif case == "nan":
        arg.write_text(text.replace('"num_forget": 5', '"num_forget": NaN'))
    elif case == "infinity":
        arg.write_text(text.replace('"num_forget": 5', '"num_forget": -Infinity'))
    elif case == "nested_200k":
        arg.write_text("[" * 200_000 + "]" * 200_000)
    elif case == "nested_500":
        arg.write_text(text[:-2] + ', "x": ' + "[" * 500 + "]" * 500 + "}")
    elif case == "large_file":
        with open(arg, "wb") as f:
            f.truncate(MAX_RECEIPT_BYTES + 1)
    elif case == "large_fifo":
        arg = tmp_path / "pipe"
        os.mkfifo(arg)
        thread = _feed_fifo(arg, b" " * (MAX_RECEIPT_BYTES + 2))
    elif case == "large_stdin":
        arg = "-"
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b" " * (MAX_RECEIPT_BYTES + 5))))
    elif case == "not_utf8":
        arg.write_bytes(text.encode("utf-16"))
    # the unedited receipt is strict JSON holding the value the edits replace, so the error comes
    # from the edit (a literal "NaN" may occur inside the signature's base64 by chance)
    assert text.count('"num_forget": 5') == 1 and loads_strict_json(text.encode())
    before = _files(tmp_path)
    code, out, err = _cli(capsys, "verify-receipt", arg, "--checkpoint", natural["ckpt"])
    if thread is not None:
        thread.join(timeout=10)
    assert code == 2 and not out, err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert _files(tmp_path) == before


def test_a_receipt_from_stdin_verifies(natural, monkeypatch, capsys):
    import io
    import sys

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(natural["receipt"].read_bytes())))
    code, out, _ = _cli(capsys, "verify-receipt", "-", "--checkpoint", natural["ckpt"])
    assert code == 0 and "holds exactly the weights" in out


# -- the Merkle commitment --------------------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 9, 33])
def test_each_proof_leads_to_the_root_for_its_item_only(n):
    hashes = [hashlib.sha256(bytes([i])).digest() for i in range(n)]
    root, proofs = forget_set_commitment(hashes)
    assert len({p["salt"] for p in proofs}) == n
    for i, proof in enumerate(proofs):
        assert proof["root"] == root and proof_root(proof, hashes[i]) == root
        assert len(proof["path"]) <= max(1, (n - 1).bit_length())
        for j in range(n):
            if j != i:
                assert proof_root(proof, hashes[j]) != root
        for k in range(len(proof["path"])):  # a tampered path: another sibling, or another side
            side, sibling = proof["path"][k]
            for step in ([side, ("0" if sibling[0] != "0" else "1") + sibling[1:]],
                         ["L" if side == "R" else "R", sibling]):
                tampered = copy.deepcopy(proof)
                tampered["path"][k] = step
                assert proof_root(tampered, hashes[i]) != root
    assert forget_set_commitment(hashes)[0] != root  # fresh salts: the root reveals no item hash
    assert _leaf(b"a" * 32, b"b" * 32) != _node(b"a" * 32, b"b" * 32)  # leaves never pass as nodes


# -- deletion proofs for files --------------------------------------------------------------------
def _image_folder(folder):
    names = []
    for i, (image, _) in enumerate(digits_dataset(20)):
        name = f"sub/{i:02d}.png" if i % 4 == 0 else f"{i:02d}.png"
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        image.save(folder / name)
        names.append(name)
    return names


def _fit_folder(tmp, data, forget_names, key=None, **receipt_kw):
    tmp.mkdir(exist_ok=True)
    (tmp / "forget.txt").write_text("\n".join(forget_names) + "\n")
    dm = ImageFolderDataModule(str(data), str(tmp / "forget.txt"), transform=tiny_transform(), batch_size=8)
    cb = ReceiptCallback(signing_key=key, **receipt_kw)
    trainer = L.Trainer(**trainer_kwargs(tmp / "run"), callbacks=[UnlearnCallback("finetune"), cb])
    torch.manual_seed(0)
    trainer.fit(make_simclr("L")(), datamodule=dm)
    return cb


@pytest.fixture(scope="module")
def folder_runs(tmp_path_factory, keys):
    """Two runs on a folder of PNGs: A forgets five files (two in a subfolder), B one."""
    tmp = tmp_path_factory.mktemp("folder")
    data = tmp / "images"
    names = _image_folder(data)
    forget = [names[0], names[3], names[4], names[7], names[11]]
    a = _fit_folder(tmp / "a", data, forget, keys[0])
    b = _fit_folder(tmp / "b", data, [names[3]], keys[0])
    owner = tmp / "owner"  # the data owner's own copies
    owner.mkdir()
    for name in names:
        shutil.copy(data / name, owner / name.replace("/", "_"))
    return dict(tmp=tmp, data=data, names=names, forget=forget, a=a, b=b, owner=owner)


def test_proofs_are_written_beside_the_receipt_with_the_files_names(folder_runs):
    r = folder_runs
    proofs = r["a"].written.parent / "proofs"
    assert r["a"].proofs_written == proofs
    assert sorted(str(p.relative_to(proofs)) for p in proofs.rglob("*.json")) == sorted(
        f"{n}.proof.json" for n in r["forget"])
    receipt = read_receipt(r["a"].written)
    assert receipt["forget_set"]["commitment"]["content"] == "file"
    assert receipt["forget_set"]["commitment"]["num_items"] == 5


def test_the_receipt_and_proofs_reveal_no_items_hash(folder_runs):
    r = folder_runs
    texts = [r["a"].written.read_text()] + [p.read_text() for p in (r["a"].written.parent / "proofs").rglob("*.json")]
    for name in r["names"]:
        digest = sha256_file(r["data"] / name)
        assert not any(digest in t for t in texts), name


def _verify(capsys, r, receipt, proof_name, file, *extra):
    proof = receipt.parent / "proofs" / f"{proof_name}.proof.json"
    before = _files(r["tmp"])
    result = _cli(capsys, "verify-deletion", receipt, "--proof", proof, "--file", file, *extra)
    assert _files(r["tmp"]) == before  # nothing written, nothing changed
    return result


def test_a_data_owner_verifies_their_file(folder_runs, keys, capsys):
    r = folder_runs
    receipt = r["a"].written
    for name in r["forget"]:
        code, out, _ = _verify(capsys, r, receipt, name, r["owner"] / name.replace("/", "_"), "--public-key", keys[1])
        assert code == 0 and out.startswith("Signature OK") and f"forget item {name!r}" in out
        assert "committed to unlearning it" in out and "audits' claim" in out
    code, out, _ = _verify(capsys, r, receipt, r["forget"][0], r["owner"] / r["forget"][0].replace("/", "_"))
    assert code == 0 and out.startswith("UNSIGNED")  # no --public-key: said first


def test_another_file_an_edited_byte_another_receipt_or_a_tampered_proof_fail(folder_runs, keys, capsys):
    r = folder_runs
    receipt, name = r["a"].written, r["forget"][1]
    own = r["owner"] / name.replace("/", "_")
    other = r["owner"] / r["names"][1]  # not forgotten
    code, _, err = _verify(capsys, r, receipt, name, other, "--public-key", keys[1])
    assert code == 1 and "NOT COMMITTED" in err and "another file, the file was edited" in err
    edited = r["tmp"] / "edited.png"
    data = bytearray(own.read_bytes())
    data[-1] ^= 1
    edited.write_bytes(bytes(data))
    code, _, err = _verify(capsys, r, receipt, name, edited, "--public-key", keys[1])
    assert code == 1 and "NOT COMMITTED" in err
    # B's proof for the same file, checked against A's receipt
    proof_b = r["b"].written.parent / "proofs" / f"{name}.proof.json"
    code, _, err = _cli(capsys, "verify-deletion", receipt, "--proof", proof_b, "--file", own, "--public-key", keys[1])
    assert code == 1 and "This proof belongs to another receipt" in err
    # a tampered path or salt
    proof = json.loads((receipt.parent / "proofs" / f"{name}.proof.json").read_text())
    for field, value in (("path", [[s, ("0" if h[0] != "0" else "1") + h[1:]] for s, h in proof["path"]]),
                         ("salt", "00" + proof["salt"][2:])):
        (r["tmp"] / "t.proof.json").write_text(json.dumps({**proof, field: value}))
        code, _, err = _cli(capsys, "verify-deletion", receipt, "--proof", r["tmp"] / "t.proof.json",
                            "--file", own, "--public-key", keys[1])
        (r["tmp"] / "t.proof.json").unlink()
        assert code == 1 and "NOT COMMITTED" in err, field
    # another signer's public key
    _, other_pub = generate_signing_key(r["tmp"] / "other_keys")
    code, _, err = _verify(capsys, r, receipt, name, own, "--public-key", other_pub)
    assert code == 1 and "SIGNATURE INVALID" in err


@pytest.mark.parametrize(
    "proof_text, message",
    [
        ("{not json", "not a deletion proof"),
        ('{"format": "something else"}', "not a deletion proof"),
        (None, "salt must be 64 hex digits"),
        ("[" * 100_000 + "]" * 100_000, "nested more than"),
    ],
)
def test_malformed_proof_or_missing_file_exits_2_naming_it(folder_runs, capsys, proof_text, message):
    r = folder_runs
    receipt, name = r["a"].written, r["forget"][0]
    good = receipt.parent / "proofs" / f"{name}.proof.json"
    bad = r["tmp"] / "bad.proof.json"
    bad.write_text(proof_text if proof_text is not None else json.dumps({**json.loads(good.read_text()), "salt": "zz"}))
    before = _files(r["tmp"])
    code, out, err = _cli(capsys, "verify-deletion", receipt, "--proof", bad, "--file", r["owner"] / name.replace("/", "_"))
    bad.unlink()
    assert code == 2 and not out and message in err and str(bad) in err and len(err.strip().splitlines()) == 1
    before.pop("bad.proof.json")
    assert _files(r["tmp"]) == before
    code, out, err = _cli(capsys, "verify-deletion", receipt, "--proof", good, "--file", r["tmp"] / "missing.png")
    assert code == 2 and "missing.png: no such file" in err and len(err.strip().splitlines()) == 1


def test_a_commitment_made_before_user_code_catches_a_changed_forget_file(tmp_path):
    data = tmp_path / "images"
    names = _image_folder(data)
    commitment = commit_files(data, [names[2], names[4]])  # as `lightly-unlearn unlearn` does first
    (data / names[4]).write_bytes((data / names[2]).read_bytes())  # user code replaced an image
    before = _files(tmp_path)
    with pytest.raises(ConfigurationError, match=r"the content of \['sub/04.png'\] changed after it was committed"):
        _fit_folder(tmp_path, data, [names[2], names[4]], forget_commitment=commitment)
    after = _files(tmp_path)
    after.pop("forget.txt")
    assert after == before and not (tmp_path / "run").exists()


# -- other dataset kinds ------------------------------------------------------------------------------
def test_torchvision_and_lightly_folders_are_committed_by_file_bytes(tmp_path):
    from lightly.data import LightlyDataset
    from torchvision.datasets import ImageFolder as TVImageFolder

    data = tmp_path / "classes"
    for i, (image, label) in enumerate(digits_dataset(6)):
        (data / str(label)).mkdir(parents=True, exist_ok=True)
        image.save(data / str(label) / f"{i}.png")
    for dataset in (TVImageFolder(str(data)), LightlyDataset(str(data)),
                    torch.utils.data.Subset(TVImageFolder(str(data)), [5, 4, 3, 2, 1, 0])):
        commitment, why = commit_forget_set(dataset, [0, 2])
        assert why is None and commitment.kind == "file", type(dataset)
        for name, proof in zip(commitment.names, commitment.proofs):
            assert (data / name).is_file()
            assert proof_root(proof, hashlib.sha256((data / name).read_bytes()).digest()) == commitment.root


def test_tensor_items_are_committed_by_dtype_shape_and_values(tmp_path):
    items = [(torch.full((3, 8, 8), float(i)), i) for i in range(6)]
    commitment, why = commit_forget_set(items, [1, 4])
    assert why is None and commitment.kind == "tensor" and commitment.names == ["item-1", "item-4"]
    receipt = build_receipt(method="ft", hyperparameters={}, weights=weights_record({"w": torch.ones(1)}),
                            num_forget=2, num_samples=6, forget_commitment=commitment)
    np.save(tmp_path / "mine.npy", items[4][0].numpy())
    torch.save(items[4][0], tmp_path / "mine.pt")
    np.save(tmp_path / "as_double.npy", items[4][0].numpy().astype(np.float64))
    proof = commitment.proofs[1]
    assert verify_deletion(receipt, proof, tmp_path / "mine.npy")[0]
    assert verify_deletion(receipt, proof, tmp_path / "mine.pt")[0]
    ok, message = verify_deletion(receipt, proof, tmp_path / "as_double.npy")
    assert not ok and "NOT COMMITTED" in message  # dtype is part of the content
    with pytest.raises(ConfigurationError, match="neither a .npy array nor a .pt tensor"):
        verify_deletion(receipt, proof, _text_file(tmp_path))


def _text_file(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text("not a tensor")
    return path


class Box:
    """An item that is neither a file, an image nor a tensor."""

    def __init__(self, image):
        self.image = image


def test_items_without_recomputable_content_get_no_proofs_and_the_receipt_says_why(tmp_path, capsys):
    base = tiny_transform()
    items = [(Box(image), label) for image, label in digits_dataset(24)]
    dm = ForgetRetainDataModule(items, [2, 7], lambda box: base(box.image), batch_size=8)
    cb = ReceiptCallback()
    trainer = L.Trainer(**trainer_kwargs(tmp_path / "run"), callbacks=[UnlearnCallback("finetune"), cb])
    trainer.fit(make_simclr("L")(), datamodule=dm)
    receipt = read_receipt(cb.written)
    assert receipt["forget_set"]["commitment"] is None
    assert "its items are Box, not an image or a tensor" in receipt["forget_set"]["commitment_missing"]
    assert not (tmp_path / "run" / "proofs").exists() and cb.proofs_written is None
    proof = forget_set_commitment([b"\0" * 32])[1][0]
    ok, message = verify_deletion(receipt, proof, _text_file(tmp_path))
    assert not ok and "commits to no forget-set content" in message


# -- writing proofs ---------------------------------------------------------------------------------
def test_write_proofs_is_all_or_nothing_and_never_overwrites_other_files(tmp_path, monkeypatch):
    import lightly_unlearn.forget_commitment as fc

    root, proofs = forget_set_commitment([b"\1" * 32, b"\2" * 32, b"\3" * 32])
    names = ["a.png", "sub/b.png", "c.png"]
    calls = []

    def failing(path, payload):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return original(path, payload)

    original = fc.atomic_write_json
    monkeypatch.setattr(fc, "atomic_write_json", failing)
    with pytest.raises(OSError, match="No space left"):
        write_proofs(tmp_path, proofs, names)
    assert list(tmp_path.iterdir()) == []  # no proofs folder, no temporary left
    monkeypatch.setattr(fc, "atomic_write_json", original)
    folder = write_proofs(tmp_path, proofs, names)
    assert json.loads((folder / "sub" / "b.png.proof.json").read_text())["item"] == "sub/b.png"
    with pytest.raises(FileExistsError):
        write_proofs(tmp_path, proofs, names)  # an existing folder is replaced only when asked
    root2, proofs2 = forget_set_commitment([b"\4" * 32])
    write_proofs(tmp_path, proofs2, ["d.png"], replace=True)  # an earlier run's proofs: replaced
    assert sorted(p.name for p in folder.rglob("*.json")) == ["d.png.proof.json"]
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        write_proofs(tmp_path, proofs2, ["d.png"], replace=True)
    assert (folder / "notes.txt").read_text() == "mine"
    with pytest.raises(ConfigurationError, match="not a relative path"):
        write_proofs(tmp_path / "x", proofs2, ["../d.png"])
    assert [p.name for p in tmp_path.iterdir()] == ["proofs"]


def test_a_proofs_folder_holding_other_files_is_refused_before_training(tmp_path):
    (tmp_path / "run" / "proofs").mkdir(parents=True)
    (tmp_path / "run" / "proofs" / "notes.txt").write_text("mine")
    dm = ForgetRetainDataModule(digits_dataset(24), [1], tiny_transform(), batch_size=8)
    model = make_simclr("L")()
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = L.Trainer(**trainer_kwargs(tmp_path / "run"), callbacks=[UnlearnCallback("ac"), ReceiptCallback()])
    with pytest.raises(ConfigurationError, match="holds files other than \\*.proof.json"):
        trainer.fit(model, datamodule=dm)
    assert _files(tmp_path) == {"run/proofs/notes.txt": sha256_file(tmp_path / "run" / "proofs" / "notes.txt")}
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())


# -- the command line -------------------------------------------------------------------------------
@pytest.mark.slow
def test_unlearn_cli_writes_one_proof_per_forget_file(setup, capsys):  # noqa: F811
    s, out = setup, setup["tmp"] / "out"
    assert cli_main(_args(s, out, "--no-audit", "--no-progress")) == 0
    assert f"proofs       {out / 'proofs'}" in capsys.readouterr().out
    forget = [f"img_{i:03d}.png" for i in range(0, 64, 8)]
    assert sorted(p.name for p in (out / "proofs").iterdir()) == [f"{n}.proof.json" for n in forget]
    receipt, proof = out / "unlearning_receipt.json", out / "proofs" / "img_008.png.proof.json"
    code, text, _ = _cli(capsys, "verify-deletion", receipt, "--proof", proof, "--file", s["data"] / "img_008.png")
    assert code == 0 and "forget item 'img_008.png'" in text
    code, _, err = _cli(capsys, "verify-deletion", receipt, "--proof", proof, "--file", s["data"] / "img_009.png")
    assert code == 1 and "NOT COMMITTED" in err
