"""The examples run end to end as a user runs them (shortened: 1 + 1 epochs on 200 digits), in
process so the test stays fast and its failures show a traceback."""

import importlib.util
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(script: str):
    spec = importlib.util.spec_from_file_location(f"example_{Path(script).stem}", EXAMPLES / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.parametrize("script", ["simclr_unlearn.py", "moco_unlearn.py", "byol_unlearn.py", "dino_unlearn.py"])
def test_example_runs(tmp_path, capsys, monkeypatch, script):
    monkeypatch.syspath_prepend(str(EXAMPLES))  # the examples import their neighbour `digits`
    out = tmp_path / "out"
    _load(script).main(["--out", str(out), "--pretrain-epochs", "1", "--unlearn-epochs", "1",
                        "--method", "ac", "--samples", "200"])
    stdout = capsys.readouterr().out
    assert (out / "unlearned_ac.ckpt").is_file() and (out / "pretrained.ckpt").is_file()
    assert "Audit report:" in stdout
    reports = list(out.glob("lightning_logs/*/audits/report.md"))
    assert reports and "emia" in reports[0].read_text()
