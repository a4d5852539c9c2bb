"""One run per output folder, written whole: a lock beside DIR, a temporary sibling renamed into
place, leftovers of crashed runs cleaned; through the CLI, racing runs and failing writes."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import write_cli_project

from lightly_unlearn.cli import main
from lightly_unlearn.errors import OutputFolderBusyError
from lightly_unlearn.output_folder import MARKER, PARTIAL_ENV, OutputFolder


def _siblings(out):
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(out.name))


def test_commit_renames_the_temporary_folder_into_place(tmp_path):
    out = tmp_path / "a" / "b" / "out"
    with OutputFolder(out) as folder:
        partial = folder.claim()
        assert partial.parent == out.parent and partial.name.startswith("out.partial-")
        assert json.loads((out.parent / "out.lock").read_text())["pid"] == os.getpid()
        (partial / "result.txt").write_text("done")
        assert not out.exists()  # nothing visible before the commit
        folder.commit()
    assert (out / "result.txt").read_text() == "done"
    assert _siblings(out) == ["out"]  # no lock, no temporary folder, no marker inside
    assert sorted(p.name for p in out.iterdir()) == ["result.txt"]
    assert PARTIAL_ENV not in os.environ


def test_a_second_claim_is_refused_naming_the_first_run(tmp_path):
    out = tmp_path / "out"
    with OutputFolder(out) as first:
        partial = first.claim()
        with pytest.raises(OutputFolderBusyError) as err:
            OutputFolder(out).claim()
        assert f"pid {os.getpid()}" in str(err.value) and partial.name in str(err.value)
        assert "in use by another run" in str(err.value)
        assert partial.is_dir()  # the refused run removed nothing of the first
    assert not out.exists() and _siblings(out) == []  # never committed: nothing left


def test_a_failure_leaves_nothing_not_even_the_parents_it_made(tmp_path):
    out = tmp_path / "new" / "out"
    with pytest.raises(RuntimeError), OutputFolder(out) as folder:
        (folder.claim() / "receipt.json").write_text("{}")
        raise RuntimeError("disk full")
    assert not (tmp_path / "new").exists()


def test_a_folder_with_earlier_outputs_is_refused(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "unlearned.ckpt").write_text("earlier")
    with pytest.raises(OutputFolderBusyError, match="already holds unlearned.ckpt from an earlier run"):
        OutputFolder(out).claim()
    assert (out / "unlearned.ckpt").read_text() == "earlier" and _siblings(out) == ["out"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with OutputFolder(empty) as folder:  # an empty folder is fine: it is replaced
        (folder.claim() / "x").write_text("1")
        folder.commit()
    assert (empty / "x").read_text() == "1"


def test_leftovers_of_a_killed_run_are_removed_and_reported(tmp_path):
    out = tmp_path / "out"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    pid = int(dead.stdout)
    import socket

    leftover = tmp_path / "out.partial-dead0001"
    leftover.mkdir()
    (leftover / "unlearning_receipt.json").write_text("{}")  # a receipt without its checkpoint
    (leftover / MARKER).write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "started": "t"}))
    not_ours = tmp_path / "out.partial-user"  # no marker: someone else's folder, left alone
    not_ours.mkdir()
    # the killed run's lock file stays behind too; flock is free once its holder is gone
    (tmp_path / "out.lock").write_text(json.dumps({"pid": pid}))
    notes = []
    with OutputFolder(out, note=notes.append) as folder:
        folder.claim()
        folder.commit()
    assert not leftover.exists() and not_ours.is_dir()
    assert len(notes) == 1 and "out.partial-dead0001" in notes[0] and f"pid {pid}" in notes[0]
    assert not (tmp_path / "out.lock").exists()


# -- through the CLI --------------------------------------------------------------------------
@pytest.fixture
def project(tmp_path, isolated_imports):
    return write_cli_project(tmp_path, n_data=24, n_holdout=16, forget=range(0, 24, 6))


def _argv(s, out, *extra, method="ac"):
    return [
        "unlearn", "--model", f"{s['code'] / 'tiny_model.py'}:TinySimCLR@{s['ckpt']}",
        "--data", str(s["data"]), "--forget", str(s["forget"]), "--out", str(out),
        "--method", method, "--epochs", "1", "--batch-size", "8", "--transform", "simclr",
        "--image-size", "8", "--accelerator", "cpu", "--devices", "1", "--no-progress", *extra,
    ]


def test_cli_refuses_a_folder_another_run_holds(project, capsys):
    s = project
    out = s["tmp"] / "out"
    with OutputFolder(out) as other:  # another run holds the folder (its own open lock)
        other.claim()
        assert main(_argv(s, out, "--no-audit")) == 2
        err = capsys.readouterr().err
        assert "in use by another run" in err and f"pid {os.getpid()}" in err
        assert len(err.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize("failing", ["receipt", "checkpoint"])
def test_failure_during_the_final_writes_leaves_no_folder(project, capsys, monkeypatch, failing):
    """A full disk while writing the receipt (or the checkpoint): exit 1, no DIR, no leftovers."""
    s = project
    out = s["tmp"] / "out"

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", "unlearning_receipt.json")

    if failing == "receipt":
        monkeypatch.setattr("lightly_unlearn.callbacks.receipt.write_receipt", disk_full)
    else:
        import pytorch_lightning as pl

        monkeypatch.setattr(pl.Trainer, "save_checkpoint", disk_full)
    rc = main(_argv(s, out, "--no-audit"))
    err = capsys.readouterr().err
    assert rc == 1, err
    assert "No space left on device" in err and "no outputs were written" in err
    assert _siblings(out) == []


def _spawn(argv, **kw):
    code = "import sys; from lightly_unlearn.cli import main; sys.exit(main(sys.argv[1:]))"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop(PARTIAL_ENV, None)
    return subprocess.Popen([sys.executable, "-c", code, *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, **kw)


@pytest.mark.slow
def test_two_runs_racing_into_one_folder_never_mix(project):
    """Started together with different methods: one finishes, the other is refused (exit 2,
    naming the other run or its outputs); DIR holds one run's checkpoint, receipt and audits."""
    s = project
    out = s["tmp"] / "out"
    holdout = ["--holdout", str(s["holdout"])]
    procs = {m: _spawn(_argv(s, out, *holdout, method=m)) for m in ("ac", "neggrad")}
    results = {m: (p.wait(timeout=300), p.communicate()[1]) for m, p in procs.items()}
    codes = sorted(rc for rc, _ in results.values())
    assert codes == [0, 2], results
    winner = next(m for m, (rc, _) in results.items() if rc == 0)
    refused = next(err for rc, err in results.values() if rc == 2)
    assert "in use by another run" in refused or "from an earlier run" in refused, refused
    receipt = json.loads((out / "unlearning_receipt.json").read_text())
    audit = json.loads((out / "audits" / "audit.json").read_text())
    assert receipt["method"] == winner
    assert receipt["audits"]["after"]["forget_holdout_auc"] == audit["after"]["forget_holdout_auc"]
    from lightly_unlearn.receipt import verify_receipt

    assert verify_receipt(receipt, out / "unlearned.ckpt")[0]
    # the proofs are the same run's: each verifies its file against this receipt
    proof = out / "proofs" / "img_000.png.proof.json"
    assert main(["verify-deletion", str(out / "unlearning_receipt.json"), "--proof", str(proof),
                 "--file", str(s["data"] / "img_000.png")]) == 0
    assert _siblings(out) == ["out"]


@pytest.mark.slow
def test_kill_9_leaves_only_a_named_partial_that_the_next_run_removes(project, capsys):
    s = project
    out = s["tmp"] / "out"
    proc = _spawn(_argv(s, out, "--epochs", "500", "--no-audit"))
    deadline = time.time() + 120
    while time.time() < deadline and not list(s["tmp"].glob("out.partial-*")):
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    left = _siblings(out)
    assert "out" not in left and any(n.startswith("out.partial-") for n in left), left
    assert main(_argv(s, out, "--no-audit")) == 0
    err = capsys.readouterr().err
    assert "left incomplete by a run that ended early" in err and f"pid {proc.pid}" in err
    assert _siblings(out) == ["out"]
    assert {p.name for p in out.iterdir()} == {"unlearned.ckpt", "unlearning_receipt.json", "proofs"}


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="POSIX file size limits")
def test_file_size_limit_is_refused_at_the_door_or_fails_cleanly(project):
    """``ulimit -f`` below the input checkpoint: exit 2 before any work. Above it but below the
    unlearned checkpoint (which holds optimizer state too): exit 1 with a message, no outputs."""
    import resource

    s = project
    size = s["ckpt"].stat().st_size

    def limit(n):
        return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (n, n))

    out = s["tmp"] / "out"
    proc = _spawn(_argv(s, out, "--no-audit"), preexec_fn=limit(size // 2))
    rc, err = proc.wait(timeout=300), proc.communicate()[1]
    assert rc == 2 and "file size limit (ulimit -f)" in err and "Traceback" not in err, err
    proc = _spawn(_argv(s, out, "--no-audit"), preexec_fn=limit(size + 512))
    rc, err = proc.wait(timeout=300), proc.communicate()[1]
    assert rc == 1 and "file size limit (ulimit -f) reached" in err and "Traceback" not in err, err
    assert _siblings(out) == []


@pytest.mark.slow
def test_ddp_ranks_write_into_the_folder_rank_0_claimed(project):
    """``--strategy ddp --devices 2``: Lightning re-runs the command for rank 1, which writes
    into rank 0's temporary folder (handed over in the environment) instead of being refused as
    a second run; rank 0 alone renames it."""
    import shutil

    s = project
    out = s["tmp"] / "out"
    exe = shutil.which("lightly-unlearn", path=os.path.dirname(sys.executable))
    argv = [exe, *_argv(s, out, "--holdout", str(s["holdout"]), "--devices", "2", "--strategy", "ddp")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop(PARTIAL_ENV, None)
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "in use by another run" not in done.stderr
    receipt = json.loads((out / "unlearning_receipt.json").read_text())
    assert receipt["training"]["world_size"] == 2
    assert {p.name for p in out.iterdir()} == {"audits", "proofs", "unlearned.ckpt", "unlearning_receipt.json"}
    assert _siblings(out) == ["out"]
