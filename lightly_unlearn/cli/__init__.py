"""``lightly-unlearn`` command line: one module per sub-command (``add_parser`` + ``run``)."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

#: sub-command name -> module in this package exposing ``add_parser(subparsers)`` and ``run(args)``.
COMMANDS = {
    "list": "lightly_unlearn.cli.list_components",
    "audit": "lightly_unlearn.cli.audit",
    "verify-receipt": "lightly_unlearn.cli.verify_receipt",
    "demo": "lightly_unlearn.cli.demo",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lightly-unlearn",
        description="Machine unlearning for contrastive models (lightly / Lightning plugin).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS.values():
        importlib.import_module(module).add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return int(importlib.import_module(COMMANDS[args.command]).run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
