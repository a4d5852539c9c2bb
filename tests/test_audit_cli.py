"""``lightly-unlearn audit`` end to end on a folder of digit PNGs written by the test."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.metrics import roc_auc_score

from lightly_unlearn.cli import main

MODELS = textwrap.dedent(
    """
    import torch
    from torch import nn

    class Tiny(nn.Module):
        def __init__(self, dim=16):
            super().__init__()
            self.backbone = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, dim), nn.Tanh())
            self.projection_head = nn.Linear(dim, 8)

    torch.manual_seed(0)
    _fixed = Tiny()

    def embed(x):
        return _fixed.backbone(x)

    def constant(x):
        return torch.ones(len(x), 4)

    def scalar(x):
        return x.sum()
    """
)


@pytest.fixture()
def folders(tmp_path, monkeypatch):
    x, _ = load_digits(return_X_y=True)
    images = (x / 16 * 255).astype(np.uint8).reshape(-1, 8, 8)
    for name, rows in (("mine", range(0, 12)), ("holdout", range(500, 510))):
        (tmp_path / name).mkdir()
        for i in rows:
            Image.fromarray(images[i]).save(tmp_path / name / f"{i:04d}.png")
    (tmp_path / "models.py").write_text(MODELS)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def audit(folders, before, after, *extra):
    return main(
        [
            "audit",
            "--before",
            before,
            "--after",
            after,
            "--data",
            str(folders / "mine"),
            "--out",
            str(folders / "out"),
            "--num-views",
            "3",
            "--no-progress",
            *extra,
        ]
    )


def test_cli_end_to_end_checkpoint_vs_function(folders, capsys):
    from models import Tiny  # written by the fixture

    torch.manual_seed(1)
    ckpt = folders / "after.ckpt"
    torch.save({"state_dict": Tiny(dim=16).state_dict(), "hyper_parameters": {"dim": 16}}, ckpt)
    rc = audit(
        folders, "models:embed", f"models:Tiny@{ckpt}", "--holdout", str(folders / "holdout")
    )
    assert rc == 0, capsys.readouterr().err
    out = folders / "out"
    assert {p.name for p in out.iterdir()} == {"gap_matrix.png", "audit.json", "report.md"}
    report = json.loads((out / "audit.json").read_text())
    arrays, arrays_before = report["arrays"], report["arrays_before"]
    gap = np.array(arrays["alignment_matrix"]["gap_matrix"])
    assert gap.shape == (12, 12)
    np.testing.assert_allclose(
        gap,
        np.array(arrays_before["alignment_matrix"]["matrix"]) - np.array(arrays["alignment_matrix"]["matrix"]),
        atol=1e-6,
    )
    fs = np.diag(gap).mean() - gap[~np.eye(12, dtype=bool)].mean()
    assert report["after"]["forgetting_score"] == pytest.approx(fs, abs=1e-5)
    scores = arrays["alignment_scores"]  # the AUC of exactly these per-image scores
    labels = [1] * len(scores["forget"]) + [0] * len(scores["holdout"])
    assert report["after"]["forget_holdout_auc"] == pytest.approx(
        roc_auc_score(labels, scores["forget"] + scores["holdout"])
    )
    # too few never-seen images to resolve a 1 % FPR: null in the file, said so in the report
    assert report["after"]["forget_holdout_tpr_at_1pct_fpr"] is None
    assert "needs ≥ 100 holdout samples" in (out / "report.md").read_text()
    assert "forgetting score FS" in capsys.readouterr().out
    assert "Data owner audit" in (out / "report.md").read_text()


def test_holdout_with_class_subfolders_is_read_like_unlearn(folders, capsys):
    """``audit`` reads the same files as ``unlearn`` (one reader): subfolders, sorted, relative
    names."""
    nested = folders / "nested_holdout"
    for i, image in enumerate(sorted((folders / "holdout").iterdir())):
        (nested / f"class_{i % 2}").mkdir(parents=True, exist_ok=True)
        image.rename(nested / f"class_{i % 2}" / image.name)
    assert audit(folders, "models:embed", "models:embed", "--holdout", str(nested)) == 0, capsys.readouterr().err
    report = json.loads((folders / "out" / "audit.json").read_text())
    from lightly_unlearn.image_folder import image_files

    assert report["config"]["num_holdout"] == 10
    assert report["holdout_names"] == image_files(nested)
    assert report["holdout_names"][0].startswith("class_0/")


def test_same_model_gives_zero_gap(folders):
    assert audit(folders, "models:embed", "models:embed") == 0
    report = json.loads((folders / "out" / "audit.json").read_text())
    assert np.abs(np.array(report["arrays"]["alignment_matrix"]["gap_matrix"])).max() < 1e-6
    assert report["after"]["forgetting_score"] == pytest.approx(0.0, abs=1e-6)
    # the folder holds these reports now: a second audit into it is refused, nothing changes
    first = {p.name: p.read_bytes() for p in (folders / "out").iterdir()}
    assert audit(folders, f"{folders}/models.py:constant", "models:embed") == 2
    assert {p.name: p.read_bytes() for p in (folders / "out").iterdir()} == first
    # file path form of MODEL, and a constant embedding: every entry of A is 1
    again = folders / "again"
    assert audit(folders, f"{folders}/models.py:constant", "models:embed", "--out", str(again)) == 0
    report = json.loads((again / "audit.json").read_text())
    np.testing.assert_allclose(report["arrays_before"]["alignment_matrix"]["matrix"], 1.0, atol=1e-6)


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing", "no such folder"),
        ("unreadable", "cannot read image"),
        ("shape", "returned ()"),
        ("no_module", "cannot import"),
        ("no_ckpt", "does not exist"),
        ("out_is_file", "is not a folder"),
    ],
)
def test_bad_input_exits_non_zero_with_message(folders, capsys, case, message):
    before, after, extra = "models:embed", "models:embed", []
    if case == "missing":
        extra = ["--data", str(folders / "nope")]
    elif case == "unreadable":
        (folders / "mine" / "broken.png").write_bytes(b"not a png")
    elif case == "shape":
        after = "models:scalar"
    elif case == "no_module":
        before = "no_such_pkg.mod:fn"
    elif case == "no_ckpt":
        after = f"models:Tiny@{folders}/missing.ckpt"
    elif case == "out_is_file":
        (folders / "a_file").write_text("")
        extra = ["--out", str(folders / "a_file")]
    assert audit(folders, before, after, *extra) == 2
    err = capsys.readouterr().err
    assert "error:" in err and message in err
    assert not (folders / "out" / "audit.json").exists()


def test_tpr_at_1pct_fpr_with_enough_never_seen_images(folders):
    """100 holdout images resolve a 1 % FPR (not 0.1 %): the number is the share of the owner's
    images scored above the never-seen images' 99 % (inverted-CDF) quantile, from the same scores."""
    from lightly_unlearn.audits.membership import tpr_at_fpr

    x, _ = load_digits(return_X_y=True)
    big = folders / "holdout100"
    big.mkdir()
    for i in range(600, 700):
        Image.fromarray((x[i] / 16 * 255).astype(np.uint8).reshape(8, 8)).save(big / f"{i}.png")
    assert audit(folders, "models:embed", "models:constant", "--holdout", str(big)) == 0
    report = json.loads((folders / "out" / "audit.json").read_text())
    for when in ("before", "after"):
        scores = report["arrays" if when == "after" else "arrays_before"]["alignment_scores"]
        expected = tpr_at_fpr(np.array(scores["forget"]), np.array(scores["holdout"]), 1.0)
        assert report[when]["forget_holdout_tpr_at_1pct_fpr"] == pytest.approx(expected)
        assert report[when]["forget_holdout_tpr_at_0_1pct_fpr"] is None
    text = (folders / "out" / "report.md").read_text()
    assert "`forget_holdout_tpr_at_1pct_fpr`" in text and "needs ≥ 1000 holdout samples (has 100)" in text
