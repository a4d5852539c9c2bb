"""A deliberately collapsing unlearning run on lightly's SimCLR example (scaled down): the
AuditCallback report, the receipt and ``lightly-unlearn audit`` all carry ``collapse`` and none
says "consistent with forgetting"; a model without membership signal gets
``no_membership_signal``. Also: callback_metrics, the progress/summary line, num_workers."""

from __future__ import annotations

import json

import lightning.pytorch as L
import numpy as np
import pytest
import torch
from conftest import digits_dataset, make_simclr, tiny_transform, trainer_kwargs
from PIL import Image

from lightly_unlearn import ForgetRetainDataModule, UnlearnCallback
from lightly_unlearn.audits.features import extract_features
from lightly_unlearn.callbacks.audit import AuditCallback
from lightly_unlearn.callbacks.receipt import ReceiptCallback
from lightly_unlearn.cli import main


class Collapse(L.Callback):
    """Deliberately break the encoder at the end of training: a huge bias after the backbone's
    last linear layer makes every post-ReLU feature vector (almost) the same."""

    def on_train_end(self, trainer, pl_module):
        with torch.no_grad():
            pl_module.backbone[1].bias.fill_(1e4)


def _dm():
    return ForgetRetainDataModule(digits_dataset(48), range(0, 48, 6), tiny_transform(),
                                  batch_size=16, holdout=digits_dataset(40, offset=500))  # fmt: skip


def _fit(tmp_path, extra, **kw):
    torch.manual_seed(0)
    model = make_simclr("L")()
    audit = AuditCallback(num_samples=40, num_views=3, **kw)
    receipt = ReceiptCallback()
    # the breaking callback runs its on_train_end before the audit's
    trainer = L.Trainer(**trainer_kwargs(tmp_path, logger=True),
                        callbacks=[UnlearnCallback("ft"), *extra, audit, receipt])  # fmt: skip
    trainer.fit(model, datamodule=_dm())
    return trainer, audit, receipt, model


def test_collapsing_run_is_called_collapse_everywhere(tmp_path, capsys):
    trainer, audit, receipt, model = _fit(tmp_path / "run", [Collapse()])
    assert audit.verdict.codes[0] == "collapse"
    out = capsys.readouterr().out
    assert "Audit (after): COLLAPSE" in out and str(audit.report_path) in out
    folder = audit.report_path.parent
    report = json.loads((folder / "audit.json").read_text())
    assert report["warnings"][0]["code"] == "collapse" and report["verdict"].startswith("COLLAPSE")
    md = (folder / "report.md").read_text()
    assert "`collapse`" in md
    receipt_json = json.loads(receipt.written.read_text())
    assert receipt_json["audits"]["warnings"][0]["code"] == "collapse"
    for text in (out, md, json.dumps(report), json.dumps(receipt_json)):
        assert "consistent with forgetting" not in text
    # callback_metrics carry audit/before/* and audit/after/* as tensors
    metrics = trainer.callback_metrics
    assert isinstance(metrics["audit/after/emia"], torch.Tensor)
    assert float(metrics["audit/after/cross_cosine_holdout"]) > 0.99
    assert "audit/before/forget_holdout_auc" in metrics



def test_cli_reports_collapse(tmp_path, capsys, monkeypatch):
    import textwrap

    (tmp_path / "collapse_models.py").write_text(textwrap.dedent("""
        import torch
        from torch import nn
        torch.manual_seed(0)
        net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 32), nn.ReLU())
        def before(x):
            return net(x)
        def collapsed(x):  # a constant direction plus tiny noise
            return torch.ones(len(x), 32) + 1e-4 * net(x)
    """))  # fmt: skip
    monkeypatch.syspath_prepend(str(tmp_path))
    for name, offset in (("mine", 0), ("never", 500)):
        (tmp_path / name).mkdir()
        for i, (image, _) in enumerate(digits_dataset(10, offset=offset)):
            image.save(tmp_path / name / f"{name}_{i:02d}.png")
    rc = main(["audit", "--before", "collapse_models:before", "--after", "collapse_models:collapsed",
               "--data", str(tmp_path / "mine"), "--holdout", str(tmp_path / "never"),
               "--out", str(tmp_path / "out"), "--num-views", "3", "--no-progress"])  # fmt: skip
    assert rc == 0
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "out" / "audit.json").read_text())
    md = (tmp_path / "out" / "report.md").read_text()
    assert report["warnings"][0]["code"] == "collapse" and "COLLAPSE" in out
    assert report["image_names"][0] == "mine_00.png"
    for text in (out, md, json.dumps(report)):
        assert "consistent with forgetting" not in text
    # the same model before and after on a random net: no membership signal to remove
    rc = main(["audit", "--before", "collapse_models:before", "--after", "collapse_models:before",
               "--data", str(tmp_path / "mine"), "--holdout", str(tmp_path / "never"),
               "--out", str(tmp_path / "out2"), "--num-views", "3", "--no-progress"])  # fmt: skip
    report = json.loads((tmp_path / "out2" / "audit.json").read_text())
    assert "no_membership_signal" in [w["code"] for w in report["warnings"]]
    assert "collapse" not in [w["code"] for w in report["warnings"]]


def test_model_without_membership_signal(tmp_path, capsys):
    # one epoch of fine-tuning from random weights: forget and holdout digits look alike
    trainer, audit, receipt, _ = _fit(tmp_path, [], progress=True)
    assert "Audit (before)" in capsys.readouterr().out  # the progress bar
    assert "no_membership_signal" in audit.verdict.codes
    assert "collapse" not in audit.verdict.codes
    assert "consistent with forgetting" not in audit.verdict.line
    receipt_json = json.loads(receipt.written.read_text())
    assert "no_membership_signal" in [w["code"] for w in receipt_json["audits"]["warnings"]]


@pytest.mark.parametrize("workers", [2])
def test_num_workers_give_the_same_features(workers):
    data = [(Image.fromarray(np.uint8(np.random.default_rng(i).integers(0, 255, (8, 8, 3)))), i % 3)
            for i in range(10)]  # fmt: skip
    view = tiny_transform().transforms[0]
    from lightly_unlearn.data.datamodule import default_eval_transform

    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 5))
    kw = dict(eval_transform=default_eval_transform(view), view_transform=view, num_views=3,
              batch_size=7, seed=1, split="forget")  # fmt: skip
    calls = []
    a = extract_features(net, data, **kw, progress=calls.append)
    state = torch.get_rng_state()
    b = extract_features(net, data, **kw, num_workers=workers)
    assert torch.equal(state, torch.get_rng_state())  # the global RNG is left alone
    torch.testing.assert_close(a.views, b.views)
    torch.testing.assert_close(a.clean, b.clean)
    assert a.targets.tolist() == [i % 3 for i in range(10)] and sum(calls) == 10 * 4
    assert not torch.equal(a.views[:, 0], a.views[:, 1])  # the K views differ


def test_audit_time_is_taken_off_the_training_clock():
    class Bar:
        def __init__(self):
            self.start_t = self.last_print_t = 100.0

    class ProgressBar:
        train_progress_bar = Bar()

    class Trainer:
        progress_bar_callback = ProgressBar()

    from lightly_unlearn.callbacks.progress import pause_training_clock

    pause_training_clock(Trainer(), 7.5)
    bar = ProgressBar.train_progress_bar
    assert bar.start_t == bar.last_print_t == 107.5
