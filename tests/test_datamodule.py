"""ForgetRetainDataModule: lightly-shaped batches, splits and input validation."""

import pytest
import torch
import torchvision
from conftest import digits_dataset, tiny_transform

from lightly_unlearn import ForgetRetainDataModule
from lightly_unlearn.errors import ForgetSetError


def test_batches_are_lightly_shaped_with_int_keys(digits):
    dm = ForgetRetainDataModule(digits, [0, 5, 9], tiny_transform(), batch_size=8)
    batch = next(iter(dm.train_dataloader()))
    assert isinstance(batch, list) and len(batch) == 3
    (x0, x1), targets, keys = batch  # old lightly examples unpack like this
    assert x0.shape == x1.shape == (8, 3, 8, 8)
    assert targets.dtype == torch.long and keys.dtype == torch.long
    for t, k in zip(targets.tolist(), keys.tolist()):
        assert digits[k][1] == t


def test_torchvision_dataset_and_lightly_dataset():
    from lightly.data import LightlyDataset

    fake = torchvision.datasets.FakeData(size=20, image_size=(3, 8, 8), num_classes=3)
    dm = ForgetRetainDataModule(fake, [1, 2], tiny_transform(), batch_size=4)
    x0, x1 = next(iter(dm.train_dataloader()))[0]
    assert x0.shape == (4, 3, 8, 8)
    lightly_ds = LightlyDataset.from_torch_dataset(
        torchvision.datasets.FakeData(size=20, image_size=(3, 8, 8))
    )
    dm = ForgetRetainDataModule(lightly_ds, [1, 2], tiny_transform(), batch_size=4)
    views, targets, keys = next(iter(dm.train_dataloader()))
    assert len(views) == 2 and keys.shape == (4,)


def test_subset_dataset_and_boolean_mask(digits):
    sub = torch.utils.data.Subset(digits, list(range(10, 40)))
    mask = torch.zeros(30, dtype=torch.bool)
    mask[[0, 3]] = True
    dm = ForgetRetainDataModule(sub, mask, tiny_transform(), batch_size=4)
    assert dm.forget_indices.tolist() == [0, 3]
    assert len(dm.retain) == 28 and len(dm.forget) == 2
    assert dm.forget[1] is sub[3] or dm.forget[1][1] == sub[3][1]
    assert dm.forget_fraction == pytest.approx(2 / 30)


@pytest.mark.parametrize("mode", ["retain", "forget"])
def test_streams_contain_only_their_split(digits, mode):
    forget = list(range(0, 64, 4))
    dm = ForgetRetainDataModule(digits, forget, tiny_transform(), batch_size=4)
    dm.configure(mode)
    keys = torch.cat([b[2] for b in dm.train_dataloader()])
    is_forget = torch.isin(keys, torch.tensor(forget))
    assert bool(is_forget.all()) if mode == "forget" else not bool(is_forget.any())


def test_ac_stream_pairs_forget_samples_with_another_forget_sample(digits):
    forget = [0, 1, 2, 3]
    dm = ForgetRetainDataModule(digits, forget, tiny_transform(), batch_size=64)
    dm.configure("mixed", extra_view=True)
    ds = dm.train_dataloader().dataset
    for _ in range(50):
        assert ds.partner(2) in (0, 1, 3)
    views, _, key = ds[2]
    assert len(views) == 3 and key == 2
    retain_views, _, _ = ds[10]
    # retain samples carry a real extra view too: the whole batch's extra views are embedded in
    # one pass, with the same BatchNorm batch composition as the anchors
    assert len(retain_views) == 3 and torch.count_nonzero(retain_views[2]) > 0


def test_eval_transform_is_deterministic(digits):
    dm = ForgetRetainDataModule(digits, [0], tiny_transform(), batch_size=4)
    a, b = dm.eval_transform(digits[3][0]), dm.eval_transform(digits[3][0])
    assert a.shape == (3, 8, 8) and torch.equal(a, b)


@pytest.mark.parametrize(
    "ids, match",
    [
        ([0, 64], "out of range"),
        ([-1, 3], "negative"),
        ([0.0, 1.5], "integers"),
        ([1, 1, 2], "more than once"),
        ("12", "sequence"),
        ({1, 2}, "sorted list"),
        (torch.zeros(5, dtype=torch.bool), "length"),
    ],
)
def test_bad_forget_ids_fail_with_a_fix(digits, ids, match):
    with pytest.raises(ForgetSetError, match=match):
        ForgetRetainDataModule(digits, ids, tiny_transform())


def test_one_view_transform_and_dataset_with_transform_are_refused(digits):
    with pytest.raises(ValueError, match="at least two views"):
        ForgetRetainDataModule(digits, [0], lambda img: torch.zeros(3, 8, 8))
    fake = torchvision.datasets.FakeData(size=8, transform=torchvision.transforms.ToTensor())
    with pytest.raises(ValueError, match="already has a transform"):
        ForgetRetainDataModule(fake, [0], tiny_transform())


def test_forget_stream_is_sized_from_the_forget_set(digits):
    # a deletion request smaller than batch_size is one batch of the forget samples, not an error
    dm = ForgetRetainDataModule(digits_dataset(40), [0, 1, 2], tiny_transform(), batch_size=8)
    dm.configure("forget")
    assert (dm.layout().num_batches, dm.layout().batch_size) == (1, 3)
    dm = ForgetRetainDataModule(digits_dataset(40), [0, 1, 2], tiny_transform(), batch_size=8,
                                forget_batch_size=2)
    dm.configure("forget")
    assert (dm.layout().num_batches, dm.layout().batch_size) == (2, 2)  # 3 forget + 1 retain filler


def test_state_dict_refuses_another_forget_set(digits):
    a = ForgetRetainDataModule(digits, [0, 1], tiny_transform())
    b = ForgetRetainDataModule(digits, [0, 2], tiny_transform())
    b.load_state_dict(b.state_dict())
    with pytest.raises(ValueError, match="different forget set"):
        b.load_state_dict(a.state_dict())


@pytest.mark.parametrize("namespace", ["pl", "L"])
def test_users_batch_transfer_hook_still_runs_in_both_trainers(tmp_path, digits, namespace):
    import lightning.pytorch as L
    import pytorch_lightning as pl
    from conftest import make_simclr, trainer_kwargs

    Base = make_simclr(namespace)
    calls = []

    class WithGpuAugmentation(Base):
        def on_after_batch_transfer(self, batch, dataloader_idx):
            calls.append(dataloader_idx)
            return batch

    dm = ForgetRetainDataModule(digits, [0, 1], tiny_transform(), batch_size=16)
    trainer_cls = pl.Trainer if namespace == "pl" else L.Trainer
    with __import__("warnings").catch_warnings(record=True) as caught:
        __import__("warnings").simplefilter("always")
        trainer_cls(**trainer_kwargs(tmp_path)).fit(WithGpuAugmentation(), datamodule=dm)
    assert len(calls) == 4
    assert not any("from `LightningDataModule`" in str(w.message) for w in caught)
    assert not any("length of `list`" in str(w.message) or "val_dataloader" in str(w.message) for w in caught)


def test_splits_are_built_once_as_arrays_not_per_sample_lists(digits):
    import numpy as np

    dm = ForgetRetainDataModule(digits, [9, 0, 5], tiny_transform(), batch_size=8)
    assert dm.forget_indices.dtype == torch.long and dm.forget_indices.tolist() == [0, 5, 9]
    assert dm.retain is dm.retain and dm.forget is dm.forget  # not rebuilt on each access
    assert isinstance(dm.retain.indices, np.ndarray) and not dm.retain.indices.flags.writeable
    assert dm.retain.keys().tolist() == dm.retain_indices.tolist()
    dm.configure("mixed", extra_view=True)
    assert isinstance(dm.train_dataloader().dataset.indices, range)  # every position, no list
    dm.configure("retain")
    assert isinstance(dm.train_dataloader().dataset.indices, np.ndarray)


def test_forget_set_hash_is_the_documented_digest():
    # receipts and checkpoints record this value: a resume compares it, so it must not change
    import hashlib

    from lightly_unlearn.data.datamodule import forget_set_sha256

    assert forget_set_sha256(torch.tensor([42, 3, 17])) == hashlib.sha256(b"3,17,42").hexdigest()


@pytest.mark.parametrize("indices", [range(6), [0, 1, 2, 2, 3, 4, 5]])
def test_single_forget_sample_is_paired_with_every_other_sample(digits, indices):
    from lightly_unlearn.data.pairing import ForgetPairedViews

    paired = ForgetPairedViews(digits, indices, [2], tiny_transform())
    torch.manual_seed(0)
    partners = {paired.partner(2) for _ in range(200)}
    assert partners == {0, 1, 3, 4, 5}
    assert paired.forget_position(2) == 0 and paired.forget_position(3) is None
