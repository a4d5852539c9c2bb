"""Non-finite guard: a NaN/inf objective, gradient, buffer, optimizer setting or update stops the
run with a clear ``NonFiniteLossError``, and the module keeps the weights (and BatchNorm buffers)
of the last finite step: all finite, equal to the state after that step. No copy of the model is
kept in ordinary training."""

from __future__ import annotations

import lightning.pytorch as L
import pytest
import torch
from conftest import digits_dataset, make_simclr, tiny_transform, trainer_kwargs

from lightly_unlearn import ForgetRetainDataModule, UnlearnCallback
from lightly_unlearn.demo.model import ConvSimCLR
from lightly_unlearn.errors import NonFiniteLossError
from lightly_unlearn.namespaces import trainer_class_for


class Snapshots(L.Callback):
    """State after every completed step (runs after UnlearnCallback's own check)."""

    def __init__(self, unlearn: UnlearnCallback | None = None):
        self.states, self.unlearn, self.copied = [], unlearn, None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.states.append({k: v.detach().clone() for k, v in pl_module.state_dict().items()})
        if self.unlearn is not None:
            self.copied = self.unlearn._guard.copied


def _simclr(batch_norm=True):
    return make_simclr("L")(batch_norm=batch_norm)


def _conv():
    """The small BatchNorm CNN of the benchmarks (lightly's example with a conv backbone, SGD)."""
    return ConvSimCLR(width=32, out_dim=16)


MODELS = {"bn_head": _simclr, "mlp": lambda: _simclr(batch_norm=False)}


def _fit(tmp_path, model, n_forget=5, method="ga", epochs=20, trainer_cls=L.Trainer, **cb_kw):
    dm = ForgetRetainDataModule(digits_dataset(32), list(range(n_forget)), tiny_transform(), batch_size=8)
    unlearn = UnlearnCallback(method, **cb_kw)
    snaps = Snapshots(unlearn)
    trainer = trainer_cls(**trainer_kwargs(tmp_path, max_epochs=epochs), callbacks=[unlearn, snaps])
    return trainer, dm, snaps


def _fails_keeping_last_finite_state(tmp_path, model, message, **kw):
    torch.manual_seed(0)
    initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
    trainer, dm, snaps = _fit(tmp_path, model, **kw)
    with pytest.raises(NonFiniteLossError, match=message) as err:
        trainer.fit(model, datamodule=dm)
    assert "Lower the learning rate" in str(err.value)
    state = model.state_dict()
    for name, value in state.items():
        if value.is_floating_point():
            assert torch.isfinite(value).all(), name
    last = snaps.states[-1] if snaps.states else initial  # the last finite step's state
    for name, value in state.items():
        assert torch.equal(value, last[name]), name
    assert "forward" not in vars(model.criterion)  # the user's criterion is given back
    assert not list(tmp_path.rglob("*.ckpt"))
    return snaps


def _with_lr(make, lr):
    model = make()
    model.configure_optimizers = lambda: torch.optim.SGD(model.parameters(), lr=lr)
    return model


@pytest.mark.parametrize("n_forget", [1, 5])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_huge_finite_lr_overflowing_update_is_put_back(tmp_path, name, n_forget):
    """lr = 1e30: the update of a later step overflows although its gradients are finite (or its
    forward does first): the tensors at risk were copied before the step and are put back."""
    _fails_keeping_last_finite_state(
        tmp_path, _with_lr(MODELS[name], 1e30), "made .* NaN/inf .* put back|objective became nan",
        n_forget=n_forget,
    )


@pytest.mark.parametrize("n_forget", [1, 5])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_infinite_lr_is_refused_before_the_step(tmp_path, name, n_forget):
    _fails_keeping_last_finite_state(
        tmp_path, _with_lr(MODELS[name], float("inf")), "step 0 was not applied: .*lr=inf",
        n_forget=n_forget,
    )


@pytest.mark.parametrize("n_forget", [1, 5])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_nan_forward_stops_before_backward_and_puts_batchnorm_statistics_back(tmp_path, name, n_forget):
    model = MODELS[name]()
    step = model.training_step

    def poisoned(batch, batch_idx):
        if model.trainer.global_step >= 2:  # NaN images: NaN BatchNorm statistics, NaN loss
            batch[0][0] = batch[0][0] * float("nan")
        return step(batch, batch_idx)

    model.training_step = poisoned
    snaps = _fails_keeping_last_finite_state(tmp_path, model, "objective became nan", n_forget=n_forget)
    assert len(snaps.states) == 2 and snaps.copied == 0


@pytest.mark.parametrize("n_forget", [1, 5])
def test_nan_gradients_with_a_finite_objective_are_refused(tmp_path, n_forget):
    model = _simclr()
    weight = model.backbone[1].weight
    weight.register_hook(lambda g: g * float("nan") if model.trainer.global_step >= 3 else g)
    snaps = _fails_keeping_last_finite_state(
        tmp_path, model, "gradients of 1 weight tensor.*backbone.1.weight.*not applied", n_forget=n_forget
    )
    assert len(snaps.states) == 3


def test_nan_buffer_with_a_finite_objective_is_refused_and_put_back(tmp_path):
    class Corrupting(make_simclr("L")):
        def on_after_backward(self):  # after a finite objective, before the optimizer step
            if self.trainer.global_step >= 1:
                self.projection_head.layers[1].running_var.fill_(float("inf"))

    model = Corrupting()
    assert isinstance(model.projection_head.layers[1], torch.nn.BatchNorm1d)
    snaps = _fails_keeping_last_finite_state(tmp_path, model, "buffers .* NaN/inf", method="neggrad")
    assert len(snaps.states) == 1


class Exploding(torch.optim.SGD):
    """An optimizer whose update the guard cannot bound: from its third step it multiplies the
    weights by 1e30 (finite gradients, finite settings)."""

    def step(self, closure=None):
        loss = super().step(closure)
        self.count = getattr(self, "count", 0) + 1
        if self.count >= 3:
            with torch.no_grad():
                for group in self.param_groups:
                    for p in group["params"]:
                        p.mul_(1e30).mul_(1e30)
        return loss


@pytest.mark.parametrize("name", sorted(MODELS))
def test_an_optimizer_without_known_bound_is_guarded_by_a_copy_per_step(tmp_path, name):
    model = MODELS[name]()
    model.configure_optimizers = lambda: Exploding(model.parameters(), lr=0.01)
    with pytest.warns(UserWarning, match="knows no bound of the update of Exploding"):
        snaps = _fails_keeping_last_finite_state(tmp_path, model, "made .* NaN/inf .* put back")
    assert len(snaps.states) == 2 and snaps.copied > 0


@pytest.mark.parametrize("n_forget", [1, 5])
@pytest.mark.parametrize("make", [*MODELS.values(), _conv], ids=[*MODELS, "conv"])
def test_ordinary_training_keeps_no_copy(tmp_path, make, n_forget):
    """SGD and Adam at their usual learning rates: no tensor is ever at risk, nothing is copied."""
    torch.manual_seed(0)
    model = make()
    trainer, dm, snaps = _fit(tmp_path, model, n_forget=n_forget, method="ac", epochs=2,
                              trainer_cls=trainer_class_for(model), beta=1.0)
    trainer.fit(model, datamodule=dm)
    assert len(snaps.states) == 2 * 4 and snaps.copied == 0


def test_guard_off_still_stops_on_a_nan_objective(tmp_path):
    model = _with_lr(_simclr, 1e30)
    trainer, dm, _ = _fit(tmp_path, model, keep_finite_weights=False)
    with pytest.raises(NonFiniteLossError, match="objective became"):
        trainer.fit(model, datamodule=dm)
