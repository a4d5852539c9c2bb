"""Every deletion request is honoured: each forget sample is unlearned in every epoch, at any
forget-set size and batch size, and a callback fitted twice unlearns twice."""

from __future__ import annotations

import collections
import itertools

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from conftest import (
    digits_dataset,
    make_moco,
    make_simclr,
    registered_methods,
    trainer_kwargs,
    trains_on_forget,
)
from torch.utils.data import DataLoader

from lightly_unlearn import ForgetRetainDataModule, UnlearnCallback
from lightly_unlearn.data import sampling
from lightly_unlearn.data.sampling import (
    ForgetCoveringSampler,
    ForgetOnlySampler,
    ShuffledSampler,
    forget_layout,
    mixed_layout,
)
from lightly_unlearn.data.validation import validate_forget_indices
from lightly_unlearn.errors import ForgetCoverageError, ForgetSetError

METHODS = registered_methods()
TRAINS_ON_FORGET = {m for m in METHODS if trains_on_forget(m)}


# -- the plan, for every rank at once --------------------------------------------------------
@pytest.mark.parametrize(
    "n, n_forget, batch, world",
    [(400, 1, 256, 1), (400, 5, 256, 1), (400, 32, 64, 1), (400, 200, 256, 1), (400, 398, 64, 1),
     (402, 400, 64, 1), (17, 3, 4, 2), (400, 1, 64, 2), (401, 37, 16, 3), (100, 97, 256, 2)],
)
def test_mixed_plan_covers_every_forget_sample_exactly_once(n, n_forget, batch, world):
    rng = np.random.default_rng(n + n_forget)
    forget = sorted(rng.choice(n, n_forget, replace=False).tolist())
    retain = sorted(set(range(n)) - set(forget))
    per_rank_forget = -(-n_forget // world)
    layout = mixed_layout(n // world, per_rank_forget, batch)
    for epoch in (0, 1, 7):
        seen: collections.Counter = collections.Counter()
        for rank in range(world):
            sampler = ForgetCoveringSampler(
                list(range(n)), forget, retain, layout, num_replicas=world, rank=rank, seed=3
            )
            sampler.set_epoch(epoch)
            batches = sampler.plan()
            assert len(batches) == layout.num_batches
            assert all(len(b) == layout.batch_size <= batch for b in batches)
            assert list(sampler) == [i for b in batches for i in b] and len(sampler) == layout.samples
            seen.update(i for b in batches for i in b)
        assert all(seen[f] == 1 for f in forget), "a forget sample missed or served twice"
        assert max(seen.values()) == 1, "no sample twice in an epoch when retain samples suffice"


def test_plan_changes_with_epoch_and_is_reproducible():
    args = (list(range(50)), [1, 2, 3], [i for i in range(50) if i > 3], mixed_layout(50, 3, 8))
    a, b = ForgetCoveringSampler(*args, seed=0), ForgetCoveringSampler(*args, seed=0)
    assert a.plan() == b.plan()
    b.set_epoch(1)
    assert a.plan() != b.plan()


def _reference_plan(sampler: ForgetCoveringSampler) -> list[list[int]]:
    """The mixed plan written one element at a time: the vectorised plan must equal it, so a
    seed gives the same batches whichever way the plan is computed."""
    g = torch.Generator()
    g.manual_seed(sampler.seed + sampler.epoch)
    world, rank, layout = sampler.num_replicas, sampler.rank, sampler.layout
    forget = sampler.forget_positions[torch.randperm(len(sampler.forget_positions), generator=g)]
    retain = sampler.retain_positions[torch.randperm(len(sampler.retain_positions), generator=g)]
    need = [layout.samples - len(forget[r::world]) for r in range(world)]
    start = sum(need[:rank])
    fill = [int(retain[(start + i) % len(retain)]) for i in range(need[rank])]
    mine = forget[rank::world].tolist()
    batches, offset = [], 0
    for p in range(layout.num_batches):
        part = mine[p :: layout.num_batches]
        take = layout.batch_size - len(part)
        batch = part + fill[offset : offset + take]
        offset += take
        batches.append([batch[i] for i in torch.randperm(len(batch), generator=g).tolist()])
    return batches


@pytest.mark.parametrize("n, n_forget, batch, world", [(400, 1, 64, 1), (400, 200, 256, 1),
                                                       (402, 400, 64, 1), (401, 37, 16, 3),
                                                       (100, 97, 256, 2), (1000, 300, 8, 2)])
def test_vectorised_mixed_plan_equals_the_element_wise_plan(n, n_forget, batch, world):
    forget = sorted(np.random.default_rng(n_forget).choice(n, n_forget, replace=False).tolist())
    retain = sorted(set(range(n)) - set(forget))
    layout = mixed_layout(n // world, -(-n_forget // world), batch)
    for rank in range(world):
        sampler = ForgetCoveringSampler(range(n), torch.tensor(forget), retain, layout,
                                        num_replicas=world, rank=rank, seed=11)
        for epoch in (0, 5):
            sampler.set_epoch(epoch)
            assert sampler.plan() == _reference_plan(sampler)


@pytest.mark.parametrize("n, world", [(1000, 1), (1001, 2), (17, 3)])
def test_shuffled_sampler_serves_what_distributed_sampler_serves(n, world):
    from torch.utils.data import DistributedSampler

    for rank in range(world):
        ours = ShuffledSampler(range(n), num_replicas=world, rank=rank, seed=4)
        torch_s = DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=True, seed=4,
                                     drop_last=True)
        for epoch in (0, 2):
            ours.set_epoch(epoch), torch_s.set_epoch(epoch)
            assert list(ours) == list(torch_s) and len(ours) == len(torch_s)


@pytest.mark.parametrize("n_forget, fbs, world", [(1, None, 1), (5, 2, 1), (37, 8, 2), (64, 16, 3)])
def test_forget_only_stream_draws_fillers_without_permuting_the_retain_set(monkeypatch, n_forget, fbs, world):
    n = 5000
    forget = list(range(3, 3 + 7 * n_forget, 7))
    retain = sorted(set(range(n)) - set(forget))
    layout = forget_layout(-(-n_forget // world), 256, fbs)
    sizes = []
    randperm = torch.randperm
    monkeypatch.setattr(sampling.torch, "randperm", lambda k, **kw: sizes.append(k) or randperm(k, **kw))
    plans = []
    for rank in range(world):
        sampler = ForgetOnlySampler(range(n), forget, retain, layout, num_replicas=world, rank=rank, seed=2)
        sampler.set_epoch(1)
        plans.append(sampler.plan())
    assert max(sizes) < len(retain) // 2, "the retain set was permuted"
    served = collections.Counter(k for plan in plans for b in plan for k in b)
    assert all(served[f] == 1 for f in forget)
    assert max(served.values()) == 1, "a filler served twice (fillers are distinct across devices)"
    assert sum(served.values()) == world * layout.samples
    again = ForgetOnlySampler(range(n), forget, retain, layout, num_replicas=world, rank=0, seed=2)
    again.set_epoch(1)
    assert again.plan() == plans[0]


def test_forget_layout_sizes_batches_from_the_forget_set():
    assert forget_layout(1, 256, None).batch_size == 2  # one forget sample + one retain negative
    assert (forget_layout(5, 256, None).num_batches, forget_layout(5, 256, None).batch_size) == (1, 5)
    assert forget_layout(101, 64, None).num_batches == 2
    assert forget_layout(32, 64, 8).num_batches == 4


# -- through Lightning: count anchors and fetches per epoch ---------------------------------------
class CountingDataset(torch.utils.data.Dataset):
    """Wraps the user's dataset and counts how often each position is fetched."""

    def __init__(self, items):
        self.items, self.fetches = items, collections.Counter()

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        self.fetches[i] += 1
        return self.items[i]


class AnchorCounter(pl.Callback):
    """Counts, per epoch, how often each key is a sample (anchor) of a training batch."""

    def __init__(self):
        self.epochs: list[collections.Counter] = []

    def on_train_epoch_start(self, trainer, pl_module):
        self.epochs.append(collections.Counter())

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.epochs[-1].update(batch[2].tolist())


def _fast_views():
    from lightly.transforms.multi_view_transform import MultiViewTransform
    from torchvision.transforms import v2

    view = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])
    return MultiViewTransform([view, view])


_DATA = digits_dataset(400)


_FAST = {("simclr", "gradient_ascent", 1, 256), ("simclr", "neggrad", 5, 256), ("simclr", "ac", 1, 64),
         ("moco", "ac", 32, 64)}
_MATRIX = [("simclr", m, f, b) for m, f, b in itertools.product(METHODS, (1, 5, 32), (64, 256))] + [
    ("moco", m, f, 64) for m in METHODS for f in (1, 32)]


@pytest.mark.parametrize(
    "model, method, n_forget, batch",
    [pytest.param(*case, marks=() if case in _FAST else pytest.mark.slow) for case in _MATRIX],
)
def test_every_forget_sample_is_served_every_epoch(tmp_path, model, method, n_forget, batch):
    data = CountingDataset(_DATA)
    forget = list(range(7, 7 + 11 * n_forget, 11))
    dm = ForgetRetainDataModule(data, forget, _fast_views(), batch_size=batch)
    module = (make_simclr if model == "simclr" else make_moco)("pl")()
    counter = AnchorCounter()
    cb = UnlearnCallback(method)
    trainer = pl.Trainer(**trainer_kwargs(tmp_path, max_epochs=2, callbacks=[cb, counter]))
    data.fetches.clear()
    trainer.fit(module, datamodule=dm)
    assert len(counter.epochs) == 2
    for epoch in counter.epochs:
        if method in TRAINS_ON_FORGET:
            assert all(epoch[f] == 1 for f in forget), f"forget anchors per epoch: {[epoch[f] for f in forget]}"
        else:
            assert not any(epoch[f] for f in forget)
    if method in TRAINS_ON_FORGET:
        assert all(data.fetches[f] >= 2 for f in forget)  # fetched in each of the 2 epochs
        assert trainer.callback_metrics["unlearn/forget_seen"] == n_forget


def test_a_loader_that_skips_forget_samples_is_refused(tmp_path):
    class SkippingDataModule(ForgetRetainDataModule):
        def train_dataloader(self):  # a user-made loader without the forget samples
            from lightly_unlearn.data.views import KeyedViews

            ds = KeyedViews(self.dataset, self.retain_indices.tolist(), self.transform)
            return DataLoader(ds, batch_size=16, shuffle=True, drop_last=True)

    dm = SkippingDataModule(digits_dataset(64), [1, 2, 3], _fast_views(), batch_size=16)
    trainer = pl.Trainer(**trainer_kwargs(tmp_path, callbacks=[UnlearnCallback("neggrad")]))
    with pytest.raises(ForgetCoverageError, match="served 0 of 3 forget samples"):
        trainer.fit(make_simclr("pl")(), datamodule=dm)


# -- a callback fitted twice unlearns twice ---------------------------------------------------------
def test_reused_callback_syncs_momentum_and_resets_bank_on_second_fit(tmp_path):
    dm = ForgetRetainDataModule(digits_dataset(64), [1, 2, 3, 4], _fast_views(), batch_size=16)
    module = make_moco("pl")()
    cb = UnlearnCallback("finetune")
    for _ in range(2):
        pl.Trainer(**trainer_kwargs(tmp_path, callbacks=[cb])).fit(module, datamodule=dm)
        for online, momentum in (("backbone", "backbone_momentum"),
                                 ("projection_head", "projection_head_momentum")):
            for a, b in zip(getattr(module, online).parameters(), getattr(module, momentum).parameters()):
                assert torch.equal(a, b)
        bank = module.criterion.memory_bank
        assert int(bank.bank_ptr) == 0  # re-initialised when the fit ended


def test_reused_retrain_callback_reinitialises_after_a_resumed_fit(tmp_path):
    # fit 1, then fit 2 resumed from fit 1's checkpoint (restores the callback's state), then
    # fit 3 from scratch with the same callback: fit 3 must re-initialise again
    dm = ForgetRetainDataModule(digits_dataset(64), [1, 2, 3, 4], _fast_views(), batch_size=16)
    module = make_simclr("pl")()
    cb = UnlearnCallback("retrain")
    seen = []

    class Spy(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if batch_idx == 0:
                seen.append(pl_module.backbone[1].weight.detach().clone())

    kw = dict(trainer_kwargs(tmp_path, callbacks=[cb, Spy()]))
    trainer = pl.Trainer(**kw)
    trainer.fit(module, datamodule=dm)
    trainer.save_checkpoint(tmp_path / "one.ckpt")
    pl.Trainer(**{**kw, "max_epochs": 2}).fit(module, datamodule=dm, ckpt_path=tmp_path / "one.ckpt")
    with torch.no_grad():
        module.backbone[1].weight.fill_(0.5)  # a recognisable "given" model
    pl.Trainer(**kw).fit(module, datamodule=dm)
    assert not torch.all(seen[-1] == 0.5), "retrain did not re-initialise on the third fit"


# -- forget ids that cannot be misread ---------------------------------------------------------------
@pytest.mark.parametrize(
    "ids, message",
    [([True, 5, 9], "mixes booleans with integers"),
     (np.array([0, 1, 1, 0, 1, 0]), r"looks like a mask.*astype\(bool\)"),
     ([0, 1, 1, 0, 1, 0], r"looks like a mask"),
     ([2**70], "within int64"),
     (torch.tensor([1, 2], device="meta"), "'meta' device"),
     ([1, 1], "more than once")],
)
def test_forget_ids_that_could_be_misread_are_refused(ids, message):
    with pytest.raises(ForgetSetError, match=message):
        validate_forget_indices(ids, 6)


def test_duplicate_advice_never_changes_the_forget_set():
    with pytest.raises(ForgetSetError) as info:
        validate_forget_indices([3, 3, 4], 6)
    assert "set(" not in str(info.value)


def test_fit_start_says_what_is_happening(tmp_path, caplog):
    dm = ForgetRetainDataModule(digits_dataset(64), [1, 2, 3], _fast_views(), batch_size=16)
    trainer = pl.Trainer(**trainer_kwargs(tmp_path, callbacks=[UnlearnCallback("ac", beta=1.0)]))
    # the line goes to Lightning's rank-zero logger (another test may have quieted its parents)
    with caplog.at_level("INFO", logger="lightning.pytorch.utilities.rank_zero"):
        trainer.fit(make_simclr("pl")(), datamodule=dm)
    line = next(r.getMessage() for r in caplog.records if "UnlearnCallback:" in r.getMessage())
    assert "ac (alpha=1.0, beta=1.0" in line and "forget 3 / retain 61" in line
    assert "stream 'mixed': 4 batches of 16" in line and "0.8 forget samples per batch" in line


def test_retain_only_method_with_one_retain_sample_says_why():
    dm = ForgetRetainDataModule(digits_dataset(10), list(range(9)), _fast_views(), batch_size=64)
    with pytest.raises(ValueError, match="retain set has 1 sample.*forget fewer samples|retain set has 1 sample"):
        dm.configure("retain")
    dm.configure("mixed")  # the methods that train on the forget set still work
    assert dm.layout().samples >= 9


def test_forget_membership_is_a_sorted_lookup_that_marks_only_members_seen():
    from lightly_unlearn.callbacks.unlearning.coverage import ForgetCoverage

    coverage = ForgetCoverage()
    coverage.start(torch.tensor([40, 10, 20]), "cpu")  # any order
    # 15 and 25 fall between forget keys, 5 before and 99 after all of them; 10 twice
    mask = coverage.mask(torch.tensor([15, 10, 5, 25, 99, 10]))
    assert mask.tolist() == [False, True, False, False, False, True]
    assert coverage.keys.tolist() == [10, 20, 40] and coverage.seen.tolist() == [2, 0, 0]
    assert coverage.mask([40, 41]).tolist() == [True, False]  # keys as a list, as a batch may carry
    assert coverage.seen.tolist() == [2, 0, 1]
    coverage.start_epoch()
    assert coverage.seen.tolist() == [0, 0, 0] and coverage.batches == 0
    empty = ForgetCoverage()
    empty.start(torch.zeros(0, dtype=torch.long), "cpu")
    assert empty.mask(torch.tensor([1, 2])).tolist() == [False, False]
