"""``lightly-unlearn unlearn`` end to end on a folder of PNGs, its input checks, and the fast CLI."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from conftest import write_cli_project

from lightly_unlearn.cli import COMMANDS, SUMMARIES, main
from lightly_unlearn.io import sha256_file


@pytest.fixture
def setup(tmp_path, isolated_imports):
    """A user's model file (+ neighbour), its checkpoint, 64 digit PNGs, 32 holdout PNGs, a list."""
    return write_cli_project(tmp_path)


def _args(s, out, *extra, model="TinySimCLR"):
    return [
        "unlearn", "--model", f"{s['code'] / 'tiny_model.py'}:{model}@{s['ckpt']}",
        "--data", str(s["data"]), "--forget", str(s["forget"]), "--out", str(out),
        "--method", "ac", "--hp", "alpha=1.0", "--epochs", "1", "--batch-size", "16",
        "--transform", "simclr", "--image-size", "8", "--accelerator", "cpu", "--devices", "1",
        *extra,
    ]


@pytest.mark.slow
def test_unlearn_end_to_end(setup, capsys):
    s = setup
    before = {p: sha256_file(p) for p in [s["ckpt"], *sorted(s["data"].iterdir())]}
    out = s["tmp"] / "out"
    rc = main(_args(s, out, "--holdout", str(s["holdout"]), "--no-progress"))
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    for name in ("unlearned.ckpt", "unlearning_receipt.json", "audits/report.md", "audits/audit.json"):
        assert (out / name).is_file(), name
    # the audit names the owner's files (heat map labels, in the matrices' order), not ids
    import json

    audit = json.loads((out / "audits" / "audit.json").read_text())
    assert sorted(audit["image_names"]) == [f"img_{i:03d}.png" for i in range(0, 64, 8)]
    assert set(audit["holdout_names"]) <= {f"img_{i:03d}.png" for i in range(64, 96)}
    # inputs untouched
    assert {p: sha256_file(p) for p in before} == before
    # the user's class loads the output, with changed weights
    sys.path.insert(0, str(s["code"]))
    import tiny_model

    loaded = tiny_model.TinySimCLR.load_from_checkpoint(out / "unlearned.ckpt", weights_only=True)
    original = torch.load(s["ckpt"], weights_only=True)["state_dict"]
    assert not torch.equal(loaded.state_dict()["backbone.1.weight"], original["backbone.1.weight"])
    # receipt verifies against the output, and not against the input
    from lightly_unlearn.receipt import read_receipt, verify_receipt

    receipt = read_receipt(out / "unlearning_receipt.json")
    assert verify_receipt(receipt, out / "unlearned.ckpt")[0]
    assert not verify_receipt(receipt, s["ckpt"])[0]
    assert receipt["input_checkpoint"]["sha256"] == before[s["ckpt"]]
    assert receipt["forget_set"]["num_forget"] == 8
    assert main(["verify-receipt", str(out / "unlearning_receipt.json"),
                 "--checkpoint", str(out / "unlearned.ckpt")]) == 0
    # summary
    for word in ("method       ac", "forgotten    8 of 64 images", "verdict", "receipt", "audit report"):
        assert word in captured.out
    # a second run into the same folder is refused (never overwrite)
    assert main(_args(s, out)) == 2
    assert "earlier run" in capsys.readouterr().err


def _refused(s, capsys, monkeypatch, argv):
    """Run the CLI; fail if any training starts."""
    import lightly_unlearn.cli.unlearn as cli

    def no_training(*a, **k):
        raise AssertionError("training started although the input is bad")

    monkeypatch.setattr(cli, "_train", no_training)
    rc = main(argv)
    return rc, capsys.readouterr().err


def test_unknown_forget_names_exit_2_before_training(setup, capsys, monkeypatch):
    s = setup
    s["forget"].write_text("img_000.png\nnot_there.png\nimg_999.png  # typo\n")
    rc, err = _refused(s, capsys, monkeypatch, _args(s, s["tmp"] / "out"))
    assert rc == 2
    assert "2 name(s)" in err and "'not_there.png'" in err and "'img_999.png'" in err
    assert not (s["tmp"] / "out").exists()


def test_out_inside_data_exit_2(setup, capsys, monkeypatch):
    s = setup
    rc, err = _refused(s, capsys, monkeypatch, _args(s, s["data"] / "unlearned"))
    assert rc == 2 and "inside" in err
    rc, err = _refused(s, capsys, monkeypatch, _args(s, s["ckpt"].parent))
    assert rc == 2 and str(s["ckpt"].parent) in err


def test_bad_method_and_hp_exit_2(setup, capsys, monkeypatch):
    s = setup
    argv = _args(s, s["tmp"] / "out")
    rc, err = _refused(s, capsys, monkeypatch, [*argv, "--hp", "nonsense=3"])
    assert rc == 2 and "nonsense" in err
    argv[argv.index("--method") + 1] = "no_such_method"
    rc, err = _refused(s, capsys, monkeypatch, argv)
    assert rc == 2 and "no_such_method" in err


@pytest.mark.parametrize("bad", ["corrupt", "bomb"])
@pytest.mark.parametrize("folder", ["data", "holdout"])
def test_unreadable_images_exit_2_before_training(setup, capsys, monkeypatch, bad, folder):
    from PIL import Image

    s = setup
    files = sorted(s[folder].iterdir())
    path = files[len(files) // 2]  # in the middle of the folder, not its last file
    if bad == "corrupt":
        path.write_bytes(path.read_bytes()[:40])
    else:
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 16)  # 8x8 digits are 4x over the limit
    argv = _args(s, s["tmp"] / "out", "--holdout", str(s["holdout"]))
    rc, err = _refused(s, capsys, monkeypatch, argv)
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert ("MAX_IMAGE_PIXELS" in err) if bad == "bomb" else ("cannot read image" in err)
    assert not (s["tmp"] / "out").exists()


def test_summary_names_the_public_key_of_a_signed_receipt(setup, capsys):
    s = setup
    assert main(["keygen", "--out", str(s["tmp"] / "keys")]) == 0
    capsys.readouterr()
    key = s["tmp"] / "keys" / "receipt_signing.key"
    rc = main(_args(s, s["tmp"] / "out", "--signing-key", str(key), "--no-audit", "--no-progress"))
    out = capsys.readouterr().out
    assert rc == 0
    check = next(line for line in out.splitlines() if line.strip().startswith("check "))
    assert f"--public-key {key.with_suffix('.pub')}" in check
    command = check.split("check", 1)[1].split()
    assert main(command[1:]) == 0  # the printed command verifies the signed receipt


def test_wrong_class_for_checkpoint_is_one_line(setup, capsys, monkeypatch):
    s = setup
    rc, err = _refused(s, capsys, monkeypatch, _args(s, s["tmp"] / "out", model="Other"))
    assert rc == 2
    message = err.strip().splitlines()
    assert len(message) == 1, err
    assert "2 missing keys (extra.weight, extra.bias)" in err
    assert "the class that wrote this checkpoint?" in err and "tiny_model.py:Other" in err


def test_every_command_has_a_summary_and_help_text():
    assert set(COMMANDS) == set(SUMMARIES)
    import argparse

    for name, module in COMMANDS.items():
        import importlib

        parser = argparse.ArgumentParser()
        sub = parser.add_subparsers()
        cmd = importlib.import_module(module).add_parser(sub) or sub.choices[name]
        for action in cmd._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"{name} {action.option_strings} has no help text"


def test_help_imports_neither_torch_nor_lightning():
    """`lightly-unlearn --help` and `<cmd> --help` stay fast: no torch or Lightning import."""
    code = (
        "import sys; from lightly_unlearn.cli import main\n"
        "for argv in ([], {cmds}):\n"
        "    try: main([*argv, '--help'])\n"
        "    except SystemExit: pass\n"
        "heavy = [m for m in ('torch', 'lightning', 'pytorch_lightning') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    ).format(cmds=", ".join(f"[{c!r}]" for c in COMMANDS))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY []" in out.stdout, out.stdout[-2000:]
    assert "lightly-unlearn unlearn --help" in out.stdout  # the top-level help points to unlearn
    assert "from lightly_unlearn import" in out.stdout  # ... and to the Python API


def _door(s, monkeypatch, capsys, *extra, model="TinySimCLR", file="tiny_model.py", **options):
    """Run the CLI up to training; return what it prepared (training is replaced by a probe)."""
    import lightly_unlearn.cli.unlearn as cli

    seen = {}

    def probe(args, prepared, partial):
        seen.update(prepared)
        raise KeyboardInterrupt  # stop here: nothing trains, nothing is committed

    monkeypatch.setattr(cli, "_train", probe)
    argv = _args(s, s["tmp"] / "out", *extra, model=model)
    argv[argv.index("--model") + 1] = f"{s['code'] / file}:{model}@{s['ckpt']}"
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        i = argv.index(flag)
        argv[i:i + 2] = [] if value is None else [flag, value]
    assert main(argv) == 1
    return seen, capsys.readouterr().err


def _crop_size(transform):
    for view in transform.transforms:
        for step in view.transform.transforms:
            if type(step).__name__ == "RandomResizedCrop":  # torchvision v1 or v2
                return step.size[0]
    raise AssertionError("no RandomResizedCrop")


VIEWS_MODULE = '''
from lightly.transforms import SimCLRTransform
from tiny_model import TinySimCLR

transform = SimCLRTransform(input_size=6)


class WithViews(TinySimCLR):
    pass
'''


def test_explicit_transform_flags_win_over_the_module_transform(setup, monkeypatch, capsys):
    s = setup
    (s["code"] / "user_views.py").write_text(VIEWS_MODULE)
    seen, err = _door(s, monkeypatch, capsys, model="WithViews", file="user_views.py",
                      transform="simclr", image_size="16")
    assert _crop_size(seen["dm"].transform) == 16
    assert "using --transform simclr; user_views.transform is not used" in err
    # without flags, the module's transform object is used
    seen, err = _door(s, monkeypatch, capsys, model="WithViews", file="user_views.py",
                      transform=None, image_size=None)
    assert _crop_size(seen["dm"].transform) == 6


def test_a_function_named_transform_is_never_taken(setup, monkeypatch, capsys):
    s = setup
    (s["code"] / "user_helper.py").write_text(VIEWS_MODULE.replace(
        "transform = SimCLRTransform(input_size=6)", "def transform():\n    return SimCLRTransform(input_size=6)"))
    seen, err = _door(s, monkeypatch, capsys, model="WithViews", file="user_helper.py",
                      transform=None, image_size=None)
    assert "user_helper.transform is a function, not a transform object or class; it is not used" in err
    assert _crop_size(seen["dm"].transform) == 8  # the default: simclr at the first image's height


def test_forget_list_names_any_file_and_reads_utf16(setup, monkeypatch, capsys):
    """A name with leading spaces and ' # ' is written as a JSON string; a UTF-16 list with its
    byte-order mark is decoded; inline comments after whitespace are comments."""
    s = setup
    odd = "  odd # name.png"
    (s["data"] / "img_000.png").rename(s["data"] / odd)
    s["forget"].write_bytes(('"  odd # name.png"  # quoted\nimg_008.png  # request 17\n#img_016.png\n')
                            .encode("utf-16"))
    seen, _ = _door(s, monkeypatch, capsys)
    names = seen["dm"].dataset.names
    assert sorted(names[i] for i in seen["dm"].forget_indices.tolist()) == sorted([odd, "img_008.png"])
