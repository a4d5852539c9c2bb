"""What the audit reports say: low-FPR numbers, notes only for audits that ran, one audit.json
layout for the callback and the data owner's CLI, and results added after the fit."""

from __future__ import annotations

import json

import pytest
import pytorch_lightning as pl
import torch
from conftest import digits_dataset, make_simclr, tiny_transform, trainer_kwargs

from lightly_unlearn import AuditCallback, ForgetRetainDataModule
from lightly_unlearn.audits.base import AuditResult, MetricInfo
from lightly_unlearn.audits.schema import SCHEMA_VERSION, AuditRecord


def _fit(tmp_path, audits, holdout=120, **kw):
    dm = ForgetRetainDataModule(digits_dataset(160), list(range(0, 160, 16)), tiny_transform(),
                                batch_size=32, holdout=digits_dataset(holdout, offset=400))
    callback = AuditCallback(audits=audits, num_samples=160, num_views=2, verbose=False, **kw)
    torch.manual_seed(0)
    trainer = pl.Trainer(**trainer_kwargs(tmp_path, callbacks=[callback], default_root_dir=str(tmp_path)))
    trainer.fit(make_simclr("pl")(), datamodule=dm)
    return trainer, callback, tmp_path / "audits"


def test_low_fpr_numbers_are_logged_and_reported(tmp_path):
    trainer, callback, folder = _fit(tmp_path, ("emia", "alignment_matrix"))
    # 120 holdout images (EMIA compares the 150-image retain sample and 120 holdout images):
    # a 1 % FPR is resolved, 0.1 % is not
    for when in ("before", "after"):
        assert f"audit/{when}/forget_holdout_tpr_at_1pct_fpr" in trainer.callback_metrics
        assert f"audit/{when}/forget_holdout_tpr_at_0_1pct_fpr" not in trainer.callback_metrics
    payload = json.loads((folder / "audit.json").read_text())
    tpr = payload["after"]["forget_holdout_tpr_at_1pct_fpr"]
    assert 0 <= tpr <= 100 and tpr * 10 / 100 == pytest.approx(round(tpr * 10 / 100))  # of 10 images
    assert payload["after"]["forget_holdout_tpr_at_0_1pct_fpr"] is None
    report = (folder / "report.md").read_text()
    assert "needs ≥ 1000 holdout samples (has 120)" in report
    # the notes name only audits that ran: EMIA's direction, no linear probe
    assert "judges non-members" in report and "Higher means more forgotten" in report
    assert "Linear probe" not in report and "CMIA" not in report


def test_notes_follow_the_audits(tmp_path):
    _, _, folder = _fit(tmp_path, ("linear_probe", "alignment_matrix"), holdout=40)
    report = (folder / "report.md").read_text()
    assert "Linear probe: logistic regression" in report and "EMIA" not in report


def test_one_audit_json_layout():
    """The callback and ``lightly-unlearn audit`` both write ``AuditRecord.to_json()``."""
    payload = AuditRecord({"audits": []}, after={"forget_holdout_auc": 0.5}).to_json()
    assert payload["schema_version"] == SCHEMA_VERSION
    assert set(payload) == {"schema_version", "when", "config", "verdict", "warnings", "image_names",
                            "holdout_names", "before", "after", "arrays", "arrays_before", "history"}
    assert payload["after"]["forget_holdout_tpr_at_1pct_fpr"] is None  # unresolved: null


def test_added_results_join_the_verdict_and_the_files(tmp_path):
    _, callback, folder = _fit(tmp_path, ("emia", "alignment_matrix"), holdout=40)
    relearned = {"relearn_before_forget_holdout_auc": 0.5, "relearn_forget_holdout_auc": 0.9,
                 "relearn_forget_holdout_auc_change": 0.4,
                 "relearn_forget_holdout_auc_change_ci_low": 0.3,
                 "relearn_forget_holdout_auc_change_ci_high": 0.5,
                 "relearn_forget_holdout_auc_ci_low": 0.8, "relearn_forget_holdout_auc_ci_high": 0.95,
                 "relearn_holdout_samples": 40.0, "relearn_epochs": 2.0}
    info = {"relearn_forget_holdout_auc": MetricInfo("AUC after relearning")}
    verdict = callback.add_result("relearn", AuditResult(metrics=relearned), metric_info=info)
    assert verdict is callback.verdict and verdict.codes[0] == "relearned"
    payload = json.loads((folder / "audit.json").read_text())
    assert payload["warnings"][0]["code"] == "relearned"
    assert payload["after"]["relearn_forget_holdout_auc"] == 0.9
    assert payload["after"]["relearn_forget_holdout_tpr_at_1pct_fpr"] is None
    assert payload["history"][-1]["metrics"]["relearn_forget_holdout_auc"] == 0.9
    report = (folder / "report.md").read_text()
    assert "## Relearning test" in report and "RELEARNED" in report
    assert "| AUC (`relearn_forget_holdout_auc`) | 0.5 | 0.9 |" in report
    assert "after 2 retain-only epoch(s)" in report and "needs ≥ 100 holdout samples" in report
    with pytest.raises(RuntimeError, match="after trainer.fit"):
        AuditCallback(audits=("alignment_matrix",)).add_result("relearn", AuditResult())
