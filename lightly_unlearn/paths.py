"""One check for every output path: an output may never overwrite or sit inside an input.

Every writer of this package (``ReceiptCallback``, ``AuditCallback``'s reports, the CLI's
``--out`` of ``audit``, ``demo`` and ``unlearn``) calls :func:`check_output_path` before any work
starts, so a bad destination is refused in seconds instead of after hours of training, and a
user's weights or images are never replaced by a report.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Literal

from lightly_unlearn.errors import OutputPathError

__all__ = ["OutputPathError", "check_output_path"]

PathLike = str | os.PathLike


def _same(a: Path, b: Path) -> bool:
    """Same file after resolving symlinks, or the same inode (hard links)."""
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _inside(child: Path, parent: Path) -> bool:
    child, parent = child.resolve(), parent.resolve()
    return child == parent or parent in child.parents


def _writable_ancestor(path: Path) -> Path:
    """The nearest existing folder above ``path`` (where the first new folder would be made)."""
    for candidate in [path.parent, *path.parent.parents]:
        if candidate.exists():
            return candidate
    return Path(".")


def check_output_path(
    path: PathLike,
    *,
    inputs: Iterable[PathLike | None] = (),
    kind: Literal["file", "dir"] = "file",
    replaceable: Callable[[Path], bool] | None = None,
    what: str = "output",
) -> Path:
    """Refuse an output path that could destroy or contaminate an input; return it as a ``Path``.

    Call it before any work. Refused (``OutputPathError``, a ``ValueError``, whose message names
    the path, the problem and the fix):

    * a path that resolves (symlinks and hard links included) to one of ``inputs``;
    * a path equal to or inside an input *folder* (``--data``/``--holdout``): outputs written
      there would be read back as inputs on the next run;
    * for ``kind="file"``: an existing folder, or an existing file unless ``replaceable(path)``
      says it is a previous output of the same kind (e.g. an earlier receipt);
    * for ``kind="dir"``: an existing file (an existing folder is fine: only our own file
      names are written into it);
    * a destination under a non-folder or a read-only folder (it could only fail at the end).

    Args:
        path: The output file (``kind="file"``) or folder (``kind="dir"``).
        inputs: Input files and folders (``None`` entries are ignored).
        kind: Whether ``path`` is a file or a folder to write files into.
        replaceable: For files: predicate allowing an existing file to be replaced.
        what: How to name the output in messages (``"--out"``, ``"ReceiptCallback(path=...)"``).
    """
    if kind not in ("file", "dir"):
        raise ValueError(f"kind must be 'file' or 'dir'; got {kind!r}.")
    out = Path(path)
    _refuse_inputs(out, inputs, what)
    _refuse_existing(out, kind, replaceable, what)
    _refuse_unwritable(out, kind, what)
    return out


def _refuse_inputs(out: Path, inputs: Iterable[PathLike | None], what: str) -> None:
    """``out`` is not an input, and not inside an input folder."""
    for item in inputs:
        if item is None:
            continue
        source = Path(item)
        if source.is_dir() and _inside(out, source):
            raise OutputPathError(
                f"{what} {out} is inside the input folder {source}; files written there would be "
                "read back as inputs on the next run. Choose an output path outside it."
            )
        if _same(out, source):
            raise OutputPathError(
                f"{what} {out} is the input {source}{' (through a symlink)' if out.is_symlink() else ''}; "
                "writing there would destroy the input. Choose another output path: inputs are "
                "never modified."
            )


def _refuse_existing(
    out: Path, kind: str, replaceable: Callable[[Path], bool] | None, what: str
) -> None:
    """What already exists at ``out`` may be replaced (a file) or written into (a folder)."""
    if kind == "file":
        if out.is_dir():
            raise OutputPathError(
                f"{what} {out} is an existing folder, but a file is written there. Give a file "
                f"path (e.g. {out / 'unlearning_receipt.json'})."
            )
        if out.exists() and not (replaceable is not None and replaceable(out)):
            raise OutputPathError(
                f"{what} {out} already exists and is not a previous output of this kind; it will "
                "not be overwritten. Choose a new path or delete the file yourself."
            )
    elif out.exists() and not out.is_dir():
        raise OutputPathError(
            f"{what} {out} exists and is not a folder; choose a folder path (files are "
            "written into it)."
        )


def _refuse_unwritable(out: Path, kind: str, what: str) -> None:
    """The destination's folder exists and is writable (a write could only fail at the end)."""
    target = out if kind == "dir" and out.is_dir() else _writable_ancestor(out)
    if not target.is_dir():
        raise OutputPathError(f"{what} {out}: {target} is not a folder, so nothing can be written there.")
    if not os.access(target, os.W_OK | os.X_OK):
        raise OutputPathError(
            f"{what} {out}: the folder {target} is not writable. Choose a writable location."
        )
