"""A folder of images and a text file of names to forget, as a ``ForgetRetainDataModule``.

What the person handling a deletion request has: the training images in a folder and the file
names to remove. :class:`ImageFolderDataModule` turns them into the datamodule that
``UnlearnCallback`` needs; ``lightly-unlearn unlearn`` and the LightningCLI recipe use it.

Forget list format: one file name per line, relative to the image folder (``a.png`` or
``sub/a.png``), blank lines and ``#`` comments ignored. Names that are not images of the folder
are listed and refused before anything trains.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lightly_unlearn.data.datamodule import ForgetRetainDataModule
from lightly_unlearn.data.validation import ForgetSetError

__all__ = [
    "IMAGE_SUFFIXES",
    "ForgetListError",
    "ImageFolder",
    "ImageFolderDataModule",
    "image_files",
    "make_transform",
    "read_forget_list",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
TRANSFORMS = ("simclr", "moco")


class ForgetListError(ForgetSetError):
    """The forget list names files that are not images of the folder (or names none)."""


def image_files(folder: str | os.PathLike, what: str = "--data") -> list[str]:
    """Image files under ``folder`` (recursively), as sorted POSIX paths relative to it."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"{what} {folder}: no such folder.")
    names = sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and not p.name.startswith(".")
    )
    if not names:
        raise FileNotFoundError(
            f"{what} {folder}: no image files ({', '.join(IMAGE_SUFFIXES)}) in it."
        )
    return names


def check_images(folder: str | os.PathLike, names: Sequence[str], what: str = "--data") -> None:
    """Open every image once (header and integrity, no full decode) before any training.

    A corrupt file or one over Pillow's decompression-bomb limit would otherwise fail in the
    middle of an epoch; here it is refused with the file's name and what to do.
    """
    from PIL import Image, UnidentifiedImageError

    root = Path(folder)
    for name in names:
        path = root / name
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(path) as image:
                    image.verify()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
            raise ValueError(
                f"{what}: {path} is refused by Pillow's decompression-bomb limit "
                f"(PIL.Image.MAX_IMAGE_PIXELS = {Image.MAX_IMAGE_PIXELS} pixels; {err}). Resize the "
                "image to the size the model sees, or remove it from the folder."
            ) from None
        except (UnidentifiedImageError, OSError, SyntaxError) as err:
            raise ValueError(
                f"{what}: cannot read image {path} ({err}). Replace or remove the file."
            ) from None


def read_forget_list(path: str | os.PathLike, names: Sequence[str]) -> list[int]:
    """Positions in ``names`` of the files listed in ``path`` (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--forget {path}: no such file.")
    position = {name: i for i, name in enumerate(names)}
    wanted, unknown = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        name = line.split("#", 1)[0].strip()
        if not name:
            continue
        key = Path(name).as_posix().removeprefix("./")
        if key in position:
            wanted.append(position[key])
        else:
            unknown.append(name)
    if unknown:
        shown = ", ".join(repr(n) for n in unknown[:10]) + (" …" if len(unknown) > 10 else "")
        raise ForgetListError(
            f"--forget {path}: {len(unknown)} name(s) are not image files of the data folder: "
            f"{shown}. Names are relative to the data folder, one per line (e.g. "
            f"{names[0]!r}). Nothing was changed."
        )
    if not wanted:
        raise ForgetListError(f"--forget {path} lists no file names; nothing to forget.")
    return sorted(set(wanted))


class ImageFolder:
    """Map-style dataset of ``(RGB PIL image, 0)`` items for the given files of a folder.

    ``names`` (item ``i`` is the file ``names[i]``, relative to ``root``) is what the audits'
    heat maps and ``audit.json`` label samples with (see ``audits.labels.sample_labels``), so
    the data owner finds the file names of the forget list there.
    """

    def __init__(self, root: str | os.PathLike, names: Sequence[str] | None = None) -> None:
        self.root = Path(root)
        self.names = list(names) if names is not None else image_files(root)
        self.transform = None  # ForgetRetainDataModule applies the views

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        from PIL import Image

        with Image.open(self.root / self.names[index]) as image:
            return image.convert("RGB"), 0


def make_transform(name: str, image_size: int) -> Callable:
    """lightly's SimCLR or MoCo v2 multi-view transform at ``image_size`` pixels."""
    if image_size < 1:
        raise ValueError(f"image_size must be a positive number of pixels; got {image_size}.")
    if name == "simclr":
        from lightly.transforms import SimCLRTransform

        return SimCLRTransform(input_size=image_size)
    if name == "moco":
        from lightly.transforms import MoCoV2Transform

        return MoCoV2Transform(input_size=image_size)
    raise ValueError(f"transform must be one of {', '.join(TRANSFORMS)}; got {name!r}.")


def _first_height(folder: Path, name: str) -> int:
    from PIL import Image

    with Image.open(folder / name) as image:
        return image.size[1]


class ImageFolderDataModule(ForgetRetainDataModule):
    """``ForgetRetainDataModule`` over a folder of images and a forget list (file names).

    Written for configuration files (LightningCLI) and the command line: every argument is a
    path, a name or a number.

    Args:
        data: Folder of training images (read recursively, sorted).
        forget: Text file of names to forget, relative to ``data`` (``#`` comments allowed).
        transform: ``"simclr"`` or ``"moco"`` (lightly's multi-view transforms), or a
            multi-view transform object.
        image_size: Crop size of the transform; default: the first image's height.
        holdout: Folder of similar images the model never saw (for the audits), optional.
        batch_size, num_workers, seed: As in ``ForgetRetainDataModule``.
    """

    def __init__(
        self,
        data: str,
        forget: str,
        transform: Any = "simclr",
        image_size: int | None = None,
        holdout: str | None = None,
        batch_size: int = 256,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        names = image_files(data, "data")
        forget_ids = read_forget_list(forget, names)
        size = image_size or _first_height(Path(data), names[0])
        view = make_transform(transform, size) if isinstance(transform, str) else transform
        holdout_set = ImageFolder(holdout, image_files(holdout, "holdout")) if holdout else None
        super().__init__(
            ImageFolder(data, names),
            forget_ids,
            view,
            batch_size=min(int(batch_size), len(names)),
            num_workers=num_workers,
            holdout=holdout_set,
            seed=seed,
        )
        self.data_dir, self.forget_file, self.holdout_dir = Path(data), Path(forget), holdout
        self.image_size = size
