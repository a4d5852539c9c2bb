"""ModuleRoles: lightly's example conventions found without a roles argument, explicit roles for
other modules, teachers synced and re-created as copies, memory banks reset without lightly's
private API, roles in every callback and the CLI."""

from __future__ import annotations

import copy
import warnings

import pytest
import pytorch_lightning as pl
import torch
from conftest import (
    MODEL_FACTORIES,
    digits_dataset,
    dino_transform,
    make_dino,
    make_moco,
    tiny_transform,
    trainer_kwargs,
)
from torch import nn

from lightly_unlearn import (
    AuditCallback,
    ForgetRetainDataModule,
    HoldoutAlignmentStopping,
    UnlearnCallback,
)
from lightly_unlearn.adapters import reinitialise
from lightly_unlearn.errors import ModuleContractError
from lightly_unlearn.roles import ModuleRoles, parse_role, resolve_roles, roles_from_settings

EXPECTED = {
    "simclr": ("backbone", "projection_head", (), (), "forward"),
    "dcl": ("backbone", "projection_head", (), (), "forward"),
    "simsiam": ("backbone", "projection_head", (), (), "forward"),
    "moco": (
        "backbone", "projection_head",
        (("backbone", "backbone_momentum"), ("projection_head", "projection_head_momentum")),
        ("criterion.memory_bank",), "forward_momentum",
    ),
    "byol": (
        "backbone", "projection_head",
        (("backbone", "backbone_momentum"), ("projection_head", "projection_head_momentum")),
        (), "forward_momentum",
    ),
    "dino": (
        "student_backbone", "student_head",
        (("student_backbone", "teacher_backbone"), ("student_head", "teacher_head")),
        (), "forward_teacher",
    ),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_lightly_examples_need_no_roles(name):
    roles = resolve_roles(MODEL_FACTORIES[name]()())
    got = (roles.backbone, roles.head, roles.momentum_pairs, roles.memory_banks, roles.embed)
    assert got == EXPECTED[name]


def test_describe_names_pairs_and_banks():
    roles = resolve_roles(make_moco()())
    assert roles.describe() == (
        "found 2 momentum pairs: backbone→backbone_momentum, projection_head→projection_head_momentum; "
        "1 memory bank: criterion.memory_bank; extra views embedded by forward_momentum"
    )


def test_simsiam_tuple_output_is_left_to_the_adapter_unless_an_index_is_given():
    model = MODEL_FACTORIES["simsiam"]()().eval()
    x = torch.rand(4, 3, 8, 8)
    out = resolve_roles(model).embed_fn(model)(x)
    assert isinstance(out, tuple) and len(out) == 2
    z = resolve_roles(model, ModuleRoles(output_index=0)).embed_fn(model)(x)
    torch.testing.assert_close(z, model(x)[0])


def test_dino_teacher_ends_equal_to_the_unlearned_student(tmp_path, caplog):
    torch.manual_seed(0)
    model = make_dino()()
    before = copy.deepcopy(model.student_backbone.state_dict())
    dm = ForgetRetainDataModule(digits_dataset(32), [0, 1, 2, 3], dino_transform(), batch_size=8)
    trainer = pl.Trainer(**trainer_kwargs(tmp_path, max_epochs=2, callbacks=[UnlearnCallback("ac", beta=1.0)]))
    with caplog.at_level("INFO", logger="lightning.pytorch.utilities.rank_zero"):  # the demo quiets its parents
        trainer.fit(model, datamodule=dm)
    line = next(r.getMessage() for r in caplog.records if "UnlearnCallback:" in r.getMessage())
    assert "found 2 momentum pairs: student_backbone→teacher_backbone, student_head→teacher_head" in line
    assert "extra views embedded by forward_teacher" in line
    assert any(not torch.equal(v, model.student_backbone.state_dict()[k]) for k, v in before.items())
    for student, teacher in (("student_backbone", "teacher_backbone"), ("student_head", "teacher_head")):
        s, t = getattr(model, student).state_dict(), getattr(model, teacher).state_dict()
        for key in s:
            torch.testing.assert_close(t[key], s[key])


def test_retrain_recreates_dino_teacher_as_a_copy_of_the_fresh_student():
    torch.manual_seed(0)
    model = make_dino()()
    with torch.no_grad():  # "trained" weights
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    trained_v = model.student_head.last_layer.weight_v.clone()
    trained_g = model.student_head.last_layer.weight_g.clone()
    reinitialise(model)
    # the weight-normed last layer is really re-initialised (its `weight` is recomputed from
    # weight_g / weight_v, so resetting `weight` alone would keep the trained values) ...
    assert not torch.allclose(model.student_head.last_layer.weight_v, trained_v)
    # ... and its frozen, never-trained norm keeps its value
    torch.testing.assert_close(model.student_head.last_layer.weight_g, trained_g)
    for student, teacher in (("student_backbone", "teacher_backbone"), ("student_head", "teacher_head")):
        s, t = getattr(model, student).state_dict(), getattr(model, teacher).state_dict()
        assert s.keys() == t.keys()
        for key in s:
            torch.testing.assert_close(t[key], s[key])
    assert all(not p.requires_grad for p in model.teacher_head.parameters())  # still frozen


class _EMAModel(pl.LightningModule):
    """Not lightly's naming: an EMA copy called ``encoder_ema`` next to ``encoder``."""

    def __init__(self):
        super().__init__()
        from lightly.loss import NTXentLoss

        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 16), nn.ReLU())
        self.projector = nn.Linear(16, 8)
        self.encoder_ema = copy.deepcopy(self.encoder).requires_grad_(False)
        self.criterion = NTXentLoss()

    def forward(self, x):
        return self.projector(self.encoder(x))

    def training_step(self, batch, batch_idx):
        from lightly.models.utils import update_momentum

        update_momentum(self.encoder, self.encoder_ema, m=0.99)
        x0, x1 = batch[0]
        return self.criterion(self(x0), self(x1))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit(tmp_path, model, callbacks):
    dm = ForgetRetainDataModule(digits_dataset(32), [0, 1, 2], tiny_transform(), batch_size=8)
    pl.Trainer(**trainer_kwargs(tmp_path, callbacks=callbacks)).fit(model, datamodule=dm)


def test_no_pair_found_with_frozen_submodules_is_a_warning_naming_them(tmp_path):
    model = _EMAModel()
    with pytest.warns(UserWarning, match="frozen sub-module.*encoder_ema"):
        _fit(tmp_path, model, [UnlearnCallback("finetune")])
    assert not torch.equal(model.encoder_ema[1].weight, model.encoder[1].weight)


def test_explicit_pairs_are_synced_and_silence_the_warning(tmp_path):
    model = _EMAModel()
    roles = ModuleRoles(momentum_pairs=[("encoder", "encoder_ema")])
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*no momentum / teacher pair.*")
        _fit(tmp_path, model, [UnlearnCallback("finetune", roles=roles)])
    torch.testing.assert_close(model.encoder_ema[1].weight, model.encoder[1].weight)


def test_misspelt_or_mismatched_roles_are_refused_before_training(tmp_path):
    model = _EMAModel()
    with pytest.raises(ModuleContractError, match="encoder_emma"):
        _fit(tmp_path, model, [UnlearnCallback("finetune", roles=ModuleRoles(momentum_pairs=[("encoder", "encoder_emma")]))])
    with pytest.raises(ModuleContractError, match="differ in names or shapes"):
        resolve_roles(model, ModuleRoles(momentum_pairs=[("projector", "encoder_ema")]))
    with pytest.raises(TypeError, match="ModuleRoles"):
        UnlearnCallback("finetune", roles={"backbone": "encoder"})


def test_audit_and_stopping_callbacks_read_the_named_backbone_and_head():
    model = _EMAModel().eval()
    x = torch.rand(5, 3, 8, 8)
    roles = ModuleRoles(backbone="encoder", head="projector")
    with pytest.raises(ModuleContractError, match="backbone"):
        AuditCallback(embed_fn="backbone")._embed(model)
    torch.testing.assert_close(AuditCallback(embed_fn="backbone", roles=roles)._embed(model)(x), model.encoder(x))
    stopping = HoldoutAlignmentStopping(embed_fn="head", roles=roles)
    torch.testing.assert_close(stopping._embed(model)(x), model(x))


def test_memory_banks_are_reset_without_lightlys_private_initialiser(monkeypatch):
    from lightly.models.modules.memory_bank import MemoryBankModule

    model = make_moco()()
    bank = model.criterion.memory_bank
    bank.bank.fill_(0.5)
    bank.bank_ptr.fill_(7)
    monkeypatch.setattr(MemoryBankModule, "_init_memory_bank", lambda *a, **k: pytest.fail("private API"))
    assert resolve_roles(model, ModuleRoles(memory_banks=())).reset_memory_banks(model) == 0
    assert bool((bank.bank == 0.5).all())  # roles said: no bank
    assert resolve_roles(model).reset_memory_banks(model) == 1
    torch.testing.assert_close(bank.bank.norm(dim=1), torch.ones(bank.bank.shape[0]))
    assert int(bank.bank_ptr) == 0 and not bool((bank.bank == 0.5).any())


def test_command_line_role_settings():
    roles = roles_from_settings(
        [parse_role("momentum_pairs=encoder:encoder_ema"), parse_role("memory_banks=none"),
         parse_role("backbone=encoder"), parse_role("output_index=0")]
    )
    assert roles == ModuleRoles(
        backbone="encoder", momentum_pairs=(("encoder", "encoder_ema"),), memory_banks=(), output_index=0
    )
    assert roles_from_settings([]) is None
    for bad in ("bogus=1", "backbone", "momentum_pairs=encoder"):
        with pytest.raises(ValueError):
            roles_from_settings([parse_role(bad)])
