"""No receipt without the objective: a ``training_step`` that does not optimise the patched
criterion stops the run before any optimizer step, with every weight as given."""

from __future__ import annotations

import copy

import conftest
import lightning.pytorch as L
import pytest
import pytorch_lightning as pl
import torch
from conftest import (
    MODEL_FACTORIES,
    digits_dataset,
    make_simclr,
    method_hparams,
    registered_methods,
    tiny_transform,
    trainer_kwargs,
)
from lightly.loss import NTXentLoss

from lightly_unlearn import ForgetRetainDataModule, ModuleRoles, UnlearnCallback
from lightly_unlearn.errors import ModuleContractError

METHODS = registered_methods()


def bypassing(cls: type, kind: str) -> type:
    """``cls`` whose step computes its loss with an unpatched copy of its criterion
    (``loss_fn``); with ``kind="ignored_call"`` it also calls the criterion and drops the value."""

    class Bypassing(cls):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.loss_fn = copy.deepcopy(self.criterion)

        def training_step(self, batch, batch_idx):
            patched = self.criterion
            if kind == "ignored_call":
                super().training_step(batch, batch_idx)
            self.criterion = self.loss_fn
            try:
                return super().training_step(batch, batch_idx)
            finally:
                self.criterion = patched

    return Bypassing


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_unchanged(model, before):
    after = model.state_dict()
    assert after.keys() == before.keys()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert not changed, changed


def _fit_fails(tmp_path, model, method, trainer_cls=pl.Trainer, transform=None):
    torch.manual_seed(0)
    before = _state(model)
    dm = ForgetRetainDataModule(digits_dataset(32), list(range(0, 32, 4)),
                                (transform or tiny_transform)(), batch_size=8)
    cb = UnlearnCallback(method, **method_hparams(method))
    trainer = trainer_cls(**trainer_kwargs(tmp_path), callbacks=[cb])
    with pytest.raises(ModuleContractError, match="training_step") as err:
        trainer.fit(model, datamodule=dm)
    assert trainer.global_step == 0
    _assert_unchanged(model, before)
    assert "forward" not in vars(model.criterion)  # the user's criterion is given back
    return str(err.value)


class LossFnSimCLR(make_simclr("pl")):
    """Written as the issue found it: ``self.criterion`` exists, the step uses ``self.loss_fn``."""

    def __init__(self):
        super().__init__()
        self.loss_fn = NTXentLoss()

    def training_step(self, batch, batch_index):
        (x0, x1) = batch[0]
        return self.loss_fn(self.forward(x0), self.forward(x1))


@pytest.mark.parametrize("method", METHODS)
def test_a_step_that_bypasses_the_criterion_stops_with_no_weight_changed(tmp_path, method):
    torch.manual_seed(0)
    message = _fit_fails(tmp_path, LossFnSimCLR(), method)
    assert "LossFnSimCLR.training_step did not call `self.criterion`" in message
    assert "not applied" in message and "ModuleRoles(criterion='loss_fn')" in message


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("model_name", sorted(MODEL_FACTORIES))
def test_every_loss_and_method_refuses_a_loss_that_ignores_the_criterion(tmp_path, model_name, method):
    torch.manual_seed(0)
    model = bypassing(MODEL_FACTORIES[model_name](), "ignored_call")()
    transform = getattr(conftest, f"{model_name}_transform", tiny_transform)
    message = _fit_fails(tmp_path, model, method, transform=transform)
    assert "does not depend on" in message


@pytest.mark.parametrize("model_name", sorted(MODEL_FACTORIES))
def test_every_loss_refuses_a_step_that_never_calls_the_criterion(tmp_path, model_name):
    torch.manual_seed(0)
    model = bypassing(MODEL_FACTORIES[model_name](), "other_loss")()
    transform = getattr(conftest, f"{model_name}_transform", tiny_transform)
    assert "did not call" in _fit_fails(tmp_path, model, "finetune", transform=transform)


@pytest.mark.parametrize("method", METHODS)
def test_clip_refuses_a_bypassed_criterion(tmp_path, method):
    from test_clip_module import _dm, _module

    from lightly_unlearn import CLIPModule

    torch.manual_seed(0)
    model = _module(bypassing(CLIPModule, "ignored_call"))
    before = _state(model)
    trainer = L.Trainer(**trainer_kwargs(tmp_path), callbacks=[UnlearnCallback(method, **method_hparams(method, clip=True))])
    with pytest.raises(ModuleContractError, match="does not depend on"):
        trainer.fit(model, datamodule=_dm(model))
    _assert_unchanged(model, before)


def test_naming_the_loss_object_as_criterion_unlearns_through_it(tmp_path):
    torch.manual_seed(0)
    model = LossFnSimCLR()
    before = _state(model)
    dm = ForgetRetainDataModule(digits_dataset(32), list(range(0, 32, 4)), tiny_transform(), batch_size=8)
    cb = UnlearnCallback("neggrad", roles=ModuleRoles(criterion="loss_fn"))
    trainer = pl.Trainer(**trainer_kwargs(tmp_path), callbacks=[cb])
    trainer.fit(model, datamodule=dm)
    assert trainer.global_step == 4 and torch.isfinite(trainer.callback_metrics["unlearn_loss"])
    assert not torch.equal(before["backbone.1.weight"], model.state_dict()["backbone.1.weight"])
    assert "forward" not in vars(model.loss_fn)


class ManualSimCLR(make_simclr("pl")):
    """Manual optimization; the step's loss comes from ``self.<loss_name>``."""

    loss_name = "criterion"

    def __init__(self):
        super().__init__()
        self.automatic_optimization = False
        self.loss_fn = NTXentLoss()

    def training_step(self, batch, batch_index):
        opt = self.optimizers()
        (x0, x1) = batch[0]
        loss = getattr(self, self.loss_name)(self.forward(x0), self.forward(x1))
        opt.zero_grad()
        self.manual_backward(loss)
        opt.step()
        return loss.detach()


@pytest.mark.parametrize("setting", ["accumulate", "manual"])
def test_accumulation_and_manual_optimization_pass_the_check(tmp_path, setting):
    torch.manual_seed(0)
    model = ManualSimCLR() if setting == "manual" else make_simclr("pl")()
    extra = {"accumulate_grad_batches": 2} if setting == "accumulate" else {}
    dm = ForgetRetainDataModule(digits_dataset(32), [0, 5, 9], tiny_transform(), batch_size=8)
    trainer = pl.Trainer(**trainer_kwargs(tmp_path, **extra), callbacks=[UnlearnCallback("ac", beta=1.0)])
    trainer.fit(model, datamodule=dm)
    assert trainer.global_step == (2 if setting == "accumulate" else 4)


def test_manual_optimization_that_bypasses_is_refused_before_its_step(tmp_path):
    class ManualBypass(ManualSimCLR):
        loss_name = "loss_fn"

    torch.manual_seed(0)
    assert "did not call" in _fit_fails(tmp_path, ManualBypass(), "gradient_ascent")


@pytest.mark.parametrize("n_forget", [1, 5])
@pytest.mark.parametrize("batch_norm", [True, False], ids=["bn_head", "mlp"])
def test_small_forget_sets_bypassed_or_not(tmp_path, batch_norm, n_forget):
    """1- and 5-sample deletion requests on the BatchNorm model and the MLP: a bypass is refused
    with every weight as given; the unchanged step unlearns."""
    for module_cls, fails in ((bypassing(make_simclr("pl"), "ignored_call"), True), (make_simclr("pl"), False)):
        torch.manual_seed(0)
        model = module_cls(batch_norm=batch_norm)
        before = _state(model)
        dm = ForgetRetainDataModule(digits_dataset(32), list(range(n_forget)), tiny_transform(), batch_size=8)
        trainer = pl.Trainer(**trainer_kwargs(tmp_path), callbacks=[UnlearnCallback("ac", beta=1.0)])
        if fails:
            with pytest.raises(ModuleContractError, match="does not depend on"):
                trainer.fit(model, datamodule=dm)
            _assert_unchanged(model, before)
        else:
            trainer.fit(model, datamodule=dm)
            assert trainer.global_step > 0 and not torch.equal(before["backbone.1.weight"], model.backbone[1].weight)


def test_a_criterion_call_under_no_grad_is_neither_required_nor_enough(tmp_path):
    """A value logged under torch.no_grad() does not count: with the loss from the criterion the
    step passes; with the loss from another object it is refused."""

    class LoggedCall(make_simclr("pl")):
        def __init__(self, loss_name):
            super().__init__()
            self.loss_fn, self.loss_name = NTXentLoss(), loss_name

        def training_step(self, batch, batch_index):
            (x0, x1) = batch[0]
            z0, z1 = self.forward(x0), self.forward(x1)
            with torch.no_grad():
                self.log("monitor", self.criterion(z0, z1))
            return getattr(self, self.loss_name)(z0, z1)

    dm = ForgetRetainDataModule(digits_dataset(32), [0, 5, 9], tiny_transform(), batch_size=8)
    trainer = pl.Trainer(**trainer_kwargs(tmp_path), callbacks=[UnlearnCallback("neggrad")])
    trainer.fit(LoggedCall("criterion"), datamodule=dm)
    assert trainer.global_step == 4
    assert "did not call `self.criterion` with gradients enabled" in _fit_fails(tmp_path, LoggedCall("loss_fn"), "neggrad")
