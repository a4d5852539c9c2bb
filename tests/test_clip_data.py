"""Image–caption data: tokenised pairs, AC caption pairing and masks, forget sets by class/concept."""

import pytest
import torch
from conftest import digits_dataset
from torchvision.transforms import v2

from lightly_unlearn import ForgetRetainDataModule
from lightly_unlearn.clip.data import (
    DIGIT_NAMES,
    DIGIT_TEMPLATES,
    CaptionDataset,
    forget_by_class,
    forget_by_concept,
)
from lightly_unlearn.data.views import split_item


def _tok(captions, ctx=16):
    """A deterministic stand-in tokenizer: one id per caption (hash of the text) in position 0."""
    out = torch.zeros(len(captions), ctx, dtype=torch.long)
    for i, c in enumerate(captions):
        out[i, 0] = sum(map(ord, c))
        out[i, 1] = len(c)
    return out


def _image_transform():
    return v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])


@pytest.fixture
def pairs():
    return CaptionDataset(digits_dataset(40), DIGIT_NAMES, DIGIT_TEMPLATES)


def test_caption_dataset_templates(pairs):
    image, caption, target = pairs[0]
    assert caption == DIGIT_TEMPLATES[0].format(name=DIGIT_NAMES[target], label=target)
    assert pairs[1][1] == DIGIT_TEMPLATES[1].format(name=DIGIT_NAMES[pairs[1][2]], label=pairs[1][2])
    assert split_item(pairs[3]) == (pairs[3][0], pairs[3][2])  # audits read the label, not the caption


def test_batches_are_images_and_tokens(pairs):
    dm = ForgetRetainDataModule(pairs, [0, 1, 2, 3], _image_transform(), batch_size=8, tokenizer=_tok)
    batch = next(iter(dm.train_dataloader()))
    (images, tokens), targets, keys = batch
    assert images.shape == (8, 3, 8, 8) and tokens.shape == (8, 16)
    for k, t in zip(keys.tolist(), tokens):
        assert torch.equal(t, _tok([pairs[k][1]])[0])


def test_ac_pairs_forget_image_with_another_forget_caption(pairs):
    forget = [0, 5, 10, 15, 20]
    dm = ForgetRetainDataModule(pairs, forget, _image_transform(), batch_size=40, tokenizer=_tok)
    dm.configure("mixed", extra_view=True)
    by_caption = {}
    for i in range(len(pairs)):
        by_caption.setdefault(tuple(_tok([pairs[i][1]])[0].tolist()), set()).add(i)
    for _ in range(3):
        (images, tokens, extra), _, keys = next(iter(dm.train_dataloader()))
        for row, key in enumerate(keys.tolist()):
            own = _tok([pairs[key][1]])[0]
            if key in forget:
                assert torch.equal(extra[row], own)  # own caption carried for β
                owners = by_caption[tuple(tokens[row].tolist())]
                assert owners & (set(forget) - {key})  # the caption of another forget pair
            else:
                assert torch.equal(tokens[row], own)
                assert not extra[row].any()  # placeholder


def test_forget_by_class_and_concept(pairs):
    sevens = forget_by_class(pairs, 7)
    assert sevens.numel() > 0 and all(pairs[i][2] == 7 for i in sevens.tolist())
    assert forget_by_class(digits_dataset(40), [7]).tolist() == sevens.tolist()
    hand = forget_by_concept(pairs, "handwritten")
    assert all("handwritten" in pairs[i][1] for i in hand.tolist())
    assert forget_by_concept(pairs, ["seven", "7"]).tolist() == sevens.tolist()
    with pytest.raises(ValueError, match="No caption"):
        forget_by_concept(pairs, "giraffe")


def test_tokenizer_mode_rejects_items_without_captions():
    with pytest.raises(TypeError, match="caption"):
        ForgetRetainDataModule(digits_dataset(16), [0, 1], _image_transform(), batch_size=4, tokenizer=_tok)


def test_labels_come_from_targets_subsets_or_items():
    """``forget_by_class`` reads labels through ``data.views.dataset_targets``."""
    from torch.utils.data import Subset

    from lightly_unlearn.data.views import dataset_targets

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
