"""Loss adapters: per-row terms equal lightly's / open_clip's own values, lookup, AC over them."""

from __future__ import annotations

import copy

import pytest
import pytorch_lightning as pl
import torch
from conftest import (
    digits_dataset,
    forget_view_capture,
    make_byol,
    make_simsiam,
    tiny_transform,
    trainer_kwargs,
)
from lightly.loss import DCLLoss, DCLWLoss, NegativeCosineSimilarity, NTXentLoss
from torch import nn

from lightly_unlearn import ForgetRetainDataModule, UnlearnCallback, registry
from lightly_unlearn.callbacks.unlearning.batch_norm import frozen_batch_norm_stats
from lightly_unlearn.errors import ModuleContractError
from lightly_unlearn.losses.adapter import RowTermsAdapter, describe_adapters, find_adapter
from lightly_unlearn.losses.alignment_calibration import (
    AlignmentCalibrationLoss,
    alignment_calibration_objective,
)
from lightly_unlearn.losses.rows import RowTerms
from lightly_unlearn.methods.ac import AlignmentCalibration


def _z(n=6, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)


def _clip_loss():
    open_clip = pytest.importorskip("open_clip")
    return open_clip.ClipLoss()


CRITERIA = {
    "ntxent": lambda: NTXentLoss(temperature=0.3),
    "ntxent_bank": lambda: NTXentLoss(memory_bank_size=(8, 5)),
    "dcl": lambda: DCLLoss(temperature=0.2),
    "dclw": lambda: DCLWLoss(temperature=0.2, sigma=0.7),
    "negative_cosine": NegativeCosineSimilarity,
}


@pytest.mark.parametrize("key", sorted(CRITERIA))
def test_row_terms_mean_is_lightlys_value_and_gradient(key):
    z0, z1 = _z()
    z0.requires_grad_(True)
    ours = CRITERIA[key]()
    if key == "ntxent_bank":  # a bank that already holds keys
        ours(*_z(8, 5, seed=1))
    theirs = copy.deepcopy(ours)  # same bank content
    adapter = find_adapter(ours)
    terms = adapter.row_terms(ours, z0, z1)
    expected = theirs(z0, z1)
    torch.testing.assert_close(terms.loss.mean(), expected)
    assert terms.loss.shape[0] == terms.rows_per_sample * z0.shape[0]
    (g_ours,) = torch.autograd.grad(terms.loss.mean(), z0)
    (g_theirs,) = torch.autograd.grad(expected, z0)
    torch.testing.assert_close(g_ours, g_theirs)
    if key == "ntxent_bank":  # the bank was updated once, as by the criterion itself
        torch.testing.assert_close(ours.memory_bank.bank, theirs.memory_bank.bank)


def test_dcl_rows_exclude_the_positive_from_the_uniformity_part():
    z0, z1 = _z(4, 3)
    terms = find_adapter(DCLLoss(temperature=0.5)).row_terms(DCLLoss(temperature=0.5), z0, z1)
    a, b = nn.functional.normalize(z0, dim=1), nn.functional.normalize(z1, dim=1)
    # row 0 (view-0 anchor of sample 0): negatives are the other samples of both views
    negatives = torch.cat([a[0] @ a[1:].T, a[0] @ b[1:].T]) / 0.5
    torch.testing.assert_close(terms.logsumexp[0], torch.logsumexp(negatives, 0))
    torch.testing.assert_close(terms.positive[4], (b[0] @ a[0]) / 0.5)  # view-1 anchor block


def test_clip_adapter_matches_open_clip():
    loss = _clip_loss()
    img = nn.functional.normalize(torch.randn(5, 8), dim=1)
    txt = nn.functional.normalize(torch.randn(5, 8), dim=1)
    adapter = find_adapter(loss)
    assert adapter.name == "clip" and adapter.image_text
    terms = adapter.row_terms(loss, img, txt, torch.tensor(7.0))
    torch.testing.assert_close(terms.loss.mean(), loss(img, txt, torch.tensor(7.0)))


def test_lookup_picks_the_adapter_of_each_loss_and_the_most_specific_one():
    assert find_adapter(NTXentLoss()).name == "ntxent"
    assert find_adapter(AlignmentCalibrationLoss()).name == "ntxent"
    assert find_adapter(DCLWLoss()).name == "dcl"
    assert find_adapter(NegativeCosineSimilarity()).name == "negative_cosine_similarity"
    assert find_adapter(nn.MSELoss()) is None
    for name in registry.available("loss_adapter"):
        assert name in describe_adapters()

    class MyCosine(NegativeCosineSimilarity):
        pass

    class MyAdapter(RowTermsAdapter):
        name = "my_cosine"
        criterion_types = (MyCosine,)

    registry.register("loss_adapter", "my_cosine", MyAdapter)
    try:  # a subclass with its own adapter: that adapter wins over the parent's
        assert isinstance(find_adapter(MyCosine()), MyAdapter)
        assert find_adapter(NegativeCosineSimilarity()).name == "negative_cosine_similarity"
    finally:
        registry.unregister("loss_adapter", "my_cosine")


def test_negative_cosine_anchor_is_the_own_first_view_in_both_symmetrised_calls():
    loss = NegativeCosineSimilarity()
    adapter = find_adapter(loss)
    p0, z1, p1, z0 = (torch.randn(3, 4) for _ in range(4))
    # BYOL: criterion(p0, z1) then criterion(p1, z0); the own first view is p0, then z0
    assert adapter.anchor(loss, p0, z1, call=1) is p0 and adapter.anchor(loss, p1, z0, call=2) is z0
    z = torch.randn(3, 4)
    p = torch.randn(3, 4, requires_grad=True)
    assert adapter.extra_embedding((z, p)) is z  # SimSiam forward: (z.detach(), p) -> target z
    assert adapter.extra_embedding(p) is p


def _negcos_terms(a, b):
    return find_adapter(NegativeCosineSimilarity()).row_terms(NegativeCosineSimilarity(), a, b)


def test_two_symmetrised_calls_average_to_the_objective_over_both_calls_rows():
    p0, z1, p1, z0 = (torch.randn(8, 4) for _ in range(4))
    forget = torch.tensor([True, False, False, True, False, False, False, True])
    t1, t2 = _negcos_terms(p0, z1), _negcos_terms(p1, z0)
    both = RowTerms(torch.cat([t1.positive, t2.positive]), torch.cat([t1.logsumexp, t2.logsumexp]), 2)
    for alpha, gamma in [(1.0, None), (0.3, 5.0)]:
        per_call = [alignment_calibration_objective(t, forget, alpha, gamma) for t in (t1, t2)]
        torch.testing.assert_close(
            0.5 * (per_call[0] + per_call[1]), alignment_calibration_objective(both, forget, alpha, gamma)
        )
    # no uniformity term: gamma changes nothing
    torch.testing.assert_close(
        alignment_calibration_objective(t1, forget, 0.5, 0.0),
        alignment_calibration_objective(t1, forget, 0.5, 100.0),
    )
    # retain rows keep the user's loss: with no forget sample it is lightly's value
    none = torch.zeros(8, dtype=torch.bool)
    torch.testing.assert_close(
        alignment_calibration_objective(t1, none), NegativeCosineSimilarity()(p0, z1)
    )


def test_unsupported_criterion_error_lists_the_installed_adapters(tmp_path):
    model = make_simsiam()()
    model.criterion = nn.MSELoss()
    dm = ForgetRetainDataModule(digits_dataset(16), [0, 1], tiny_transform(), batch_size=8)
    trainer = pl.Trainer(**trainer_kwargs(tmp_path), callbacks=[UnlearnCallback(method="finetune")])
    with pytest.raises(ModuleContractError, match="MSELoss") as err:
        trainer.fit(model, datamodule=dm)
    for name in ("ntxent", "dcl", "negative_cosine_similarity", "clip", "lightly_unlearn.loss_adapters"):
        assert name in str(err.value)


@pytest.mark.parametrize("make", [make_byol, make_simsiam], ids=["byol", "simsiam"])
def test_ac_extra_view_is_embedded_once_and_used_by_both_calls(tmp_path, make):
    seen = []

    class Spy(AlignmentCalibration):
        def objective(self, ctx):
            seen.append((ctx.anchor, ctx.extra, ctx.terms))
            return super().objective(ctx)

    torch.manual_seed(0)
    model = make()()
    embeds = []
    name = "forward_momentum" if hasattr(model, "forward_momentum") else "forward"
    original = getattr(model, name)

    def counting(x):
        embeds.append(x.shape[0])
        return original(x)

    setattr(model, name, counting)
    dm = ForgetRetainDataModule(digits_dataset(16), [0, 1, 2, 3], tiny_transform(), batch_size=8)
    cb = UnlearnCallback(method=Spy(alpha=1.0, beta=2.0))
    trainer = pl.Trainer(**trainer_kwargs(tmp_path, max_steps=1), callbacks=[cb])
    trainer.fit(model, datamodule=dm)
    assert len(seen) == 2  # one step, the criterion called twice
    (a1, e1, t1), (a2, e2, t2) = seen
    assert e1 is not None and e2 is e1  # embedded once, both calls calibrate
    assert embeds.count(8) == 3  # two views in the user's step + one extra view, whole batch
    assert t1.rows_per_sample == t2.rows_per_sample == 1
    # the anchor of each call is the own first view's embedding: for BYOL p0 then z0 (target)
    assert a1.requires_grad != a2.requires_grad


def test_list_says_what_gamma_means_for_each_loss(capsys):
    from lightly_unlearn.cli import main

    assert main(["list", "loss"]) == 0
    out = capsys.readouterr().out
    assert "negative_cosine_similarity" in out and "unused" in out
    assert "dcl" in out and "positive excluded" in out
    assert "arXiv:2406.03603" in out


def _own_view_similarity(name, model, v1, v3):
    """What positive calibration penalises, per model: the own first view's online embedding
    against the extra view's target embedding."""
    if name == "byol":
        return nn.functional.cosine_similarity(model(v1), model.forward_momentum(v3))
    if name == "simsiam":
        return nn.functional.cosine_similarity(model(v1)[1], model(v3)[0])
    return nn.functional.cosine_similarity(model(v1), model(v3))


@pytest.mark.parametrize("name", ["byol", "simsiam", "dcl"])
def test_ac_positive_calibration_lowers_own_view_similarity_beyond_infonce(tmp_path, name):
    """One step from identical weights and views: β > 0 leaves the forget samples' own views less
    similar (as the loss measures it) than β ≈ 0 does, on BYOL, SimSiam and DCL."""
    from conftest import MODEL_FACTORIES

    data = digits_dataset(40)
    forget = list(range(0, 40, 2))
    seen = {}
    results = {}
    for beta in (1e-9, 20.0):  # a vanishing beta keeps the same data pipeline (extra view drawn)
        torch.manual_seed(0)
        model = MODEL_FACTORIES[name]()()
        dm = ForgetRetainDataModule(data, forget, tiny_transform(), batch_size=40)
        cb = UnlearnCallback("ac", alpha=1.0, beta=beta, sync_momentum=False)
        trainer = pl.Trainer(**trainer_kwargs(tmp_path, max_steps=1), callbacks=[forget_view_capture(forget, seen), cb])
        trainer.fit(model, datamodule=dm)
        with torch.no_grad(), frozen_batch_norm_stats(model):  # batch statistics, as in training
            results[beta] = _own_view_similarity(name, model, seen["v1"], seen["v3"]).mean().item()
    assert results[20.0] < results[1e-9] - 1e-3, results
