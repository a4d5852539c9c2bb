"""Every unlearning method on every lightly example model (tiny, one epoch on real digits).

The models are lightly's example modules, scaled down and otherwise unchanged (see conftest's
``MODEL_FACTORIES``): the callback must unlearn through their own ``training_step`` — BYOL and
SimSiam call the criterion twice per step — and leave momentum / teacher copies equal to the
unlearned online weights.
"""

from __future__ import annotations

import conftest
import pytest
import pytorch_lightning as pl
import torch
from conftest import (
    MODEL_FACTORIES,
    digits_dataset,
    method_hparams,
    registered_methods,
    tiny_transform,
    trainer_kwargs,
)

from lightly_unlearn import ForgetRetainDataModule, UnlearnCallback

METHODS = registered_methods()
#: criterion calls per training step in lightly's examples
CALLS = {"byol": 2, "simsiam": 2}


class _StepRecorder(pl.Callback):
    """Placed before the UnlearnCallback: sees each step's criterion calls before they are cleared."""

    def __init__(self, unlearn: UnlearnCallback) -> None:
        self.unlearn = unlearn
        self.steps: list[tuple[int, float, float]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        ctx = self.unlearn._objective.step
        logged = torch.stack([loss for loss, _ in ctx.logged]).mean()
        self.steps.append((ctx.calls, float(logged), float(outputs["loss"])))


def _pairs(module: torch.nn.Module) -> list[tuple[str, str]]:
    names = dict(module.named_children())
    pairs = [(n[: -len("_momentum")], n) for n in names if n.endswith("_momentum")]
    pairs += [("student_" + n[len("teacher_"):], n) for n in names if n.startswith("teacher_")]
    return [(a, b) for a, b in pairs if a in names]


@pytest.mark.parametrize("model_name", sorted(MODEL_FACTORIES))
@pytest.mark.parametrize("method", METHODS)
def test_method_runs_on_lightly_example_model(tmp_path, method, model_name):
    torch.manual_seed(0)
    model = MODEL_FACTORIES[model_name]()()
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    transform = getattr(conftest, f"{model_name}_transform", tiny_transform)()
    dm = ForgetRetainDataModule(digits_dataset(32), list(range(0, 32, 4)), transform, batch_size=8)
    cb = UnlearnCallback(method=method, **method_hparams(method))
    recorder = _StepRecorder(cb)
    trainer = pl.Trainer(**trainer_kwargs(tmp_path), callbacks=[recorder, cb])
    trainer.fit(model, datamodule=dm)

    assert torch.isfinite(trainer.callback_metrics["unlearn_loss"])
    assert recorder.steps, "no training step ran"
    for calls, logged, returned in recorder.steps:
        assert calls == CALLS.get(model_name, 1)
        # the user's step combines the patched calls (BYOL / SimSiam: 0.5·(call 1 + call 2)):
        # what it returns is the mean of the per-call objectives that the callback logs
        assert returned == pytest.approx(logged, rel=1e-5, abs=1e-6)
    after = model.state_dict()
    assert after.keys() == before.keys()  # checkpoint keys stay the user's
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any("backbone" in k and "momentum" not in k and "teacher" not in k for k in changed)
    assert "forward" not in vars(model.criterion)  # criterion restored after fit
    for online, copy in _pairs(model):  # momentum / teacher copies end as the unlearned weights
        for name, value in getattr(model, copy).state_dict().items():
            torch.testing.assert_close(value, getattr(model, online).state_dict()[name])
