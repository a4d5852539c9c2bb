"""``lightly-unlearn keygen``: create the Ed25519 key pair that signs unlearning receipts.

Writes DIR/receipt_signing.key (the private key, mode 0600: keep it with whoever runs
unlearning, pass it as ReceiptCallback(signing_key=...) or `unlearn --signing-key`) and
DIR/receipt_signing.pub (the public key: give it to auditors, who run
`lightly-unlearn verify-receipt RECEIPT --checkpoint FILE --public-key receipt_signing.pub`).
Existing key files are never overwritten.

Exit status: 0 written, 2 bad --out or a key already exists.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "keygen",
        help="create an Ed25519 key pair for signing unlearning receipts",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for the two key files")
    return parser


def run(args: argparse.Namespace) -> int:
    from lightly_unlearn.errors import OutputPathError, SigningKeyError
    from lightly_unlearn.receipt import generate_signing_key, key_id, load_public_key

    try:
        key, pub = generate_signing_key(args.out)
    except (OutputPathError, SigningKeyError) as err:
        print(f"lightly-unlearn keygen: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {key} (private, mode 0600: keep it secret; sign with --signing-key / signing_key=)")
    print(f"wrote {pub} (public, key id {key_id(load_public_key(pub))}: give it to auditors)")
    return 0
