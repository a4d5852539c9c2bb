"""``lightly-unlearn verify-receipt``: is this checkpoint the one an unlearning receipt vouches for?

Exit status: 0 the checkpoint matches the receipt's output checkpoint (and the receipt is
intact), 1 it does not, 2 the receipt or checkpoint cannot be read.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "verify-receipt",
        help="check a checkpoint against an unlearning receipt (SHA-256)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("receipt", metavar="RECEIPT", help="unlearning_receipt.json")
    parser.add_argument(
        "--checkpoint", required=True, metavar="FILE", help="the checkpoint to check"
    )
    return parser


def run(args: argparse.Namespace) -> int:
    from lightly_unlearn.receipt import ReceiptError, read_receipt, verify_receipt

    if not Path(args.checkpoint).is_file():
        print(f"lightly-unlearn verify-receipt: error: checkpoint {args.checkpoint} does not exist.",
              file=sys.stderr)
        return 2
    try:
        receipt = read_receipt(args.receipt)
        ok, message = verify_receipt(receipt, args.checkpoint)
    except (ReceiptError, OSError) as err:
        print(f"lightly-unlearn verify-receipt: error: {err}", file=sys.stderr)
        return 2
    print(message, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1
