"""``lightly-unlearn unlearn --relearn-epochs K``: the relearning test joins the audit and changes
nothing the user owns or receives."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from test_cli_unlearn import _args, _refused, setup  # noqa: F401  (a fixture)

from lightly_unlearn.cli import main
from lightly_unlearn.io import sha256_file


def _run(s, out, *extra):
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    return main(_args(s, out, "--holdout", str(s["holdout"]), "--no-progress", *extra))


@pytest.mark.slow
def test_relearn_epochs_adds_the_test_and_touches_nothing(setup, capsys):  # noqa: F811
    s = setup
    inputs = [s["ckpt"], s["forget"], *sorted(s["data"].iterdir()), *sorted(s["holdout"].iterdir())]
    before = {p: sha256_file(p) for p in inputs}
    plain, tested = s["tmp"] / "plain", s["tmp"] / "tested"
    assert _run(s, plain) == 0
    assert _run(s, tested, "--relearn-epochs", "1") == 0, capsys.readouterr().err
    # inputs untouched, and the unlearned weights are the same with and without the test
    assert {p: sha256_file(p) for p in inputs} == before
    weights = [torch.load(o / "unlearned.ckpt", weights_only=True)["state_dict"] for o in (plain, tested)]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    # the copy is never saved: the same files in both folders
    files = [sorted(str(p.relative_to(o)) for p in o.rglob("*")) for o in (plain, tested)]
    assert files[0] == files[1]
    # the receipt, written after the test, still commits to the checkpoint as saved
    from lightly_unlearn.receipt import read_receipt, verify_receipt

    assert verify_receipt(read_receipt(tested / "unlearning_receipt.json"), tested / "unlearned.ckpt")[0]
    audit = json.loads((tested / "audits" / "audit.json").read_text())
    after = audit["after"]
    assert 0 <= after["relearn_forget_holdout_auc"] <= 1 and after["relearn_epochs"] == 1.0
    assert after["relearn_forget_holdout_tpr_at_1pct_fpr"] is None  # 32 holdout images
    assert after["relearn_holdout_samples"] == 32 and after["relearn_forget_samples"] == 8
    assert "relearn_forget_holdout_auc" not in json.loads((plain / "audits" / "audit.json").read_text())["after"]
    report = (tested / "audits" / "report.md").read_text()
    assert "## Relearning test" in report and "after 1 retain-only epoch(s)" in report
    assert "Linear probe" not in report  # the CLI runs no probe, and the report does not name one
    receipt = json.loads((tested / "unlearning_receipt.json").read_text())
    assert "relearn_forget_holdout_auc" in json.dumps(receipt)


def test_relearn_epochs_needs_a_holdout(setup, capsys, monkeypatch):  # noqa: F811
    s = setup
    rc, err = _refused(s, capsys, monkeypatch, _args(s, s["tmp"] / "out", "--relearn-epochs", "2"))
    assert rc == 2 and "--relearn-epochs" in err and "--holdout" in err
    assert not (s["tmp"] / "out").exists()
    argv = _args(s, s["tmp"] / "out", "--relearn-epochs", "0")
    with pytest.raises(SystemExit):
        main(argv)
    assert "at least 1" in capsys.readouterr().err
