"""AC's ``partners="other_class"``: a forget sample's partner view (or caption) is of another class.

Forgetting a whole class, every other forget sample is of the same class, so the default swap
pulls a forget sample toward its class; ``other_class`` draws the partner from the training
samples of other classes. These tests pin the draw, its errors, and that it reaches the batches
of a real fit (SimCLR views and CLIP captions).
"""

import collections

import lightning.pytorch as L
import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from conftest import digits_dataset, make_simclr, tiny_transform, trainer_kwargs
from PIL import Image
from torch.utils.data import Subset

from lightly_unlearn import CLIPModule, ForgetRetainDataModule, UnlearnCallback
from lightly_unlearn.clip.data import (
    DIGIT_NAMES,
    DIGIT_TEMPLATES,
    CaptionDataset,
    forget_by_class,
    tiny_clip_kwargs,
)
from lightly_unlearn.data.pairing import ForgetPairedCaptions, ForgetPairedViews
from lightly_unlearn.data.views import dataset_targets

N_CLASSES = 4


def _views(x):
    return (x, x)


def _labelled(n=40, classes=N_CLASSES):
    return [(torch.full((1,), float(i)), i % classes) for i in range(n)]


def _shaded(n=40, classes=N_CLASSES):
    """RGB 8x8 images of one grey level per class: every crop/flip of it keeps the level, so a
    view tells its class (SimCLR transform without colour jitter, blur or grey-scale)."""
    return [
        (Image.fromarray(np.full((8, 8, 3), 30 + 60 * (i % classes), dtype=np.uint8)), i % classes)
        for i in range(n)
    ]


def _class_of_view(view, levels):
    return int(torch.argmin((levels - view.mean()).abs()))


def _levels():
    """The mean of a transformed view of each class's grey level (the transform's normalisation)."""
    t = tiny_transform().transforms[0]
    return torch.tensor([t(item[0]).mean().item() for item in _shaded(N_CLASSES)])


def test_other_class_partner_is_always_of_another_class_and_uniform():
    data = _labelled()
    forget = [k for k in range(40) if k % N_CLASSES == 1]  # the whole class 1
    ds = ForgetPairedViews(data, range(40), forget, _views, partners="other_class")
    torch.manual_seed(0)
    counts = collections.Counter(ds.partner(k) for k in forget for _ in range(300))
    assert all(data[p][1] != 1 for p in counts)
    assert set(counts) == {k for k in range(40) if k % N_CLASSES != 1}  # every other-class sample
    assert max(counts.values()) < 2 * min(counts.values())  # about uniform (100 expected each)
    # a random forget set spanning classes: each sample's partner differs from its own class
    mixed = [0, 1, 2, 3, 5, 10]
    ds = ForgetPairedViews(data, range(40), mixed, _views, partners="other_class")
    for k in mixed:
        assert all(data[ds.partner(k)][1] != data[k][1] for _ in range(200))


def test_forget_partners_unchanged_by_default():
    data = _labelled()
    forget = [1, 5, 9, 13]
    draws = {}
    for kw in ({}, {"partners": "forget"}):
        ds = ForgetPairedViews(data, range(40), forget, _views, **kw)
        torch.manual_seed(3)
        draws[len(kw)] = [ds.partner(k) for k in forget for _ in range(50)]
    assert draws[0] == draws[1]
    assert set(draws[0]) <= set(forget)  # the default pairs forget samples with each other


def test_a_single_forget_sample_gets_other_class_partners():
    data = _labelled()
    ds = ForgetPairedViews(data, range(40), [6], _views, partners="other_class")
    assert {data[ds.partner(6)][1] for _ in range(200)} == {0, 1, 3}


def test_errors_say_what_to_do():
    with pytest.raises(ValueError, match="partners must be one of 'forget', 'other_class'"):
        ForgetPairedViews(_labelled(), range(40), [1], _views, partners="retain")
    unlabelled = [torch.zeros(1) for _ in range(10)]  # bare images: no class label
    with pytest.raises(ValueError, match="integer class label.*targets.*partners='forget'"):
        ForgetPairedViews(unlabelled, range(10), [0, 1], _views, partners="other_class")
    one_class = _labelled(10, classes=1)
    with pytest.raises(ValueError, match="forget sample 0 has class 0 and no training sample has another class"):
        ForgetPairedViews(one_class, range(10), [0, 1], _views, partners="other_class")
    with pytest.raises(ValueError, match="partners must be one of"):
        UnlearnCallback("ac", partners="another")
    # the datamodule raises at configure time, before any training
    dm = ForgetRetainDataModule([(img, 0) for img, _ in digits_dataset(12)],
                                [0, 1], tiny_transform(), batch_size=4)
    with pytest.raises(ValueError, match="no training sample has another class"):
        dm.configure("mixed", extra_view=True, partners="other_class")


def test_labels_come_from_targets_subsets_or_items():
    class WithTargets(torch.utils.data.Dataset):
        targets = torch.tensor([3, 1, 4, 1, 5])

        def __len__(self):
            return 5

        def __getitem__(self, i):
            raise AssertionError("labels must be read from .targets, not the items")

    assert dataset_targets(WithTargets(), [4, 0]) == [5, 3]
    assert dataset_targets(Subset(WithTargets(), [2, 3])) == [4, 1]
    pairs = CaptionDataset(digits_dataset(6), DIGIT_NAMES, DIGIT_TEMPLATES)
    assert dataset_targets(pairs) == [p[2] for p in pairs]
    assert dataset_targets([torch.zeros(1), ("img", "a caption")]) == [None, None]


@pytest.mark.parametrize("partners", ["forget", "other_class"])
def test_fit_serves_other_class_views_to_forget_samples(tmp_path, partners):
    """End to end: UnlearnCallback("ac", partners=...) and a real fit; the forget samples' second
    views in the training batches show the class of their partner."""
    data = _shaded()
    forget = [k for k in range(40) if k % N_CLASSES == 2]  # the whole class 2
    levels, seen = _levels(), []

    class Capture(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            assert trainer.datamodule.partners == partners  # (reset to the default after fit)
            views, _, keys = batch
            for row, key in enumerate(keys.tolist()):
                seen.append((key, _class_of_view(views[0][row], levels), _class_of_view(views[1][row], levels)))

    torch.manual_seed(0)
    dm = ForgetRetainDataModule(data, forget, tiny_transform(), batch_size=10)
    cb = UnlearnCallback("ac", beta=1.0, partners=partners)
    trainer = pl.Trainer(**trainer_kwargs(tmp_path, max_epochs=3), callbacks=[Capture(), cb])
    trainer.fit(make_simclr("pl")(), datamodule=dm)
    assert torch.isfinite(trainer.callback_metrics["unlearn_loss"])
    rows = [(own, second) for key, own, second in seen if key in forget]
    assert len(rows) == 3 * len(forget) and all(own == 2 for own, _ in rows)
    if partners == "other_class":
        assert all(second != 2 for _, second in rows)
        assert {second for _, second in rows} == {0, 1, 3}
    else:  # the reference: the partner is another sample of the forgotten class
        assert all(second == 2 for _, second in rows)
    retain = [(own, second) for key, own, second in seen if key not in forget]
    assert retain and all(own == second for own, second in retain)


def _tok(captions, ctx=64):
    """A stand-in tokenizer: the caption's characters as ids (one caption <-> one token row)."""
    out = torch.zeros(len(captions), ctx, dtype=torch.long)
    for i, c in enumerate(captions):
        ids = [ord(ch) for ch in c][:ctx]
        out[i, : len(ids)] = torch.tensor(ids)
    return out


def test_clip_partner_caption_is_of_another_class():
    pairs = CaptionDataset(digits_dataset(60), DIGIT_NAMES, DIGIT_TEMPLATES)
    sevens = forget_by_class(pairs, 7).tolist()
    classes_of = collections.defaultdict(set)  # caption tokens -> classes of the pairs that have it
    for p in pairs:
        classes_of[tuple(_tok([p[1]])[0].tolist())].add(p[2])
    for partners, other in (("forget", False), ("other_class", True)):
        ds = ForgetPairedCaptions(pairs, range(60), sevens, lambda x: x, _tok, partners=partners)
        for _ in range(20):
            for key in sevens:
                _, tokens, extra = ds[key][0]
                assert torch.equal(extra, _tok([pairs[key][1]])[0])  # own caption kept for β
                owners = classes_of[tuple(tokens.tolist())]
                assert (7 not in owners) if other else (owners == {7})


def test_clip_fit_with_other_class_partners(tmp_path):
    torch.manual_seed(0)
    module = CLIPModule(model_name="ViT-B-32", model_kwargs=tiny_clip_kwargs(width=32, embed_dim=16))
    pairs = CaptionDataset(digits_dataset(32), DIGIT_NAMES, DIGIT_TEMPLATES)
    forget = forget_by_class(pairs, 3).tolist()
    dm = ForgetRetainDataModule(
        pairs, forget, module.preprocess_train, batch_size=8, tokenizer=module.tokenizer,
        eval_transform=module.preprocess_val,
    )
    seen = []

    class Capture(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            (images, tokens, extra), _, keys = batch
            seen.extend((k, t.clone()) for k, t in zip(keys.tolist(), tokens))

    cb = UnlearnCallback("ac", beta=1.0, partners="other_class")
    trainer = L.Trainer(**trainer_kwargs(tmp_path), callbacks=[Capture(), cb])
    trainer.fit(module, datamodule=dm)
    assert torch.isfinite(trainer.callback_metrics["unlearn_loss"])
    three = {tuple(module.tokenizer([p[1]])[0].tolist()) for p in pairs if p[2] == 3}
    forget_rows = [t for k, t in seen if k in forget]
    assert len(forget_rows) == len(forget)
    assert all(tuple(t.tolist()) not in three for t in forget_rows)  # never a caption of class 3
