"""The examples run end to end as a user runs them (shortened epochs)."""

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.slow
@pytest.mark.parametrize("script", ["simclr_unlearn.py", "moco_unlearn.py", "byol_unlearn.py", "dino_unlearn.py"])
def test_example_runs(tmp_path, script):
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / script), "--out", str(out), "--pretrain-epochs", "1",
         "--unlearn-epochs", "1", "--method", "ac"],
        capture_output=True, text=True, timeout=300,
        env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "unlearned_ac.ckpt").is_file() and (out / "pretrained.ckpt").is_file()
    assert "Audit report:" in proc.stdout
    reports = list(out.glob("lightning_logs/*/audits/report.md"))
    assert reports and "emia" in reports[0].read_text()
