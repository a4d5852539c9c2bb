"""Multi-crop: every view of the transform is carried (DINO's 2 global + N local crops), the
extra AC view is the last one, and lightly's DINOLoss is unlearned with its own per-sample terms."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from conftest import digits_dataset, dino_transform, make_dino, trainer_kwargs
from PIL import Image

from lightly_unlearn import ForgetRetainDataModule, UnlearnCallback
from lightly_unlearn.data.pairing import ForgetPairedViews
from lightly_unlearn.losses.adapter import find_adapter
from lightly_unlearn.losses.dino import DINOAdapter


def solid_images(n: int):
    """Image ``i`` is one flat grey level, so every crop of it tells which image it came from."""
    return [(Image.fromarray(np.full((8, 8, 3), 10 * i + 5, np.uint8)), i) for i in range(n)]


def grey(view: torch.Tensor) -> float:
    return float(view[0].mean())  # all pixels equal: the (normalised) grey level


def test_paired_views_keep_every_crop_partner_second_extra_last():
    data = solid_images(12)
    transform = dino_transform()
    paired = ForgetPairedViews(data, list(range(12)), [2, 5, 7], transform, extra_view=True)
    own = {i: grey(transform(data[i][0])[0]) for i in range(12)}
    retain_views, _, _ = paired[0]
    assert [tuple(v.shape[-2:]) for v in retain_views] == [(8, 8), (8, 8), (4, 4), (4, 4), (8, 8)]
    assert all(grey(v) == pytest.approx(own[0]) for v in retain_views)
    for key in (2, 5, 7):
        views, _, got = paired[key]
        assert got == key
        assert [tuple(v.shape[-2:]) for v in views] == [(8, 8), (8, 8), (4, 4), (4, 4), (8, 8)]
        levels = [grey(v) for v in views]
        # view 0, the local crops and the extra view (last) are the sample's own ...
        for v in (0, 2, 3, 4):
            assert levels[v] == pytest.approx(own[key])
        # ... the second (global) view is another forget sample's
        assert levels[1] != pytest.approx(own[key])
        assert any(levels[1] == pytest.approx(own[p]) for p in (2, 5, 7) if p != key)


def test_datamodule_batches_carry_all_views_and_the_extra_one_last():
    dm = ForgetRetainDataModule(digits_dataset(32), [0, 1, 2, 3], dino_transform(), batch_size=8)
    assert dm.num_views == 4
    views, _, _ = next(iter(dm.train_dataloader()))
    assert [tuple(v.shape) for v in views] == [(8, 3, 8, 8)] * 2 + [(8, 3, 4, 4)] * 2
    dm.configure("mixed", extra_view=True)
    views, _, _ = next(iter(dm.train_dataloader()))
    assert len(views) == 5 and tuple(views[-1].shape) == (8, 3, 8, 8)
    assert tuple(views[3].shape) == (8, 3, 4, 4)  # the local crops stay in place


@pytest.mark.parametrize("kwargs", [{}, {"epoch": 2}, {"epoch": 40}, {"teacher_temp": 0.07}])
def test_dino_adapter_terms_match_lightly_and_update_the_centre_once(kwargs):
    from lightly.loss import DINOLoss

    torch.manual_seed(0)
    lightly_loss = DINOLoss(output_dim=32, warmup_teacher_temp_epochs=5)
    lightly_loss.center.normal_()
    ours = copy.deepcopy(lightly_loss)
    teacher = [torch.randn(6, 32) for _ in range(2)]
    student = [torch.randn(6, 32) for _ in range(4)]  # 2 global + 2 local crops
    expected = lightly_loss(teacher, student, **kwargs)
    adapter = find_adapter(ours)
    assert isinstance(adapter, DINOAdapter)
    terms = adapter.row_terms(ours, teacher, student, **kwargs)
    assert terms.loss.shape == (6,) and terms.rows_per_sample == 1
    assert float(terms.loss.mean()) == pytest.approx(float(expected), rel=1e-5)
    # the centre moved exactly as lightly's single update moves it (not twice, not never)
    assert torch.allclose(ours.center, lightly_loss.center)
    assert not torch.allclose(ours.center, copy.deepcopy(lightly_loss).center * 0)
    assert adapter.anchor(ours, teacher, student) is student[0]
    assert adapter.anchor(ours, teacher_out=teacher, student_out=student) is student[0]


def test_dino_unlearning_step_sees_all_crops_and_centre_updates_once_per_step(tmp_path):
    model = make_dino("pl")()
    seen, updates = [], []
    step = model.training_step

    def recording_step(batch, batch_idx):
        seen.append([tuple(v.shape[-2:]) for v in batch[0]])
        return step(batch, batch_idx)

    model.training_step = recording_step
    original = model.criterion.update_center
    model.criterion.update_center = lambda t: (updates.append(tuple(t.shape)), original(t))[1]
    dm = ForgetRetainDataModule(digits_dataset(32), [0, 1, 2, 3], dino_transform(), batch_size=8)
    trainer = pl.Trainer(**trainer_kwargs(tmp_path, callbacks=[UnlearnCallback("ac", beta=1.0)]))
    trainer.fit(model, datamodule=dm)
    assert seen and all(s == [(8, 8), (8, 8), (4, 4), (4, 4)] for s in seen)  # extra view popped
    assert updates == [(2, 8, 64)] * len(seen)  # 2 teacher views, once per step
