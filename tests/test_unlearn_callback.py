"""UnlearnCallback on unchanged lightly-docs-style SimCLR and MoCo modules, both namespaces."""

import lightning.pytorch as L
import pytest
import pytorch_lightning as pl
import torch
from conftest import (
    digits_dataset,
    forget_view_capture,
    make_moco,
    make_simclr,
    method_hparams,
    registered_methods,
    tiny_transform,
    trainer_kwargs,
)
from torch import nn

from lightly_unlearn import ForgetRetainDataModule, UnlearnCallback
from lightly_unlearn.errors import ModuleContractError

TRAINERS = {"pl": pl.Trainer, "L": L.Trainer}
METHODS = registered_methods()


def _params(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("namespace", ["pl", "L"])
@pytest.mark.parametrize("make", [make_simclr, make_moco], ids=["simclr", "moco"])
@pytest.mark.parametrize("method", METHODS)
def test_each_method_runs_one_epoch_unchanged_module(tmp_path, namespace, make, method):
    torch.manual_seed(0)
    model = make(namespace)()
    before = _params(model)
    dm = ForgetRetainDataModule(digits_dataset(48), list(range(0, 48, 4)), tiny_transform(), batch_size=12)
    cb = UnlearnCallback(method=method, **method_hparams(method))
    trainer = TRAINERS[namespace](**trainer_kwargs(tmp_path), callbacks=[cb])
    trainer.fit(model, datamodule=dm)
    loss = trainer.callback_metrics["unlearn_loss"]
    assert torch.isfinite(loss)
    after = model.state_dict()
    assert after.keys() == before.keys()  # checkpoint keys stay the user's
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert any(k.startswith("backbone.") for k in changed)
    assert "forward" not in vars(model.criterion)  # criterion restored after fit
    if method == "gradient_ascent":
        assert loss < 0
    if make is make_moco:  # momentum encoder synced to the unlearned online weights
        for name, p in model.backbone_momentum.state_dict().items():
            torch.testing.assert_close(p, model.backbone.state_dict()[name])


def test_retrain_reinitialises_before_training(tmp_path):
    torch.manual_seed(0)
    model = make_simclr("pl")()
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(0.5)
    seen = {}

    class BeforeAudit(pl.Callback):  # listed after UnlearnCallback, like an AuditCallback
        def on_fit_start(self, trainer, pl_module):
            seen["w"] = pl_module.backbone[1].weight.detach().clone()

    dm = ForgetRetainDataModule(digits_dataset(32), [0, 1], tiny_transform(), batch_size=10)
    callbacks = [UnlearnCallback("rt"), BeforeAudit()]
    trainer = pl.Trainer(**trainer_kwargs(tmp_path, max_steps=1), callbacks=callbacks)
    trainer.fit(model, datamodule=dm)
    torch.testing.assert_close(seen["w"], torch.full_like(seen["w"], 0.5))  # "before" = given model
    w = model.backbone[1].weight
    assert not torch.allclose(w, torch.full_like(w, 0.5), atol=0.05)


def test_moco_memory_bank_is_reset_when_unlearning_starts(tmp_path):
    model = make_moco("pl")()
    bank = model.criterion.memory_bank
    bank.bank.fill_(1.0)  # as if it held keys of forget samples
    seen = {}

    class Probe(pl.Callback):
        def on_train_start(self, trainer, pl_module):
            seen["bank"] = pl_module.criterion.memory_bank.bank.clone()

    dm = ForgetRetainDataModule(digits_dataset(32), [0, 1, 2], tiny_transform(), batch_size=8)
    trainer = pl.Trainer(**trainer_kwargs(tmp_path, max_steps=1), callbacks=[UnlearnCallback("ft"), Probe()])
    trainer.fit(model, datamodule=dm)
    assert not torch.allclose(seen["bank"], torch.ones_like(seen["bank"]))
    torch.testing.assert_close(seen["bank"].norm(dim=1), torch.ones(64))


def test_ac_positive_calibration_lowers_forget_self_alignment_after_a_step(tmp_path):
    """One step from identical weights and views: β > 0 leaves the forget samples' own two views
    (t1 and the extra t3 of the batch) less aligned than β ≈ 0 does."""
    data = digits_dataset(40)
    forget = list(range(0, 40, 2))
    seen = {}
    results = {}
    for beta in (1e-9, 5.0):  # a vanishing beta keeps the same data pipeline (extra view drawn)
        torch.manual_seed(0)
        model = make_simclr("pl")(batch_norm=False)
        dm = ForgetRetainDataModule(data, forget, tiny_transform(), batch_size=40)
        cb = UnlearnCallback("ac", alpha=1.0, beta=beta)
        trainer = pl.Trainer(**trainer_kwargs(tmp_path, max_steps=1), callbacks=[forget_view_capture(forget, seen), cb])
        trainer.fit(model, datamodule=dm)
        with torch.no_grad():
            results[beta] = nn.functional.cosine_similarity(
                model(seen["v1"]), model(seen["v3"])
            ).mean().item()
    assert results[5.0] < results[1e-9] - 1e-3, results


def test_checkpoint_round_trip_into_the_users_class(tmp_path):
    SimCLR = make_simclr("pl")
    data = digits_dataset(32)
    torch.manual_seed(0)
    pretrained = SimCLR()
    dm = ForgetRetainDataModule(data, [3, 4, 5], tiny_transform(), batch_size=8)
    trainer = pl.Trainer(**trainer_kwargs(tmp_path))
    trainer.fit(pretrained, datamodule=dm)  # no callback: ordinary pretraining on everything
    src = tmp_path / "pretrained.ckpt"
    trainer.save_checkpoint(src)
    src_bytes = src.read_bytes()

    model = SimCLR.load_from_checkpoint(src)
    trainer = pl.Trainer(**trainer_kwargs(tmp_path), callbacks=[UnlearnCallback("ac", beta=1.0)])
    trainer.fit(model, datamodule=dm)
    out = tmp_path / "unlearned.ckpt"
    trainer.save_checkpoint(out)
    assert src.read_bytes() == src_bytes  # the input checkpoint is untouched

    reloaded = SimCLR.load_from_checkpoint(out)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(reloaded.state_dict()[k], v)
    ckpt = torch.load(out, weights_only=True)
    state = ckpt["callbacks"]["UnlearnCallback"]
    assert state["method"] == "ac" and state["forget_sha256"] == dm.forget_sha256


def test_resume_with_a_different_forget_set_is_refused(digits):
    dm = ForgetRetainDataModule(digits, [0, 1], tiny_transform())
    cb = UnlearnCallback("ac")
    cb._stream.datamodule, cb._forget_summary = dm, (dm.forget_sha256, 2)  # as setup() leaves them
    cb.load_state_dict(cb.state_dict())
    other = ForgetRetainDataModule(digits, [0, 2], tiny_transform())
    state = cb.state_dict()
    cb._stream.datamodule = other
    with pytest.raises(ValueError, match="different forget set"):
        cb.load_state_dict(state)
    with pytest.raises(ValueError, match="method"):
        UnlearnCallback("ft").load_state_dict(state)


def test_module_without_criterion_gets_an_actionable_error(tmp_path, digits):
    class NoCriterion(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = nn.Linear(192, 4)

        def training_step(self, batch, i):
            return self.net(batch[0][0].flatten(1)).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    dm = ForgetRetainDataModule(digits, [0, 1], tiny_transform(), batch_size=8)
    trainer = pl.Trainer(**trainer_kwargs(tmp_path), callbacks=[UnlearnCallback("ft")])
    with pytest.raises(ModuleContractError, match="criterion.*AlignmentCalibrationLoss"):
        trainer.fit(NoCriterion(), datamodule=dm)


def test_dataloaders_instead_of_datamodule_are_refused(tmp_path, digits):
    dm = ForgetRetainDataModule(digits, [0, 1], tiny_transform(), batch_size=8)
    trainer = pl.Trainer(**trainer_kwargs(tmp_path), callbacks=[UnlearnCallback("ft")])
    with pytest.raises(TypeError, match="datamodule="):
        trainer.fit(make_simclr("pl")(), train_dataloaders=dm.train_dataloader())


@pytest.mark.parametrize(
    "method, forget, match",
    [("ac", [], "forget set is\\s+empty"), ("finetune", list(range(32)), "whole dataset")],
)
def test_split_that_cannot_serve_the_method_fails_before_training(tmp_path, method, forget, match):
    model = make_simclr("pl")()
    before = _params(model)
    dm = ForgetRetainDataModule(digits_dataset(32), forget, tiny_transform(), batch_size=8)
    trainer = pl.Trainer(**trainer_kwargs(tmp_path), callbacks=[UnlearnCallback(method)])
    with pytest.raises(ValueError, match=match):
        trainer.fit(model, datamodule=dm)
    for k, v in model.state_dict().items():
        assert torch.equal(before[k], v)


def test_method_and_hyperparameters_reach_the_logger(tmp_path, digits):
    from pytorch_lightning.loggers import CSVLogger

    dm = ForgetRetainDataModule(digits, list(range(8)), tiny_transform(), batch_size=16)
    logger = CSVLogger(tmp_path)
    kw = trainer_kwargs(tmp_path, logger=logger, log_every_n_steps=1)
    trainer = pl.Trainer(**kw, callbacks=[UnlearnCallback("ac", alpha=0.8, beta=0.5)])
    trainer.fit(make_simclr("pl")(), datamodule=dm)
    hparams = (tmp_path / "lightning_logs" / "version_0" / "hparams.yaml").read_text()
    assert "unlearn/method: ac" in hparams and "unlearn/alpha: 0.8" in hparams
    metrics = (tmp_path / "lightning_logs" / "version_0" / "metrics.csv").read_text()
    assert "unlearn/forget_row_loss" in metrics and "unlearn/retain_row_loss" in metrics


def test_ac_extra_view_leaves_batch_norm_statistics_alone(tmp_path):
    """The extra pass embeds forget samples only; it must not move BatchNorm running statistics
    (audits and the unlearned model use them in eval mode): after one step they are exactly what
    the user's two forward passes (x0, x1) alone produce."""
    import copy

    seen = {}

    class Capture(pl.Callback):  # runs before UnlearnCallback pops the extra view
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen["x0"], seen["x1"] = batch[0][0].clone(), batch[0][1].clone()

    torch.manual_seed(0)
    model = make_simclr("pl")()
    reference = copy.deepcopy(model)
    dm = ForgetRetainDataModule(digits_dataset(40), list(range(0, 40, 4)), tiny_transform(), batch_size=40)
    trainer = pl.Trainer(**trainer_kwargs(tmp_path, max_steps=1),
                         callbacks=[Capture(), UnlearnCallback("ac", beta=2.0)])
    trainer.fit(model, datamodule=dm)
    reference.train()
    with torch.no_grad():
        reference(seen["x0"]), reference(seen["x1"])
    expected = {k: v for k, v in reference.state_dict().items() if "running" in k or "num_batches" in k}
    assert expected
    for key, value in expected.items():
        torch.testing.assert_close(model.state_dict()[key], value, msg=key)


def test_ac_without_beta_pairs_forget_samples_but_draws_no_extra_view(digits):
    dm = ForgetRetainDataModule(digits, [0, 1, 2, 3], tiny_transform(), batch_size=8)
    cb = UnlearnCallback("ac", beta=0.0)
    assert cb.method.pairs_forget and not cb.method.extra_view
    dm.configure(cb.method.data, extra_view=cb.method.extra_view, pair_forget=cb.method.pairs_forget)
    ds = dm.train_dataloader().dataset
    views, _, key = ds[2]
    assert len(views) == 2 and hasattr(ds, "partner")


def test_retrain_refuses_parameters_it_cannot_reinitialise():
    from lightly_unlearn.adapters import reinitialise

    class WithToken(nn.Module):
        def __init__(self):
            super().__init__()
            self.token = nn.Parameter(torch.ones(4))
            self.attention = nn.MultiheadAttention(4, 1)

    model = WithToken()
    with torch.no_grad():
        model.attention.in_proj_weight.fill_(3.0)
    with pytest.raises(ModuleContractError, match="token.*reinitialise_parameters"):
        reinitialise(model)
    assert not torch.all(model.attention.in_proj_weight == 3.0)  # _reset_parameters ran
