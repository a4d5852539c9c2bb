"""Embedded data for the demo (a real membership signal, no download) and fast view transforms.

Data: scikit-learn's ``load_digits`` (1 797 grey images, 8x8, values 0..16) ships inside
scikit-learn, so the demo needs no download. Items are ``(image, target)`` with ``image`` a
``float32`` tensor of shape ``(1, 8, 8)`` scaled to ``[0, 1]`` (no per-channel normalisation: an
MLP on 64 pixels does not need it) and ``target`` an ``int``.

Augmentation: a random resized crop + translation expressed as one affine map (``affine_grid`` /
``grid_sample``, zero padding = the digits' background), then a multiplicative intensity jitter and
additive Gaussian noise. No flips (a flipped digit is another glyph). Two implementations of the
same distribution:

* :class:`BatchedDigitsAugment` augments a whole ``(B, 1, H, W)`` batch with one ``grid_sample``
  call (~0.1 ms for 200 digits). The exploration in ``benchmarks/membership_signal.py`` and the
  audits use it: the previous probe spent most of 8 minutes in per-sample PIL/torchvision
  augmentation.
* :class:`DigitsViewTransform` is the per-sample multi-view transform (``image -> [view0, view1]``
  with a ``.transforms`` attribute like lightly's ``MultiViewTransform``) that
  ``ForgetRetainDataModule`` calls inside a ``DataLoader``. It runs the same affine on a batch of
  one (tens of microseconds per view, no PIL round trip), so the Lightning path and the batched
  path train on the same augmentation distribution.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

__all__ = [
    "DigitsDataset",
    "load_digits_dataset",
    "BatchedDigitsAugment",
    "DigitsView",
    "DigitsViewTransform",
    "DigitsImages",
    "load_digits_images",
]


class DigitsDataset(Dataset):
    """Map-style dataset of ``(image, target)``: ``image`` float32 ``(1, H, W)`` in ``[0, 1]``."""

    def __init__(self, images: torch.Tensor, targets: torch.Tensor) -> None:
        self.images = images
        self.targets = targets

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i], int(self.targets[i])


def load_digits_dataset() -> DigitsDataset:
    """scikit-learn's 1 797 8x8 digits as a :class:`DigitsDataset` (pixels / 16)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    return DigitsDataset(images, torch.as_tensor(bunch.target, dtype=torch.long))


def _affine_augment(
    x: torch.Tensor,
    scale: tuple[float, float],
    shift: float,
    noise: float,
    jitter: float,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """Shared kernel: ``x`` is ``(B, C, H, W)``; returns augmented views of the same shape.

    Crop side = ``sqrt(area)`` with ``area ~ U(scale)`` (as ``RandomResizedCrop``'s scale), crop
    centre uniform within the image plus up to ``shift`` (fraction of the side) beyond it on each
    axis; intensity ``* U(1 - jitter, 1 + jitter)``; ``+ N(0, noise^2)`` per pixel.
    """
    b = x.shape[0]
    kw = {"generator": generator, "dtype": x.dtype}
    area = torch.rand(b, **kw) * (scale[1] - scale[0]) + scale[0]
    side = area.sqrt()
    reach = (1.0 - side) + 2.0 * shift
    t = (torch.rand(b, 2, **kw) * 2.0 - 1.0) * reach[:, None]
    theta = torch.zeros(b, 2, 3, dtype=x.dtype)
    theta[:, 0, 0] = side
    theta[:, 1, 1] = side
    theta[:, :, 2] = t
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if jitter > 0:
        out = out * (1.0 + (torch.rand(b, 1, 1, 1, **kw) * 2.0 - 1.0) * jitter)
    if noise > 0:
        out = out + noise * torch.randn(out.shape, **kw)
    return out


class BatchedDigitsAugment:
    """Augment a whole batch ``(B, 1, H, W)`` at once; ``aug(x, generator)`` -> new views.

    One draw per sample per call, so ``aug(x), aug(x)`` gives the two SimCLR views.
    """

    def __init__(
        self,
        scale: tuple[float, float] = (0.6, 1.0),
        shift: float = 0.15,
        noise: float = 0.05,
        jitter: float = 0.2,
    ) -> None:
        self.scale, self.shift, self.noise, self.jitter = tuple(scale), shift, noise, jitter

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return _affine_augment(x, self.scale, self.shift, self.noise, self.jitter, generator)

    def __repr__(self) -> str:
        return (
            f"BatchedDigitsAugment(scale={self.scale}, shift={self.shift}, "
            f"noise={self.noise}, jitter={self.jitter})"
        )


class DigitsView(BatchedDigitsAugment):
    """One random view of one image ``(1, H, W)`` -> ``(1, H, W)``.

    Same distribution as :class:`BatchedDigitsAugment`, written for a single image with as few
    torch calls as possible (one ``rand``, a cached base grid, one ``grid_sample``, one
    ``randn``): about 30-40 us per view instead of ~115 us for the batch kernel on one image.
    Uses torch's global RNG unless a generator is given, so DataLoader worker seeding applies.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._base: dict[tuple[int, int], torch.Tensor] = {}

    def _grid(self, h: int, w: int) -> torch.Tensor:
        if (h, w) not in self._base:
            eye = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
            self._base[(h, w)] = F.affine_grid(eye, [1, 1, h, w], align_corners=False)
        return self._base[(h, w)]

    def __call__(
        self, image: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        if not isinstance(image, torch.Tensor):
            image = torch.as_tensor(image, dtype=torch.float32)
        c, h, w = image.shape
        u_area, u_x, u_y, u_j = torch.rand(4, generator=generator).tolist()
        side = math.sqrt(u_area * (self.scale[1] - self.scale[0]) + self.scale[0])
        reach = (1.0 - side) + 2.0 * self.shift
        t = torch.tensor([(u_x * 2.0 - 1.0) * reach, (u_y * 2.0 - 1.0) * reach])
        grid = torch.addcmul(t, self._grid(h, w), torch.tensor(side))
        out = F.grid_sample(
            image.unsqueeze(0), grid, mode="bilinear", padding_mode="zeros", align_corners=False
        )[0]
        gain = 1.0 + (u_j * 2.0 - 1.0) * self.jitter
        if self.noise > 0:
            return torch.add(
                out * gain, torch.randn(out.shape, generator=generator), alpha=self.noise
            )
        return out * gain


class DigitsViewTransform:
    """Per-sample multi-view transform: ``image -> [view0, view1]`` (lightly-style).

    ``.transforms`` holds the per-view callables, as in lightly's ``MultiViewTransform``, so
    ``ForgetRetainDataModule`` can draw AC's partner and extra views one at a time.
    """

    def __init__(self, n_views: int = 2, **view_kwargs) -> None:
        view = DigitsView(**view_kwargs)
        self.transforms = [view] * n_views

    def __call__(self, image: torch.Tensor) -> list[torch.Tensor]:
        return [t(image) for t in self.transforms]

    def __repr__(self) -> str:
        return f"DigitsViewTransform({len(self.transforms)} x {self.transforms[0]!r})"


class DigitsImages(Dataset):
    """The digits as RGB PIL images upscaled to ``size`` px, for lightly's PIL transforms.

    ``(PIL.Image, target)`` items, so lightly's ``SimCLRTransform`` / ``MoCoV2Transform`` apply
    unchanged, as in a user's image pipeline. Upscaling is bilinear, grey copied to three channels.
    """

    def __init__(self, digits: DigitsDataset, size: int = 16) -> None:
        from PIL import Image

        up = F.interpolate(digits.images, size=(size, size), mode="bilinear", align_corners=False)
        pixels = (up.clamp(0, 1) * 255).round().to(torch.uint8)[:, 0].numpy()
        self.images = [Image.fromarray(p).convert("RGB") for p in pixels]
        self.targets = digits.targets

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.images[i], int(self.targets[i])


def load_digits_images(size: int = 16) -> DigitsImages:
    """scikit-learn's digits as ``size`` px RGB PIL images (see :class:`DigitsImages`)."""
    return DigitsImages(load_digits_dataset(), size)
