"""One run per output folder, and the folder appears whole or not at all.

``lightly-unlearn unlearn --out DIR`` (and ``audit --out DIR``) write through
:class:`OutputFolder`:

* **A lock beside DIR.** ``DIR.lock`` is held with ``flock`` for the whole run and names the
  run (process id, host, start time, temporary folder). A second run into the same DIR is
  refused, naming the first. The kernel releases the lock when the holder dies, even by
  ``kill -9``, so a crashed run never blocks the next one. (Where ``flock`` is unavailable, the
  file is created with ``O_EXCL`` instead; a crashed run's lock must then be deleted by hand,
  and the message says so.)
* **A temporary sibling.** Everything is written into ``DIR.partial-<random>`` next to DIR,
  which is renamed to DIR (one ``rename``, atomic within a file system) only when every file is
  written. A crash or a full disk leaves at most that clearly named sibling, never a DIR with a
  receipt but no checkpoint. The next run into DIR removes such leftovers (they carry a marker
  file naming the run that made them) and says so.
* **A new folder.** DIR must not exist, or be an empty folder: a folder holding an earlier
  run's files is refused, never overwritten or mixed.

Under Lightning DDP every rank re-runs the command; rank 0 claims the folder and passes the
temporary folder to the processes it launches (the other ranks) in the environment variable
:data:`PARTIAL_ENV` (``<pid of rank 0>:<folder>``; only a child of that process uses it).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import shutil
import socket
import sys
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any

from lightly_unlearn.errors import OutputFolderBusyError, OutputPathError

__all__ = ["PARTIAL_ENV", "OutputFolder", "OutputFolderBusyError"]

#: where rank 0 tells the other ranks of a DDP run which temporary folder to write into
PARTIAL_ENV = "LIGHTLY_UNLEARN_PARTIAL_OUT"
#: the file inside a temporary folder naming the run that made it
MARKER = ".lightly-unlearn-run.json"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process, or cannot tell: assume it runs
        return True
    return True


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8")[:4096])
    except (OSError, ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def _describe(run: dict[str, Any]) -> str:
    if not run:
        return "a run that left no details"
    return (f"pid {run.get('pid', '?')} on {run.get('host', '?')}, started {run.get('started', '?')}"
            + (f", writing {run['partial']}" if run.get("partial") else ""))


class OutputFolder:
    """Claim ``path`` for one run, write into a temporary sibling, rename it into place.

    Use as a context manager: ``with OutputFolder(out) as folder: ... write into folder.partial;
    folder.commit()``. Leaving the block without :meth:`commit` (an exception, an early
    return) removes the temporary folder and releases the lock.

    Args:
        path: The output folder (must not exist, or be empty).
        what: How messages name it (``"--out"``).
        note: Called with one line for each leftover of a crashed run that was removed.
    """

    def __init__(self, path: str | os.PathLike, what: str = "--out", note: Any = None) -> None:
        self.path = Path(path)
        self.what = what
        self.note = note or (lambda line: print(line, file=sys.stderr))
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.partial: Path | None = None
        self._fd: int | None = None
        self._owner = True  # False on the non-zero DDP ranks: they write, rank 0 commits
        self._created: list[Path] = []

    # -- claiming -----------------------------------------------------------------------------
    def check_free(self) -> None:
        """Refuse a DIR that holds files (an earlier run's, or anything else) or is not a folder."""
        if self.path.is_symlink():
            raise OutputFolderBusyError(
                f"{self.what} {self.path} is a symbolic link; give the real path of a new folder.")
        if self.path.exists() and not self.path.is_dir():
            raise OutputFolderBusyError(f"{self.what} {self.path} exists and is not a folder.")
        if self.path.is_dir():
            held = sorted(p.name for p in self.path.iterdir())
            if held:
                shown = ", ".join(held[:4]) + (", …" if len(held) > 4 else "")
                raise OutputFolderBusyError(
                    f"{self.what} {self.path} already holds {shown} from an earlier run; choose a "
                    "new folder (outputs are never overwritten or mixed).")

    def claim(self) -> Path:
        """Take the lock, check DIR, clean a crashed run's leftovers, make the temporary folder."""
        inherited = self._inherited()
        if inherited is not None:
            self.partial, self._owner = inherited, False  # a DDP rank > 0 of the same run
            return self.partial
        self._make_parent()
        try:
            self._lock()
            self._write_lock_info()
            self.check_free()
            self._remove_leftovers()
            self.partial = self.path.absolute().with_name(
                f"{self.path.name}.partial-{secrets.token_hex(4)}")
            self.partial.mkdir()
            (self.partial / MARKER).write_text(json.dumps(self._run_info()))
            self._write_lock_info()
        except BaseException:
            self.abandon()
            raise
        os.environ[PARTIAL_ENV] = f"{os.getpid()}:{self.partial}"
        return self.partial

    def _inherited(self) -> Path | None:
        """The temporary folder of this DIR that our parent process (rank 0 of a DDP run, which
        launched this process) claimed; ``None`` in any other process."""
        owner, _, partial = os.environ.get(PARTIAL_ENV, "").partition(":")
        if not owner.isdigit() or int(owner) != os.getppid() or int(owner) == os.getpid():
            return None
        path = Path(partial)
        if path.parent != self.path.absolute().parent or not path.name.startswith(
                self.path.name + ".partial-"):
            return None
        return path

    def _make_parent(self) -> None:
        parent = self.path.absolute().parent
        missing = [p for p in [parent, *parent.parents] if not p.exists()]
        parent.mkdir(parents=True, exist_ok=True)
        self._created = list(missing)  # removed again when the run fails before writing

    def _run_info(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "host": socket.gethostname(),
                "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "partial": None if self.partial is None else self.partial.name}

    def _lock(self) -> None:
        try:
            import fcntl
        except ImportError:  # not POSIX
            fcntl = None  # type: ignore[assignment]
        while True:
            if fcntl is None:
                try:
                    fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
                except FileExistsError:
                    raise self._busy(manual=True) from None
                self._fd = fd
                return
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                os.close(fd)
                if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise self._busy(manual=False) from None
                raise OutputPathError(
                    f"{self.what} {self.path}: cannot lock {self.lock_path} ({err.strerror}); "
                    "choose an output folder on a local file system.") from None
            try:  # the holder before us may have removed the file after we opened it
                same = os.path.samestat(os.fstat(fd), os.stat(self.lock_path))
            except FileNotFoundError:
                same = False
            if same:
                self._fd = fd
                return
            os.close(fd)

    def _busy(self, manual: bool) -> OutputFolderBusyError:
        run = _read_json(self.lock_path)
        fix = (f" If that run is gone, delete {self.lock_path}." if manual else
               " Wait for it to finish, or choose another folder.")
        return OutputFolderBusyError(
            f"{self.what} {self.path} is in use by another run ({_describe(run)}); two runs "
            f"never write into one folder.{fix}")

    def _write_lock_info(self) -> None:
        assert self._fd is not None
        os.ftruncate(self._fd, 0)
        os.lseek(self._fd, 0, os.SEEK_SET)
        os.write(self._fd, json.dumps(self._run_info()).encode())

    def _remove_leftovers(self) -> None:
        """Temporary folders of DIR left by crashed runs: no live run can be writing them (we
        hold the lock every run takes first), and the marker proves they are ours."""
        for leftover in sorted(self.path.absolute().parent.glob(f"{self.path.name}.partial-*")):
            marker = leftover / MARKER
            if not leftover.is_dir() or leftover.is_symlink() or not marker.is_file():
                continue
            run = _read_json(marker)
            if run.get("host") == socket.gethostname() and isinstance(run.get("pid"), int) and _alive(
                    run["pid"]) and run["pid"] != os.getpid():
                continue  # a live process on this host: leave it (never expected under the lock)
            shutil.rmtree(leftover, ignore_errors=True)
            self.note(f"{self.what}: removed {leftover}, left incomplete by a run that ended "
                      f"early ({_describe(run)}).")

    # -- finishing ----------------------------------------------------------------------------
    def commit(self) -> Path:
        """Rename the temporary folder to DIR (rank 0); the run's outputs appear all at once."""
        if not self._owner:
            return self.path
        assert self.partial is not None, "claim() first"
        self.check_free()  # nothing may have appeared there meanwhile
        (self.partial / MARKER).unlink()
        self.partial.rename(self.path)  # replaces an empty folder; atomic in one file system
        with contextlib.suppress(OSError):  # make the rename durable
            fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        self.partial = None
        self._created = []
        self._unlock()
        return self.path

    def abandon(self) -> None:
        """Remove the temporary folder (and parents this run created) and release the lock."""
        if not self._owner:
            return
        if self.partial is not None:
            shutil.rmtree(self.partial, ignore_errors=True)
            self.partial = None
        self._unlock()
        for folder in self._created:  # deepest first
            with contextlib.suppress(OSError):
                folder.rmdir()
        self._created = []

    def _unlock(self) -> None:
        if self._owner and os.environ.get(PARTIAL_ENV, "").startswith(f"{os.getpid()}:"):
            os.environ.pop(PARTIAL_ENV, None)
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            self.lock_path.unlink()  # while still held: a waiting opener sees another inode
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> OutputFolder:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.partial is not None or self._fd is not None:
            self.abandon()
