"""A folder of images and a text file of names to forget, as a ``ForgetRetainDataModule``.

What the person handling a deletion request has: the training images in a folder and the file
names to remove. :class:`ImageFolderDataModule` turns them into the datamodule that
``UnlearnCallback`` needs; ``lightly-unlearn unlearn`` and the LightningCLI recipe use it.

Forget list format (:func:`read_forget_names`): one file name per line, relative to the image
folder (``a.png`` or ``sub/a.png``). Surrounding whitespace is ignored, and so are blank lines,
lines starting with ``#`` and a comment starting with whitespace and ``#`` (``a.png  # request
17``). A line starting with ``"`` is a JSON string, for names no plain line can hold (leading or
trailing spaces, `` #``, quotes, control characters): ``"name with  # and \"quotes\" "``. The
file is UTF-8; a byte-order mark selects UTF-8, UTF-16 or UTF-32. Names that are not images of the
folder are listed and refused before anything trains.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import json
import os
import re
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lightly_unlearn.data.datamodule import ForgetRetainDataModule
from lightly_unlearn.errors import ForgetListError

__all__ = [
    "IMAGE_SUFFIXES",
    "ForgetListError",
    "ImageFolder",
    "ImageFolderDataModule",
    "image_files",
    "check_holdout_apart",
    "check_image_size",
    "check_images",
    "make_transform",
    "read_forget_list",
    "read_forget_names",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
TRANSFORMS = ("simclr", "moco")


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


def check_images(folder: str | os.PathLike, names: Sequence[str], what: str = "--data") -> dict[str, str]:
    """Decode every image fully once before any training; ``{name: SHA-256 of its bytes}``.

    A corrupt file (a truncated JPEG or BMP, a PNG with broken compressed data) or one over
    Pillow's decompression-bomb limit would otherwise fail in the middle of an epoch; here it is
    refused with the file's name and what to do. The digests are taken from the same bytes that
    were decoded, so a caller can check later that no image changed during the run.
    """
    from PIL import Image

    root = Path(folder)
    digests = {}
    for name in names:
        path = root / name
        try:
            data = path.read_bytes()
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(io.BytesIO(data)) as image:
                    image.load()  # the whole decode: verify() does nothing for JPEG
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
            raise ValueError(
                f"{what}: {path} is refused by Pillow's decompression-bomb limit "
                f"(PIL.Image.MAX_IMAGE_PIXELS = {Image.MAX_IMAGE_PIXELS} pixels; {err}). Resize the "
                "image to the size the model sees, or remove it from the folder."
            ) from None
        except MemoryError:
            raise
        except Exception as err:  # OSError, zlib.error, SyntaxError, struct.error, ...
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ValueError(
                f"{what}: cannot read image {path} ({first}). Replace or remove the file."
            ) from None
        digests[name] = hashlib.sha256(data).hexdigest()
    return digests


#: byte-order marks, longest first (UTF-32-LE's starts with UTF-16-LE's)
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"),
)
_INLINE_COMMENT = re.compile(r"\s#")


def _decode(raw: bytes, path: Path) -> str:
    for bom, encoding in _BOMS:
        if raw.startswith(bom):
            try:
                return raw.decode(encoding)
            except UnicodeDecodeError as err:
                raise ForgetListError(
                    f"--forget {path}: starts with a {encoding.upper()} byte-order mark but is not "
                    f"valid {encoding.upper()} ({err.reason} at byte {err.start}). Save it as UTF-8."
                ) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        hint = " (it looks like UTF-16 without a byte-order mark)" if b"\x00" in raw else ""
        raise ForgetListError(
            f"--forget {path} line {line}: not UTF-8 text{hint}. Save the list as UTF-8 (or "
            "UTF-16 with its byte-order mark)."
        ) from None
    if "\x00" in text:  # valid UTF-8, but no file name holds NUL: UTF-16/32 without a BOM
        line = text[: text.index("\x00")].count("\n") + 1
        raise ForgetListError(
            f"--forget {path} line {line}: holds NUL bytes (it looks like UTF-16 or UTF-32 "
            "without a byte-order mark). Save the list as UTF-8 (or UTF-16 with its byte-order mark)."
        )
    return text


def _parse_line(line: str, number: int, path: Path) -> str | None:
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    if not text.startswith('"'):
        return _INLINE_COMMENT.split(text, maxsplit=1)[0].rstrip()
    try:
        name, end = json.JSONDecoder().raw_decode(text)
    except ValueError as err:
        raise ForgetListError(
            f"--forget {path} line {number}: {text[:80]!r} starts with a quote but is not a JSON "
            f"string ({getattr(err, 'msg', err)}). Write such names as \"...\" with \\\" for a quote "
            "and \\\\ for a backslash."
        ) from None
    rest = text[end:].strip()
    if rest and not rest.startswith("#"):
        raise ForgetListError(
            f"--forget {path} line {number}: text after the quoted name ({rest[:40]!r}); only a "
            "`# comment` may follow it."
        )
    return name


def read_forget_names(path: str | os.PathLike, raw: bytes | None = None) -> list[str]:
    """The names listed in a forget list (format: see the module docstring), in file order.

    ``raw``: the file's bytes, read earlier (``path`` then only names it in messages).
    """
    path = Path(path)
    if raw is None:
        if not path.is_file():
            raise FileNotFoundError(f"--forget {path}: no such file.")
        raw = path.read_bytes()
    names = []
    for number, line in enumerate(_decode(raw, path).split("\n"), start=1):
        name = _parse_line(line, number, path)
        if name is not None:
            names.append(name)
    return names


def read_forget_list(
    path: str | os.PathLike, names: Sequence[str], raw: bytes | None = None
) -> list[int]:
    """Positions in ``names`` of the files listed in ``path`` (see the module docstring)."""
    path = Path(path)
    position = {name: i for i, name in enumerate(names)}
    wanted, unknown = [], []
    for name in read_forget_names(path, raw):
        key = Path(name).as_posix().removeprefix("./") if name else name
        if key in position:
            wanted.append(position[key])
        else:
            unknown.append(name)
    if unknown:
        shown = ", ".join(repr(n) for n in unknown[:10]) + (" …" if len(unknown) > 10 else "")
        raise ForgetListError(
            f"--forget {path}: {len(unknown)} name(s) are not image files of the data folder: "
            f"{shown}. Names are relative to the data folder, one per line (e.g. "
            f"{names[0]!r}; a name with leading spaces or ' #' is written as a JSON string, "
            '"like  # this"). Nothing was changed.'
        )
    if not wanted:
        raise ForgetListError(f"--forget {path} lists no file names; nothing to forget.")
    return sorted(set(wanted))


def check_holdout_apart(
    data: str | os.PathLike,
    holdout: str | os.PathLike,
    data_digests: dict[str, str] | None = None,
    holdout_digests: dict[str, str] | None = None,
) -> None:
    """Refuse a holdout folder that is, contains or sits inside the data folder, or (given the
    digests of :func:`check_images`) holds an image with the bytes of a data image: the holdout
    is the reference for "never seen"."""
    data, holdout = Path(data), Path(holdout)
    d, h = data.resolve(), holdout.resolve()
    if d == h or d in h.parents or h in d.parents:
        relation = "is" if d == h else ("is inside" if d in h.parents else "contains")
        raise ValueError(
            f"--holdout {holdout} {relation} --data {data}: the holdout must be images the model "
            "never saw. Give a folder of similar images outside the training data."
        )
    seen = {digest: name for name, digest in (data_digests or {}).items()}
    for name, digest in (holdout_digests or {}).items():
        if digest in seen:
            raise ValueError(
                f"--holdout {holdout / name} has the same content as --data {data / seen[digest]}: "
                "the holdout must be images the model never saw. Remove it from the holdout."
            )


def check_image_size(size: int, batch_size: int, what: str = "--image-size", views: int = 2) -> None:
    """Refuse an image size whose input batch alone would not fit in this machine's memory.

    ``batch_size`` images of ``views`` views, 3 x ``size`` x ``size`` float32 each: a lower bound
    on what one training step needs (activations come on top), compared with half the RAM.
    """
    if size < 1:
        raise ValueError(f"{what} must be a positive number of pixels; got {size}.")
    need = batch_size * views * 3 * size * size * 4
    try:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # not POSIX: assume 16 GiB
        memory = 16 << 30
    if need > memory // 2:
        raise ValueError(
            f"{what} {size}: one batch of {batch_size} images x {views} views at {size}x{size} px "
            f"needs at least {need / 2**30:.1f} GiB, more than half of this machine's "
            f"{memory / 2**30:.0f} GiB. Use the size the model was trained at (e.g. 32 or 224), "
            "or a smaller --batch-size."
        )


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
        batch_size: As in ``ForgetRetainDataModule``.
        num_workers: As in ``ForgetRetainDataModule``.
        seed: As in ``ForgetRetainDataModule``.
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
