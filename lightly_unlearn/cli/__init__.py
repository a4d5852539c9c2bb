"""``lightly-unlearn`` command line: one module per sub-command (``add_parser`` + ``run``).

Lazy: only the chosen sub-command's module is imported, and its parser imports neither torch nor
Lightning, so ``lightly-unlearn --help`` and ``lightly-unlearn <cmd> --help`` answer at once;
the heavy imports happen inside ``run``.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import sys
from collections.abc import Sequence

#: sub-command name -> module in this package exposing ``add_parser(subparsers)`` and ``run(args)``.
COMMANDS = {
    "unlearn": "lightly_unlearn.cli.unlearn",
    "list": "lightly_unlearn.cli.list_components",
    "audit": "lightly_unlearn.cli.audit",
    "verify-receipt": "lightly_unlearn.cli.verify_receipt",
    "verify-deletion": "lightly_unlearn.cli.verify_deletion",
    "demo": "lightly_unlearn.cli.demo",
    "keygen": "lightly_unlearn.cli.keygen",
}


#: one-line help of each sub-command for ``lightly-unlearn --help`` (without importing it)
SUMMARIES = {
    "unlearn": "checkpoint + images + forget list in, unlearned checkpoint, receipt and audit out",
    "audit": "data owner: show that your images were forgotten (alignment gap matrix)",
    "verify-receipt": "check that a checkpoint holds the weights an unlearning receipt vouches for",
    "verify-deletion": "data owner: check that an unlearning receipt commits to your file",
    "list": "list unlearning methods, audits and criteria with their hyper-parameters",
    "demo": "pretrain, retrain and unlearn on embedded digits; audit and report",
    "keygen": "create an Ed25519 key pair for signing unlearning receipts",
}

DESCRIPTION = """\
Machine unlearning for contrastive models (lightly / Lightning plugin).

Start here: `lightly-unlearn unlearn --help` (a checkpoint, a folder of images and a list of
file names to forget in; an unlearned checkpoint, a receipt and an audit report out).
"""

EPILOG = """\
In Python (an existing lightly / Lightning training script), add a datamodule and callbacks:
  from lightly_unlearn import ForgetRetainDataModule, UnlearnCallback, AuditCallback
With LightningCLI: --trainer.callbacks+=lightly_unlearn.UnlearnCallback (both namespaces).
Documentation: the docs/ folder of the lightly-unlearn repository (`make docs` builds the
site); start with docs/guide/python.md (Python) or docs/guide/command_line.md (this command).
"""


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser; only ``command``'s own parser is built (its module imported)."""
    parser = argparse.ArgumentParser(
        prog="lightly-unlearn",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in COMMANDS.items():
        if name == command or name not in SUMMARIES:
            importlib.import_module(module).add_parser(sub)
        else:  # a placeholder: its help line, no import
            sub.add_parser(name, help=SUMMARIES[name], add_help=False)
    return parser


def _command(argv: Sequence[str]) -> str | None:
    """The sub-command named in ``argv`` (the top level has no options taking values)."""
    for arg in argv:
        if arg in COMMANDS:
            return arg
        if not arg.startswith("-"):
            return None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_command(argv))
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    _ignore_file_size_signal()
    try:
        return int(importlib.import_module(COMMANDS[args.command]).run(args) or 0)
    except OSError as err:  # a full disk: one line, exit 1 (writes are atomic: no partial file)
        if err.errno not in (errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)):
            raise
        why = "file size limit (ulimit -f) reached" if err.errno == errno.EFBIG else err.strerror
        print(f"lightly-unlearn {args.command}: error: {why}: {err.filename or 'output'} "
              "(no partial file was left). Free space, raise the limit or choose another output "
              "folder.", file=sys.stderr)
        return 1


def _ignore_file_size_signal() -> None:
    """Past ``ulimit -f`` the kernel sends SIGXFSZ, which kills the process mid-write by default;
    ignored, the write fails with ``EFBIG`` instead, and the commands clean up and say so."""
    import signal

    if hasattr(signal, "SIGXFSZ"):
        try:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        except ValueError:  # not the main thread: leave the default
            pass


if __name__ == "__main__":
    sys.exit(main())
