"""Same command, same seed: ``lightly-unlearn unlearn`` twice gives bitwise-identical weights
(BatchNorm running statistics included) and identical audit numbers (timestamps aside)."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import write_cli_project

from lightly_unlearn.cli import main


def _unlearn(s, out, model, ckpt, seed="0"):
    argv = [
        "unlearn", "--model", f"{s['code'] / 'tiny_model.py'}:{model}@{ckpt}",
        "--data", str(s["data"]), "--forget", str(s["forget"]), "--holdout", str(s["holdout"]),
        "--out", str(out), "--method", "ac", "--epochs", "2", "--batch-size", "8",
        "--transform", "simclr", "--image-size", "8", "--accelerator", "cpu", "--devices", "1",
        "--audit-samples", "16", "--seed", seed, "--no-progress",
    ]
    assert main(argv) == 0


def _numbers(out):
    """audit.json's and the receipt's audit numbers and the receipt's weights digest, without
    timestamps, paths and the forget commitment (its per-item salts are fresh on every run)."""
    audit = json.loads((out / "audits" / "audit.json").read_text())
    receipt = json.loads((out / "unlearning_receipt.json").read_text())
    forget = {k: v for k, v in receipt["forget_set"].items() if k != "commitment"}
    return audit.get("before"), audit.get("after"), receipt["audits"], receipt["weights"], forget


@pytest.mark.slow
@pytest.mark.parametrize("model", ["TinyBNSimCLR", "TinySimCLR"])
def test_two_identical_runs_give_identical_weights_and_audits(tmp_path, isolated_imports, model, capsys):
    s = write_cli_project(tmp_path, n_data=24, n_holdout=16, forget=range(0, 24, 6))
    ckpt = s["ckpt_bn"] if model == "TinyBNSimCLR" else s["ckpt"]
    _unlearn(s, tmp_path / "a", model, ckpt)
    _unlearn(s, tmp_path / "b", model, ckpt)
    a = torch.load(tmp_path / "a" / "unlearned.ckpt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "b" / "unlearned.ckpt", weights_only=True)["state_dict"]
    original = torch.load(ckpt, weights_only=True)["state_dict"]
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name  # bitwise, running_var included
    if model == "TinyBNSimCLR":
        assert any(k.endswith("running_var") for k in a)
        assert not torch.equal(a["backbone.1.running_var"], original["backbone.1.running_var"])
    numbers = _numbers(tmp_path / "a")
    assert numbers[1]["forget_holdout_auc"] is not None and numbers[1]["forgetting_score"] is not None
    assert numbers == _numbers(tmp_path / "b")
    # the seed matters: another seed gives other weights (the test can fail)
    _unlearn(s, tmp_path / "c", model, ckpt, seed="1")
    c = torch.load(tmp_path / "c" / "unlearned.ckpt", weights_only=True)["state_dict"]
    assert any(not torch.equal(a[k], c[k]) for k in a)
