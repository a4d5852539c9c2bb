"""``lightly-unlearn verify-receipt``: is this checkpoint the one an unlearning receipt vouches for?

With --public-key (the signer's receipt_signing.pub), the receipt must carry a valid Ed25519
signature by that key: an edited, re-hashed or re-signed receipt fails. Without it, or for an
unsigned receipt, only the unkeyed receipt_sha256 is checked, which catches accidental changes
but proves nothing against deliberate edits; the first output line says so.

Exit status: 0 the receipt is intact, its signature holds (with --public-key) and the
checkpoint is the receipt's output checkpoint; 1 any of these fails; 2 the receipt, key or
checkpoint cannot be read or is malformed (one line on stderr).
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
    parser.add_argument(
        "--public-key",
        metavar="PUB",
        help="the signer's public key (receipt_signing.pub from `lightly-unlearn keygen`)",
    )
    return parser


def run(args: argparse.Namespace) -> int:
    from lightly_unlearn.receipt import (
        ReceiptError,
        SigningKeyError,
        load_public_key,
        read_receipt,
        verify_receipt,
    )

    def error(message: str) -> int:
        print(f"lightly-unlearn verify-receipt: error: {' '.join(str(message).split())}", file=sys.stderr)
        return 2

    if not Path(args.checkpoint).is_file():
        return error(f"checkpoint {args.checkpoint} does not exist.")
    try:
        receipt = read_receipt(args.receipt)
        public_key = load_public_key(args.public_key) if args.public_key else None
        ok, message = verify_receipt(receipt, args.checkpoint, public_key=public_key)
    except (ReceiptError, SigningKeyError) as err:
        return error(str(err))
    except OSError as err:
        return error(f"cannot read {err.filename or args.receipt}: {err.strerror or err}")
    print(message, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1
