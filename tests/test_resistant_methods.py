"""Methods that move the weights away from what the forget set shaped: partial re-initialisation
and the weight-space methods of Siddiqui et al. (arXiv 2505.22310), on the MLP SimCLR / MoCo of
conftest and a lightly-style BatchNorm conv net, with 1- and 5-sample forget sets."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torchvision
from conftest import (
    digits_dataset,
    make_conv_simclr,
    make_moco,
    make_simclr,
    tiny_transform,
    trainer_kwargs,
)
from torch import nn

from lightly_unlearn import ForgetRetainDataModule, UnlearnCallback
from lightly_unlearn.errors import ModuleContractError
from lightly_unlearn.methods.partial_reinit import PartialReinit, backbone_stages
from lightly_unlearn.methods.weight_distance import WeightDistance
from lightly_unlearn.methods.weight_distortion import WeightDistortion
from lightly_unlearn.roles import resolve_roles


def conv_simclr():
    """lightly's SimCLR example with a small conv-BN-ReLU backbone (BatchNorm everywhere)."""
    return make_conv_simclr()


MODELS = {"mlp": lambda: make_simclr("pl")(), "conv": conv_simclr, "moco": lambda: make_moco("pl")()}


class AtStart(pl.Callback):
    """Placed after UnlearnCallback: the weights the first step starts from."""

    def on_train_start(self, trainer, pl_module):
        self.state = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}


def pretrained(model_name: str) -> nn.Module:
    torch.manual_seed(0)
    model = MODELS[model_name]()
    with torch.no_grad():  # stand-in for trained weights: far from any fresh draw, BN stats moved
        for p in model.parameters():
            p.add_(0.3)
        for name, b in model.named_buffers():
            if name.endswith(("running_mean", "running_var")):
                b.fill_(0.7)
    return model


def fit(tmp_path, model, method, n_forget=5, epochs=1):
    dm = ForgetRetainDataModule(digits_dataset(40), list(range(0, 4 * n_forget, 4)), tiny_transform(), batch_size=10)
    start = AtStart()
    cb = UnlearnCallback(method)
    trainer = pl.Trainer(**trainer_kwargs(tmp_path, max_epochs=epochs), callbacks=[cb, start])
    trainer.fit(model, datamodule=dm)
    assert torch.isfinite(trainer.callback_metrics["unlearn_loss"])
    return start.state


# -- partial re-initialisation -------------------------------------------------------------------
def test_stages_of_lightly_style_backbones():
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU())
    assert backbone_stages(mlp) == [["1"], ["3"]]
    conv = conv_simclr().backbone  # conv + BN is one stage
    assert backbone_stages(conv) == [["0", "1"], ["3", "4"]]
    resnet = torchvision.models.resnet18()
    assert backbone_stages(resnet) == [["layer1"], ["layer2"], ["layer3"], ["layer4"]]
    # lightly's examples: nn.Sequential(*list(resnet.children())[:-1])
    assert backbone_stages(nn.Sequential(*list(resnet.children())[:-1])) == [["0", "1"], ["4"], ["5"], ["6"], ["7"]]


def test_stages_refused_where_the_rule_does_not_apply():
    class Custom(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 4)

    with pytest.raises(ModuleContractError, match="cannot tell the stages.*modules="):
        backbone_stages(Custom())
    model = make_simclr("pl")()  # backbone: Flatten, Linear, ReLU = one stage
    with pytest.raises(ValueError, match="stages=2.*1 stage"):
        PartialReinit(stages=2).parts(model, resolve_roles(model))
    with pytest.raises(TypeError, match="stages must be a whole number"):
        PartialReinit(stages=1.5)
    with pytest.raises(TypeError, match="seed must be a whole number"):
        WeightDistortion(seed=0.5)
    assert type(PartialReinit(stages=np.int64(2)).hparams["stages"]) is int
    with pytest.raises(ModuleContractError, match="no sub-module 'backbone.9'"):
        PartialReinit(modules="backbone.9").prepare(model, resolve_roles(model))
    headless = nn.Module()
    headless.encoder = nn.Linear(4, 4)  # no projection_head / student_head (e.g. CLIP)
    with pytest.raises(ModuleContractError, match="no projection head to re-initialise.*modules="):
        PartialReinit().parts(headless, resolve_roles(headless))


@pytest.mark.parametrize("n_forget", [1, 5])
@pytest.mark.parametrize("model_name", ["mlp", "conv"])
def test_partial_reinit_redraws_head_and_last_stage_only(tmp_path, model_name, n_forget):
    model = pretrained(model_name)
    given = {k: v.detach().clone() for k, v in model.state_dict().items()}
    start = fit(tmp_path, model, PartialReinit(stages=1), n_forget)
    last = {"mlp": ("backbone.1.",), "conv": ("backbone.3.", "backbone.4.")}[model_name]
    for key, value in given.items():
        redrawn = key.startswith(("projection_head.", *last))
        if key.endswith("num_batches_tracked"):
            continue
        if not redrawn:
            assert torch.equal(start[key], value), key
        elif key.endswith("running_mean"):  # BatchNorm statistics reset with the weights
            assert torch.equal(start[key], torch.zeros_like(value)), key
        elif key.endswith("running_var"):
            assert torch.equal(start[key], torch.ones_like(value)), key
        else:
            assert not torch.equal(start[key], value), key
    assert not torch.equal(model.projection_head.layers[0].weight, start["projection_head.layers.0.weight"])


def test_partial_reinit_head_only_and_explicit_modules(tmp_path):
    model = pretrained("conv")
    given = {k: v.detach().clone() for k, v in model.state_dict().items()}
    start = fit(tmp_path, model, PartialReinit(stages=0))
    assert all(torch.equal(start[k], v) for k, v in given.items() if k.startswith("backbone."))
    model = pretrained("conv")
    start = fit(tmp_path, model, PartialReinit(modules="backbone.0"))
    assert not torch.equal(start["backbone.0.weight"], given["backbone.0.weight"])
    assert all(torch.equal(start[k], v) for k, v in given.items() if not k.startswith("backbone.0."))


def test_partial_reinit_is_seeded_and_leaves_the_global_rng_alone():
    draws = []
    for seed in (0, 0, 1):
        model = pretrained("mlp")
        torch.manual_seed(123)
        PartialReinit(seed=seed).prepare(model, resolve_roles(model))
        draws.append((model.projection_head.layers[0].weight.clone(), torch.rand(1)))
    assert torch.equal(draws[0][0], draws[1][0]) and not torch.equal(draws[0][0], draws[2][0])
    assert draws[0][1] == draws[2][1]  # the caller's random stream continues as if untouched


def test_partial_reinit_on_moco_copies_the_fresh_weights_and_refills_the_bank(tmp_path):
    model = pretrained("moco")
    with torch.no_grad():
        model.backbone_momentum[1].weight.add_(1.0)  # an EMA copy that differs from the online
    bank = model.criterion.memory_bank.bank.clone()
    start = fit(tmp_path, model, PartialReinit(stages=1))
    for online, copy_ in (("backbone", "backbone_momentum"), ("projection_head", "projection_head_momentum")):
        for key, value in start.items():
            if key.startswith(online + "."):
                torch.testing.assert_close(start[copy_ + key[len(online):]], value)
    assert not torch.equal(model.criterion.memory_bank.bank, bank)


# -- weight distortion ----------------------------------------------------------------------------
@pytest.mark.parametrize("n_forget", [1, 5])
@pytest.mark.parametrize("model_name", ["mlp", "conv"])
def test_weight_distortion_adds_seeded_noise_of_the_given_std(tmp_path, model_name, n_forget):
    model = pretrained(model_name)
    given = {k: v.detach().clone() for k, v in model.named_parameters()}
    buffers = {k: v.detach().clone() for k, v in model.state_dict().items() if k not in given}
    start = fit(tmp_path, model, WeightDistortion(std=0.05, seed=3), n_forget)
    noise = torch.cat([(start[k] - v).flatten() for k, v in given.items()])
    assert noise.std().item() == pytest.approx(0.05, rel=0.1) and abs(noise.mean().item()) < 0.01
    assert all(torch.equal(start[k], v) for k, v in buffers.items())  # BatchNorm statistics kept
    again = pretrained(model_name)
    WeightDistortion(std=0.05, seed=3).prepare(again, resolve_roles(again))
    assert all(torch.equal(start[k], v) for k, v in again.state_dict().items() if k in given)


def test_weight_distortion_on_moco_leaves_copies_equal_to_the_distorted_online():
    model = pretrained("moco")
    WeightDistortion(std=0.1).prepare(model, resolve_roles(model))
    for name, value in model.backbone_momentum.state_dict().items():
        torch.testing.assert_close(value, model.backbone.state_dict()[name])


# -- weight-distance regularisation --------------------------------------------------------------
def test_weight_distance_is_minus_alpha_times_the_rms_distance():
    model = nn.Linear(3, 2)  # 8 parameters
    method = WeightDistance(alpha=2.0)
    method.prepare(model, resolve_roles(nn.Module()))
    with torch.no_grad():
        model.weight.add_(0.5)  # 6 of 8 parameters moved by 0.5
    expected = -2.0 * (6 * 0.25 / 8 + 1e-8) ** 0.5
    assert method.regularizer(model, 0.5).item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(RuntimeError, match="original weights were not recorded"):
        WeightDistance().regularizer(model, 0.0)


@pytest.mark.parametrize("n_forget", [1, 5])
@pytest.mark.parametrize("model_name", ["mlp", "conv"])
def test_weight_distance_ends_farther_from_the_original_than_finetune(tmp_path, model_name, n_forget):
    def distance(method):
        model = pretrained(model_name)
        given = [p.detach().clone() for p in model.parameters()]
        torch.manual_seed(0)
        fit(tmp_path, model, method, n_forget, epochs=2)
        return torch.cat([(p - g).flatten() for p, g in zip(model.parameters(), given)]).norm()

    from lightly_unlearn.methods.finetune import FineTune

    assert distance(WeightDistance(alpha=50.0)) > 1.2 * distance(FineTune())


def test_new_methods_resolve_through_entry_points():
    from lightly_unlearn import registry

    for name, cls in (("partial_reinit", PartialReinit), ("weight_distortion", WeightDistortion),
                      ("weight_distance", WeightDistance)):
        assert registry.load("method", name) is cls
    assert copy.deepcopy(PartialReinit(stages=2)).hparams["stages"] == 2
