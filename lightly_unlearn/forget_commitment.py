"""Commit to a forget set by content, and prove one item's place in it (``docs/receipts.md``).

A data owner holds their own file, not the dataset's positions, so a receipt commits to what the
forget items *are*. Each item gets a content hash (32 bytes of SHA-256), by kind:

* ``"file"``: the file's bytes, for datasets that name their files: this package's
  ``ImageFolder`` (``root`` + ``names``: ``ImageFolderDataModule``, ``lightly-unlearn
  unlearn``), lightly's ``LightlyDataset`` (``input_dir`` + ``get_filenames()``) and
  torchvision's ``ImageFolder`` / ``DatasetFolder`` (``samples``), also inside ``Subset``\\ s;
* ``"pixels"``: an item whose image is a PIL image (torchvision's MNIST / CIFAR, a list of
  images): the decoded pixels, ``numpy.asarray(image)``, hashed as a tensor (below); the data
  owner's file is decoded by Pillow the same way, so a lossless copy (PNG) of the image matches;
* ``"tensor"``: an item whose image is a tensor or an array: the tensor's dtype, shape and bytes
  (:func:`lightly_unlearn.weights_digest.tensor_content_sha256`); the owner gives a ``.npy`` or
  ``.pt`` file holding it.

The image is the item's first element; labels and captions are not hashed.

The commitment (RFC 6962 section 2.1 tree hashing, with a salt per leaf):

* leaf = SHA-256(0x00 || salt || content hash), ``salt`` 32 fresh random bytes per item, so the
  root reveals no item's hash: it cannot be used to test whether an image was in the set;
* the leaves are sorted by value (their order reveals no dataset position), and
  MTH(leaves) = SHA-256(0x01 || MTH(first k) || MTH(rest)), k the largest power of two below
  their number; one leaf is its own hash. The 0x00 / 0x01 prefixes keep a leaf from passing for
  an inner node (second pre-images);
* a proof is the item's salt and the sibling hashes from its leaf up to the root, each with the
  side it sits on; it reveals nothing about the other items.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from lightly_unlearn.errors import ConfigurationError
from lightly_unlearn.io import (
    atomic_dir,
    atomic_write_json,
    load_checkpoint,
    loads_strict_json,
    read_bounded,
)
from lightly_unlearn.weights_digest import tensor_content_sha256

__all__ = [
    "COMMITMENT_SCHEME",
    "CONTENT_KINDS",
    "PROOF_FORMAT",
    "PROOF_SUFFIX",
    "ForgetCommitment",
    "ForgetContents",
    "commit_files",
    "commit_forget_set",
    "content_sha256",
    "forget_contents",
    "forget_set_commitment",
    "is_proofs_folder",
    "proof_root",
    "read_proof",
    "write_proofs",
]

COMMITMENT_SCHEME = "lightly-unlearn-forget-merkle/1"
PROOF_FORMAT = "lightly-unlearn-deletion-proof/1"
PROOF_SUFFIX = ".proof.json"
PROOFS_FOLDER = "proofs"
CONTENT_KINDS = {
    "file": "SHA-256 of the file's bytes",
    "pixels": "SHA-256 of the decoded image (numpy.asarray of the PIL image: dtype, shape, pixels)",
    "tensor": "SHA-256 of the tensor (dtype, shape, little-endian bytes)",
}
MAX_PROOF_BYTES = 1 << 20
_MAX_PATH = 64  # siblings: a tree of 2**64 items
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


# -- the tree -------------------------------------------------------------------------------------
def _leaf(salt: bytes, content: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + salt + content).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two below ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


def _tree(leaves: list[bytes], paths: list[list[list[str]]], at: list[int]) -> bytes:
    """MTH of ``leaves``; appends to ``paths[i]`` the sibling of every leaf ``at[j]`` covers."""
    if len(leaves) == 1:
        return leaves[0]
    k = _split(len(leaves))
    left = _tree(leaves[:k], paths, at[:k])
    right = _tree(leaves[k:], paths, at[k:])
    for i in at[:k]:
        paths[i].append(["R", right.hex()])
    for i in at[k:]:
        paths[i].append(["L", left.hex()])
    return _node(left, right)


def forget_set_commitment(content_hashes: Sequence[bytes]) -> tuple[str, list[dict[str, Any]]]:
    """Commit to items by their content hashes (32 bytes each, see the module docstring).

    Returns:
        ``(root, proofs)``: the hex Merkle root, and per item, in the order given, its proof
        ``{"format", "root", "salt", "path"}`` (``path``: ``[side, sibling hex]`` pairs from the
        leaf up; ``side`` ``"L"`` or ``"R"`` is where the sibling sits).
    """
    if not content_hashes:
        raise ConfigurationError("cannot commit to an empty forget set.")
    for h in content_hashes:
        if not isinstance(h, bytes) or len(h) != 32:
            raise ConfigurationError(f"a content hash is 32 bytes of SHA-256; got {h!r:.80}.")
    salts = [secrets.token_bytes(32) for _ in content_hashes]
    leaves = [_leaf(s, h) for s, h in zip(salts, content_hashes)]
    order = sorted(range(len(leaves)), key=lambda i: leaves[i])
    paths: list[list[list[str]]] = [[] for _ in leaves]
    root = _tree([leaves[i] for i in order], paths, order).hex()
    proofs = [
        {"format": PROOF_FORMAT, "root": root, "salt": salt.hex(), "path": path}
        for salt, path in zip(salts, paths)
    ]
    return root, proofs


def proof_root(proof: dict[str, Any], content_hash: bytes) -> str:
    """The root that ``proof`` (checked by :func:`read_proof`) leads to from ``content_hash``."""
    h = _leaf(bytes.fromhex(proof["salt"]), content_hash)
    for side, sibling in proof["path"]:
        h = _node(bytes.fromhex(sibling), h) if side == "L" else _node(h, bytes.fromhex(sibling))
    return h.hex()


# -- content hashes -------------------------------------------------------------------------------
def _file_sha256(path: Path) -> bytes:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.digest()


def _pixels_sha256(image: Any) -> bytes:
    import numpy as np
    import torch

    return tensor_content_sha256(torch.from_numpy(np.array(image)))


def _array_sha256(value: Any) -> bytes:
    import numpy as np
    import torch

    tensor = value if isinstance(value, torch.Tensor) else torch.from_numpy(np.array(value))
    return tensor_content_sha256(tensor)


def _item_kind(value: Any) -> str | None:
    import numpy as np
    import torch
    from PIL import Image

    if isinstance(value, Image.Image):
        return "pixels"
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return "tensor"
    return None


def content_sha256(path: str | os.PathLike, kind: str) -> bytes:
    """The content hash (32 bytes) of a data owner's file, for a commitment of ``kind``.

    ``"file"``: its bytes; ``"pixels"``: the image as Pillow decodes it; ``"tensor"``: a ``.npy``
    file (read without pickles) or a ``.pt`` file holding one tensor (``weights_only=True``).

    Raises:
        ConfigurationError: The file cannot be read as that kind (the message names it).
    """
    path = Path(path)
    if kind not in CONTENT_KINDS:
        raise ConfigurationError(f"unknown content kind {kind!r}; expected one of {sorted(CONTENT_KINDS)}.")
    if not path.is_file():
        raise ConfigurationError(f"{path}: {'not a regular file' if path.exists() else 'no such file'}.")
    if kind == "file":
        return _file_sha256(path)
    if kind == "pixels":
        from PIL import Image

        try:
            with Image.open(path) as image:
                return _pixels_sha256(image)
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            raise ConfigurationError(f"{path} is not an image Pillow can decode ({err}).") from None
    import numpy as np

    with open(path, "rb") as f:
        magic = f.read(6)
    try:
        if magic == b"\x93NUMPY":
            value = np.load(path, allow_pickle=False)
        else:
            value = load_checkpoint(path)
    except Exception as err:  # numpy / torch raise many kinds on a foreign file
        raise ConfigurationError(
            f"{path} is neither a .npy array nor a .pt tensor file ({str(err).splitlines()[0] if str(err) else type(err).__name__})."
        ) from None
    if _item_kind(value) != "tensor":
        raise ConfigurationError(f"{path} holds a {type(value).__name__}, not one tensor or array.")
    return _array_sha256(value)


# -- what a dataset's forget items are ------------------------------------------------------------
def _unwrap(dataset: Any, positions: list[int]) -> tuple[Any, list[int]]:
    """Follow ``Subset``-like wrappers (``.dataset`` and ``.indices``) down to the base dataset."""
    while getattr(dataset, "indices", None) is not None and hasattr(dataset, "dataset"):
        positions = [int(dataset.indices[p]) for p in positions]
        dataset = dataset.dataset
    return dataset, positions


def _named_files(dataset: Any, positions: list[int]) -> tuple[list[Path], list[str]] | None:
    """The files of the items (and their names relative to the dataset's folder), or ``None``
    when the dataset does not name files (or names ones that are not there, e.g. video frames)."""
    from torchvision.datasets import DatasetFolder

    base, at = _unwrap(dataset, positions)
    names = getattr(base, "names", None)
    if (
        getattr(base, "root", None) is not None
        and isinstance(names, Sequence) and not isinstance(names, (str, bytes))
        and len(names) == len(base)
    ):
        folder, rel = Path(base.root), [str(names[p]) for p in at]
    elif callable(getattr(base, "get_filenames", None)) and isinstance(getattr(base, "input_dir", None), str):
        files = base.get_filenames()
        folder, rel = Path(base.input_dir), [str(files[p]) for p in at]
    elif isinstance(base, DatasetFolder):
        folder = Path(base.root)
        rel = [os.path.relpath(base.samples[p][0], folder) for p in at]
    else:
        return None
    paths = [folder / name for name in rel]
    if not all(p.is_file() for p in paths):
        return None
    return paths, [Path(name).as_posix() for name in rel]


def _check_names(names: Sequence[str]) -> None:
    for name in names:
        parts = name.split("/")
        if not name or name.startswith("/") or "\0" in name or any(p in ("", ".", "..") for p in parts):
            raise ConfigurationError(
                f"forget item name {name!r} is not a relative path inside the data folder; a "
                "proof file cannot be named after it."
            )
    if len(set(names)) != len(names):
        raise ConfigurationError("two forget items have the same name; proofs need one name each.")


@dataclass
class ForgetCommitment:
    """A forget set committed by content: the receipt's root and one proof per item.

    ``content_sha256`` (hex, per item) stays in memory only: it is never written to a receipt or
    a proof, where it would let anyone test whether a file was in the forget set.
    """

    kind: str
    root: str
    names: list[str]
    proofs: list[dict[str, Any]]
    content_sha256: list[str] = field(repr=False)

    def receipt_field(self) -> dict[str, Any]:
        """The receipt's ``forget_set.commitment``."""
        return {
            "scheme": COMMITMENT_SCHEME,
            "root": self.root,
            "content": self.kind,
            "num_items": len(self.names),
        }


def _commit(kind: str, names: list[str], hashes: list[bytes]) -> ForgetCommitment:
    _check_names(names)
    root, proofs = forget_set_commitment(hashes)
    return ForgetCommitment(kind, root, names, proofs, [h.hex() for h in hashes])


def commit_files(root: str | os.PathLike, names: Sequence[str]) -> ForgetCommitment:
    """Commit to the files ``root/name`` by their bytes; proofs are named after ``names``
    (POSIX paths relative to ``root``, e.g. the lines of ``lightly-unlearn unlearn --forget``)."""
    names = [Path(n).as_posix() for n in names]
    _check_names(names)
    paths = [Path(root) / n for n in names]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise ConfigurationError(f"cannot commit to forget files that do not exist: {missing[:5]}.")
    return _commit("file", names, [_file_sha256(p) for p in paths])


@dataclass(frozen=True)
class ForgetContents:
    """The forget items' content hashes (32 bytes each), their kind and their proof names."""

    kind: str
    names: list[str]
    content_sha256: list[bytes] = field(repr=False)


def forget_contents(
    dataset: Any, positions: Sequence[int]
) -> tuple[ForgetContents | None, str | None]:
    """The content hashes of the items ``positions`` of ``dataset`` (kinds in the module
    docstring), named by their files, else ``item-<position>``.

    Returns:
        ``(contents, None)``, or ``(None, why)`` when the items have no content a data owner
        could recompute (no file names, and neither an image nor a tensor as first element).
    """
    positions = [int(p) for p in positions]
    files = _named_files(dataset, positions)
    if files is not None:
        paths, names = files
        return ForgetContents("file", names, [_file_sha256(p) for p in paths]), None
    kinds, hashes = set(), []
    for p in positions:
        item = dataset[p]
        value = item[0] if isinstance(item, (tuple, list)) and item else item
        kind = _item_kind(value)
        if kind is None:
            return None, (
                f"the dataset ({type(dataset).__name__}) names no files and its items are "
                f"{type(value).__name__}, not an image or a tensor: no content a data owner "
                "could recompute, so no deletion proofs were made"
            )
        kinds.add(kind)
        hashes.append(_pixels_sha256(value) if kind == "pixels" else _array_sha256(value))
    if len(kinds) > 1:
        return None, "the forget items mix images and tensors; no deletion proofs were made"
    return ForgetContents(kinds.pop(), [f"item-{p}" for p in positions], hashes), None


def commit_forget_set(
    dataset: Any, positions: Sequence[int]
) -> tuple[ForgetCommitment | None, str | None]:
    """Commit to the items ``positions`` of ``dataset`` by content (:func:`forget_contents`).

    Returns:
        ``(commitment, None)``, or ``(None, why)`` when the items have no content a data owner
        could recompute: then no proof is possible, and the receipt says why instead of
        carrying a fake one.
    """
    contents, why = forget_contents(dataset, positions)
    if contents is None:
        return None, why
    return _commit(contents.kind, contents.names, contents.content_sha256), None


# -- proof files ----------------------------------------------------------------------------------
def is_proofs_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder holding only ``*.proof.json`` files (an earlier output)."""
    path = Path(path)
    if not path.is_dir() or path.is_symlink():
        return False
    return all(
        p.is_dir() and not p.is_symlink() or p.is_file() and p.name.endswith(PROOF_SUFFIX)
        for p in path.rglob("*")
    )


def write_proofs(
    out_dir: str | os.PathLike,
    proofs: Sequence[dict[str, Any]],
    names: Sequence[str],
    *,
    replace: bool = False,
) -> Path:
    """Write ``out_dir/proofs/<name>.proof.json`` for each proof, all at once.

    The folder is filled under a temporary name and renamed into place, so it is never seen
    half-written. An existing ``proofs`` folder is refused unless ``replace=True`` and it holds
    only proof files (an earlier run's). Each proof gets its ``item`` name (informational: the
    check is by content).

    Returns:
        The ``proofs`` folder.
    """
    names = [Path(n).as_posix() for n in names]
    if len(names) != len(proofs):
        raise ConfigurationError(f"{len(proofs)} proofs but {len(names)} names.")
    _check_names(names)
    target = Path(out_dir) / PROOFS_FOLDER
    with atomic_dir(target, replaceable=is_proofs_folder if replace else None) as tmp:
        for name, proof in zip(names, proofs):
            atomic_write_json(tmp / (name + PROOF_SUFFIX), {**proof, "item": name})
    return target


def _fail(path: Any, message: str) -> NoReturn:
    raise ValueError(f"{path}: {message}")


def read_proof(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check a ``.proof.json`` file (at most 1 MiB; ``"-"`` is standard input).

    Raises:
        ValueError: One line naming the file and what is wrong.
        OSError: It cannot be read.
    """
    try:
        proof = loads_strict_json(read_bounded(path, MAX_PROOF_BYTES))
    except ValueError as err:
        _fail(path, f"not a deletion proof: {err}")
    if not isinstance(proof, dict) or proof.get("format") != PROOF_FORMAT:
        _fail(path, f'not a deletion proof (expected "format": "{PROOF_FORMAT}").')
    for key in ("root", "salt"):
        if not isinstance(proof.get(key), str) or not _HEX64.fullmatch(proof[key]):
            _fail(path, f"malformed proof: {key} must be 64 hex digits.")
    steps = proof.get("path")
    if not isinstance(steps, list) or len(steps) > _MAX_PATH or not all(
        isinstance(s, list) and len(s) == 2 and s[0] in ("L", "R")
        and isinstance(s[1], str) and _HEX64.fullmatch(s[1])
        for s in steps
    ):
        _fail(path, f'malformed proof: path must be at most {_MAX_PATH} ["L" or "R", 64 hex digits] pairs.')
    return proof
