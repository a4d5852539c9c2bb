"""A ``--model`` file is imported: its top level may only define things, and nothing it does can
change the input checkpoint or make a receipt say "unchanged" about a changed input."""

from __future__ import annotations

import json
import textwrap

import pytest
from conftest import write_cli_project

from lightly_unlearn.cli import main
from lightly_unlearn.errors import ModuleCodeError
from lightly_unlearn.io import sha256_file
from lightly_unlearn.module_code import check_source

ACCEPTED = {
    "docstring_imports_defs": '''
        """A model file."""
        import torch
        from torch import nn

        @torch.no_grad()
        def helper(x):
            return x

        class A(nn.Module):
            pass
    ''',
    "lightly_example_training_under_main": '''
        import pytorch_lightning as pl
        from lightly.transforms import SimCLRTransform

        class SimCLR(pl.LightningModule):
            pass

        model = SimCLR()
        transform = SimCLRTransform(input_size=32)
        trainer = pl.Trainer(max_epochs=10)

        if __name__ == "__main__":
            trainer.fit(model)
            trainer.save_checkpoint("pretrained.ckpt")
    ''',
    "constants_and_augmented": '''
        __all__ = ["A"]
        __all__ += ["B"]
        SIZE: int = 32
        MEAN = (0.5, 0.5, 0.5)
        pass
        ...
    ''',
    "optional_import_and_type_checking": '''
        from typing import TYPE_CHECKING
        try:
            import open_clip
        except (ImportError, ModuleNotFoundError):
            open_clip = None
        if TYPE_CHECKING:
            from torch import Tensor
        import sys
        if sys.version_info >= (3, 11):
            import tomllib
        else:
            tomllib = None
    ''',
    "call_inside_a_lambda_is_not_run": '''
        trainer = object()
        later = lambda: trainer.fit()
    ''',
    "main_guard_written_backwards": '''
        if "__main__" == __name__:
            main()
    ''',
}

REFUSED = {  # name: (source, line, words in the message)
    "training_at_top_level": ('''
        import pytorch_lightning as pl
        model = object()
        trainer = pl.Trainer(max_epochs=10)
        trainer.fit(model)
    ''', 5, "a call on its own line"),
    "seed_call": ("import torch\ntorch.manual_seed(0)\n", 2, "a call on its own line"),
    "result_of_fit_assigned": ('''
        import pytorch_lightning as pl
        trainer = pl.Trainer()
        result = trainer.fit(None)
    ''', 4, "calls a method of `trainer`"),
    "save_of_a_built_model": ('''
        import torch
        model = torch.nn.Linear(2, 2)
        state = model.state_dict()
        done = torch.save(state, "x.ckpt") or model.load_state_dict(state)
    ''', 4, "calls a method of `model`"),
    "for_loop": ("for i in range(3):\n    pass\n", 1, "`for` statement"),
    "with_block": ("with open('x') as f:\n    pass\n", 1, "`with` statement"),
    "sys_exit": ("import sys\nsys.exit(0)\n", 2, "a call on its own line"),
    "raise": ("raise SystemExit(0)\n", 1, "`raise` statement"),
    "if_with_a_call": ("import os\nif os.getenv('X'):\n    import json\n", 2, "condition of this `if` calls"),
    "code_inside_if": ("import sys\nif sys.platform:\n    print('hi')\n", 3, "a call on its own line"),
    "else_of_main_guard": ("if __name__ == '__main__':\n    pass\nelse:\n    run()\n", 4, "a call on its own line"),
    "try_except_exception": ("try:\n    import x\nexcept Exception:\n    pass\n", 1, "`try` block other than"),
    "try_with_code": ("try:\n    setup()\nexcept ImportError:\n    pass\n", 2, "a call on its own line"),
    "syntax_error": ("def f(:\n", 1, "cannot parse it"),
}


@pytest.mark.parametrize("case", list(ACCEPTED))
def test_definitions_are_accepted(case):
    check_source(textwrap.dedent(ACCEPTED[case]), "model.py")


@pytest.mark.parametrize("case", list(REFUSED))
def test_code_at_the_top_level_is_refused_with_file_and_line(case):
    source, line, words = REFUSED[case]
    source = textwrap.dedent(source)
    with pytest.raises(ModuleCodeError) as err:
        check_source(source, "model.py")
    message = str(err.value)
    assert f"model.py line {line}" in message and words in message, message
    if "cannot parse" not in message:
        assert 'if __name__ == "__main__":' in message and "--allow-module-code" in message


# -- through the CLI --------------------------------------------------------------------------
TRAIN_SCRIPT = '''
import torch
from tiny_model import TinySimCLR

CKPT = {ckpt!r}


class Script(TinySimCLR):
    pass

{body}
'''


@pytest.fixture
def project(tmp_path, isolated_imports):
    return write_cli_project(tmp_path, n_data=24, n_holdout=16, forget=range(0, 24, 6))


def _unlearn(s, script_name, *extra, cls="Script"):
    out = s["tmp"] / "out"
    argv = [
        "unlearn", "--model", f"{s['code'] / script_name}:{cls}@{s['ckpt']}",
        "--data", str(s["data"]), "--forget", str(s["forget"]), "--out", str(out),
        "--epochs", "1", "--batch-size", "8", "--transform", "simclr", "--image-size", "8",
        "--accelerator", "cpu", "--devices", "1", "--no-audit", "--no-progress", *extra,
    ]
    return main(argv), out


def _script(s, body, name="user_train.py"):
    (s["code"] / name).write_text(TRAIN_SCRIPT.format(ckpt=str(s["ckpt"]), body=textwrap.dedent(body)))
    return name


def _files(root):
    return {p: sha256_file(p) for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


# what a lightly-style training script does after training: overwrite the checkpoint
RETRAIN_AND_SAVE = '''
model = Script()
torch.save({"state_dict": {k: v + 1 for k, v in model.state_dict().items()}}, CKPT)
'''


def test_training_script_at_top_level_is_refused_and_changes_nothing(project, capsys):
    s = project
    before = _files(s["tmp"])
    name = _script(s, RETRAIN_AND_SAVE)
    rc, out = _unlearn(s, name)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert f"{s['code'] / name} line 13" in err and "torch.save" in err
    assert 'if __name__ == "__main__":' in err and "--allow-module-code" in err
    assert len(err.strip().splitlines()) == 1
    assert sha256_file(s["ckpt"]) == before[s["ckpt"]]
    assert not out.exists()
    assert {p: d for p, d in _files(s["tmp"]).items() if p.name != name} == before


def test_training_moved_under_main_runs_and_the_input_is_unchanged(project, capsys):
    s = project
    digest = sha256_file(s["ckpt"])
    name = _script(s, 'if __name__ == "__main__":\n' + textwrap.indent(RETRAIN_AND_SAVE, "    "))
    rc, out = _unlearn(s, name)
    assert rc == 0, capsys.readouterr().err
    receipt = json.loads((out / "unlearning_receipt.json").read_text())
    assert receipt["input_checkpoint"]["sha256"] == digest == sha256_file(s["ckpt"])
    assert receipt["input_checkpoint"]["unchanged"] is True


def test_opted_in_module_code_that_rewrites_the_input_ends_the_run_without_outputs(project, capsys):
    """--allow-module-code imports the script: it rewrites the checkpoint, the weights still come
    from the bytes read before the import, and the run stops (exit 1) with no receipt."""
    s = project
    digest = sha256_file(s["ckpt"])
    rc, out = _unlearn(s, _script(s, RETRAIN_AND_SAVE), "--allow-module-code")
    err = capsys.readouterr().err
    assert rc == 1, err
    assert "input changed during the run" in err and str(s["ckpt"]) in err and digest[:12] in err
    assert not out.exists() and not list(s["tmp"].glob("out.*"))


def test_input_rewritten_during_training_gives_no_receipt(project, capsys):
    """Code that runs later (a hook of the module) and changes the input: caught before the
    outputs appear."""
    s = project
    name = _script(s, '''
        class Script(TinySimCLR):
            def on_train_end(self):
                with open(CKPT, "ab") as f:
                    f.write(b"x")
    ''')
    rc, out = _unlearn(s, name)
    err = capsys.readouterr().err
    assert rc == 1, err
    assert "input changed during the run" in err and "No outputs were written" in err
    assert not out.exists() and not list(s["tmp"].glob("out.*"))


@pytest.mark.parametrize("body, words", [
    ("import sys\nsys.exit(0)\n", "called sys.exit(0)"),
    ("raise SystemExit(3)\n", "called sys.exit(3)"),
    ("raise RuntimeError('no GPU here')\n", "RuntimeError: no GPU here"),
])
def test_exit_or_error_while_importing_is_exit_2_naming_the_file(project, capsys, body, words):
    s = project
    name = _script(s, body)
    rc, out = _unlearn(s, name, "--allow-module-code")
    err = capsys.readouterr().err
    assert rc == 2, err
    assert words in err and name in err
    assert not out.exists()


def test_package_module_is_checked_without_importing_it(project, capsys, monkeypatch):
    """``pkg.module:Class``: the package's ``__init__`` and the module are read, not run."""
    s = project
    pkg = s["code"] / "user_pkg"
    pkg.mkdir()
    marker = s["tmp"] / "ran.txt"
    (pkg / "__init__.py").write_text(f"import pathlib\npathlib.Path({str(marker)!r}).write_text('x')\n")
    (pkg / "model.py").write_text("from tiny_model import TinySimCLR\n")
    monkeypatch.syspath_prepend(str(s["code"]))
    monkeypatch.chdir(s["tmp"])
    argv = ["unlearn", "--model", f"user_pkg.model:TinySimCLR@{s['ckpt']}", "--data", str(s["data"]),
            "--forget", str(s["forget"]), "--out", str(s["tmp"] / "out"), "--no-audit"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{pkg / '__init__.py'} line 2" in err
    assert not marker.exists()
