"""Files in and out without data loss.

* Outputs are written to a temporary file in the destination folder and moved into place with
  ``os.replace`` (atomic on POSIX and Windows within one file system): a crash or a full disk
  never leaves a half-written checkpoint, receipt or report, and never destroys the previous
  version of the file.
* Inputs are only read. :func:`sha256_file` fingerprints them so tests and receipts can show
  they were not modified.
* :func:`load_checkpoint` uses ``torch.load(weights_only=True)`` by default: a checkpoint is
  data, and unpickling arbitrary objects from it can run code. Old checkpoints that pickled
  custom classes (or numpy arrays) need an explicit ``trusted=True``.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import io
import json
import math
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import torch

from lightly_unlearn.errors import UntrustedCheckpointError

__all__ = [
    "UntrustedCheckpointError",
    "atomic_dir",
    "atomic_write",
    "atomic_write_json",
    "atomic_torch_save",
    "json_safe",
    "load_checkpoint",
    "loads_strict_json",
    "read_bounded",
    "sha256_bytes",
    "sha256_file",
]


_UMASK = os.umask(0)
os.umask(_UMASK)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists (another user's) or cannot tell: keep its file
    return True


def _remove_stale_temporaries(path: Path) -> None:
    """Delete ``.<name>.<pid>.*.tmp`` siblings (files or folders) left by a killed writer (its
    process is gone)."""
    prefix = f".{path.name}."
    for tmp in path.parent.glob(f"{glob.escape(prefix)}*.tmp"):
        pid = tmp.name[len(prefix):].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            with contextlib.suppress(OSError):
                if tmp.is_dir() and not tmp.is_symlink():
                    shutil.rmtree(tmp)
                else:
                    tmp.unlink()


@contextlib.contextmanager
def _atomic_file(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A temporary sibling of ``path`` to write into; renamed over ``path`` only on success.

    The temporary's name carries the writer's process id, so the next write of the same file
    removes what a killed writer (``kill -9``, power loss) left behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(
    path: str | os.PathLike, *, replaceable: Callable[[Path], bool] | None = None
) -> Iterator[Path]:
    """A temporary sibling folder of ``path`` to fill; renamed to ``path`` only on success.

    Readers see either no folder or the whole of it. An existing ``path`` is refused
    (``FileExistsError``) unless ``replaceable(path)`` says it is an earlier output of the same
    kind; it is then moved aside, the new folder renamed in, and the old one deleted.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp"))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp makes 0700; outputs get the usual permissions
        old = None
        if path.exists() or path.is_symlink():
            if replaceable is None or not path.is_dir() or path.is_symlink() or not replaceable(path):
                raise FileExistsError(errno.EEXIST, "exists and is not an earlier output", str(path))
            old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp"))
            os.replace(path, old)  # onto the empty temporary folder
        try:
            os.rename(tmp, path)
        except BaseException:
            if old is not None:  # put the earlier output back
                os.replace(old, path)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` through a temporary sibling file and ``os.replace``."""
    with _atomic_file(path) as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)
    return Path(path)


def json_safe(obj: Any) -> Any:
    """``obj`` as strict-JSON types: ``inf``/``-inf``/``nan`` become the strings ``"inf"``,
    ``"-inf"``, ``"nan"``; tensors and numpy values become lists/numbers; sets become sorted
    lists; paths and any other object become their ``str``. Never raises, so a receipt or report
    cannot fail to serialise after the work is done."""
    if isinstance(obj, Mapping):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return [json_safe(v) for v in sorted(obj, key=repr)]
    if isinstance(obj, torch.Tensor):
        return json_safe(obj.tolist())
    if hasattr(obj, "tolist") and hasattr(obj, "dtype"):  # numpy arrays and scalars
        return json_safe(obj.tolist())
    if isinstance(obj, bool) or obj is None or isinstance(obj, (str, int)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else str(obj)  # strict JSON has no inf/nan
    return str(obj)



def atomic_write_json(path: str | os.PathLike, payload: Any, *, sort_keys: bool = False) -> Path:
    """Strict JSON (``inf``/``nan`` as strings), written atomically."""
    text = json.dumps(json_safe(payload), indent=2, allow_nan=False, sort_keys=sort_keys)
    return atomic_write(path, text + "\n")


def read_bounded(path: str | os.PathLike, max_bytes: int) -> bytes:
    """The bytes of a file, a pipe / FIFO, or standard input (``"-"``), at most ``max_bytes``.

    Never reads more than ``max_bytes + 1`` bytes, whatever the input kind (a pipe has no size
    to check first), so an endless or huge input cannot exhaust memory.

    Raises:
        ValueError: The input is larger than ``max_bytes``.
        OSError: It cannot be read (missing, a folder, no permission).
    """
    too_large = ValueError(f"it is larger than {max_bytes} bytes")
    if str(path) == "-":
        data = sys.stdin.buffer.read(max_bytes + 1)
    else:
        with open(path, "rb") as f:
            info = os.fstat(f.fileno())
            if stat.S_ISREG(info.st_mode) and info.st_size > max_bytes:
                raise too_large  # a regular file is refused by its size, unread
            data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise too_large
    return data


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON (a number must be finite)")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is not finite (it overflows a float)")
    return value


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:  # different JSON readers keep different copies: refuse rather than guess
        raise ValueError(f"duplicate key(s) {dup}")
    return dict(pairs)


def _depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, level)
            stack.extend((v, level + 1) for v in (item.values() if isinstance(item, dict) else item))
    return deepest


def loads_strict_json(data: bytes, *, max_depth: int = 64) -> Any:
    """Parse UTF-8 JSON strictly: no ``NaN``/``Infinity`` literals, no number that overflows a
    float (``1e400``), no duplicate keys, at most ``max_depth`` nested arrays/objects.

    Raises:
        ValueError: One line saying what is wrong.
    """
    try:
        text = data.decode("utf-8")
        value = json.loads(
            text, parse_constant=_no_constants, parse_float=_finite, object_pairs_hook=_no_duplicates
        )
    except RecursionError:
        raise ValueError(f"it is nested more than {max_depth} levels deep") from None
    except UnicodeDecodeError as err:
        raise ValueError(f"it is not UTF-8 text ({err.reason} at byte {err.start})") from None
    if _depth(value) > max_depth:
        raise ValueError(f"it is nested more than {max_depth} levels deep")
    return value


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary sibling file, then ``os.replace``."""
    with _atomic_file(path) as f:
        torch.save(obj, f)
    return Path(path)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks (checkpoints can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _torch_load(path: Path | io.BytesIO, *, mmap: bool, **kwargs: Any) -> Any:
    if mmap and isinstance(path, Path):  # bytes in memory are not memory-mapped
        try:
            return torch.load(path, mmap=True, **kwargs)
        except RuntimeError as err:  # a legacy (non-zip) file cannot be memory-mapped
            if "mmap" not in str(err):
                raise
    return torch.load(path, **kwargs)


def load_checkpoint(
    source: str | os.PathLike | bytes,
    *,
    trusted: bool = False,
    map_location: Any = "cpu",
    mmap: bool = False,
) -> Any:
    """Load a checkpoint read-only; ``weights_only=True`` unless ``trusted=True``.

    The one ``torch.load`` of the package: ``model_loading`` (the CLI, ``UnlearnCallback(
    init_checkpoint=...)``), ``weights_digest`` (receipts), ``forget_commitment`` and
    ``clip.loading`` read checkpoints through it; :func:`checkpoint_weights` takes the weights out.

    Args:
        source: The checkpoint file (opened for reading only, never modified), or its bytes
            already read into memory (the CLI reads the input checkpoint before it imports any
            user code, and loads the weights from that copy).
        trusted: Allow full unpickling (``weights_only=False``). Only for files you produced
            yourself or otherwise trust: unpickling can execute arbitrary code.
        map_location: As in ``torch.load``.
        mmap: Memory-map the file (``torch.load(mmap=True)``: tensors are read on use, so a
            large checkpoint is not read into memory at once); falls back to an ordinary load
            for files in torch's legacy (non-zip) format.

    Raises:
        FileNotFoundError: No such file.
        UntrustedCheckpointError: The file holds objects ``weights_only=True`` refuses (custom
            classes, numpy arrays, ...); the message says how to opt in.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        name, stream = "the checkpoint", io.BytesIO(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"Checkpoint {path} does not exist.")
        name, stream = str(path), path
    if trusted:
        return _torch_load(stream, map_location=map_location, weights_only=False, mmap=mmap)
    try:
        return _torch_load(stream, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as err:  # torch raises pickle.UnpicklingError (and others) here
        if "weights_only" not in str(err) and "Unsupported global" not in str(err):
            raise
        raise UntrustedCheckpointError(
            f"{name} cannot be loaded with torch.load(weights_only=True): it contains pickled "
            "Python objects, which could run code when loaded. If you produced this file "
            "yourself or otherwise trust it, load it with "
            "`lightly_unlearn.io.load_checkpoint(path, trusted=True)` (or pass "
            "`weights_only=False` to Lightning's `trainer.fit(..., weights_only=False)`). "
            f"torch said: {str(err).splitlines()[0]}"
        ) from err


def checkpoint_weights(checkpoint: Any) -> Any:
    """The weights a loaded checkpoint holds: a Lightning checkpoint's ``state_dict`` entry, else
    the loaded object itself (``torch.save(model.state_dict())``). Callers check its shape."""
    if isinstance(checkpoint, Mapping) and "state_dict" in checkpoint:
        return checkpoint["state_dict"]
    return checkpoint
