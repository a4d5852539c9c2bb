"""The demo's embedded digits and its fast view transforms."""

import torch

from lightly_unlearn.data import ForgetRetainDataModule
from lightly_unlearn.demo.data import (
    BatchedDigitsAugment,
    DigitsViewTransform,
    load_digits_dataset,
)


def test_digits_items_and_views():
    ds = load_digits_dataset()
    assert len(ds) == 1797
    image, target = ds[0]
    assert image.shape == (1, 8, 8) and image.dtype == torch.float32 and isinstance(target, int)
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    views = DigitsViewTransform()(image)
    assert len(views) == 2 and all(v.shape == (1, 8, 8) for v in views)
    assert not torch.equal(views[0], views[1])


def test_per_sample_and_batched_augment_agree_in_distribution():
    torch.manual_seed(0)
    ds = load_digits_dataset()
    x = ds.images[:200]
    batched = torch.cat([BatchedDigitsAugment()(x) for _ in range(10)])
    view = DigitsViewTransform().transforms[0]
    single = torch.stack([view(x[i % 200]) for i in range(2000)])
    diff = (batched.mean(0) - single.mean(0)).abs().max()
    assert diff < 0.05


def test_works_with_forget_retain_datamodule():
    ds = load_digits_dataset()
    sub = torch.utils.data.Subset(ds, list(range(40)))
    dm = ForgetRetainDataModule(
        sub, forget_indices=range(4), transform=DigitsViewTransform(), batch_size=36
    )
    dm.configure("mixed", extra_view=True)
    (views, targets, keys) = next(iter(dm.train_dataloader()))
    assert len(views) == 3 and views[0].shape == (36, 1, 8, 8)
