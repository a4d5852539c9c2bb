"""``lightly-unlearn verify-receipt``: does this checkpoint hold the weights an unlearning receipt
vouches for?

Any file holding exactly the unlearned weights verifies: the run's own checkpoint, a
`trainer.save_checkpoint` or ModelCheckpoint file, or `torch.save(model.state_dict(), path)`
(compared by a digest of the state dict, loaded with weights_only=True; the receipt's recorded
output file is recognised by its SHA-256 without loading it). RECEIPT may be `-` (standard input).

With --public-key (the signer's receipt_signing.pub), the receipt must carry a valid Ed25519
signature by that key: an edited, re-hashed or re-signed receipt fails. Without it, or for an
unsigned receipt, only the unkeyed receipt_sha256 is checked, which catches accidental changes
but proves nothing against deliberate edits; the first output line says so.

Exit status: 0 the receipt is intact, its signature holds (with --public-key) and the
checkpoint holds the receipt's weights; 1 any of these fails; 2 the receipt, key or checkpoint
cannot be read or is malformed (one line on stderr).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "verify-receipt",
        help="check that a checkpoint holds the weights an unlearning receipt vouches for",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_receipt_arguments(parser)
    parser.add_argument(
        "--checkpoint", required=True, metavar="FILE",
        help="the checkpoint to check (Lightning checkpoint or saved state dict)",
    )
    return parser


def add_receipt_arguments(parser: argparse.ArgumentParser) -> None:
    """RECEIPT and --public-key, shared with ``verify-deletion``."""
    parser.add_argument("receipt", metavar="RECEIPT", help="unlearning_receipt.json ('-': stdin)")
    parser.add_argument(
        "--public-key",
        metavar="PUB",
        help="the signer's public key (receipt_signing.pub from `lightly-unlearn keygen`)",
    )


def error(command: str, message: str) -> int:
    """One line on stderr, exit status 2 (bad input)."""
    print(f"lightly-unlearn {command}: error: {' '.join(str(message).split())}", file=sys.stderr)
    return 2


def run_check(command: str, args: argparse.Namespace, check: Callable[..., tuple[bool, str]],
              *inputs: str) -> int:
    """Read ``args.receipt`` and ``args.public_key``, run ``check(receipt, *inputs,
    public_key=...)`` and print its message: exit 0 (ok), 1 (not ok) or 2 (unreadable input)."""
    from lightly_unlearn.errors import ConfigurationError, ReceiptError
    from lightly_unlearn.receipt import load_public_key, read_receipt

    try:
        public_key = load_public_key(args.public_key) if args.public_key else None
        ok, message = check(read_receipt(args.receipt), *inputs, public_key=public_key)
    except (ReceiptError, ConfigurationError) as err:  # SigningKeyError is a ConfigurationError
        return error(command, str(err))
    except OSError as err:
        return error(command, f"cannot read {err.filename or inputs[-1]}: {err.strerror or err}")
    print(message, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


def run(args: argparse.Namespace) -> int:
    from lightly_unlearn.receipt import verify_receipt

    return run_check("verify-receipt", args, verify_receipt, args.checkpoint)
