"""``lightly-unlearn verify-deletion``: a data owner checks that an unlearning receipt commits to
their own file.

    lightly-unlearn verify-deletion unlearning_receipt.json --proof photo.png.proof.json \
        --file photo.png --public-key receipt_signing.pub

The model owner hands each data owner three files: the receipt, the proof for their item
(`proofs/<name>.proof.json` beside the receipt) and the signer's public key. The file is your
own copy: its bytes (or, for a dataset of decoded images or tensors, its pixels / its tensor,
as the receipt's forget_set.commitment.content says) are hashed, salted with the proof's salt
and folded up the proof's path; the result must be the receipt's forget-set root.

Exit 0 proves that the holder of the signing key committed to unlearning this content, in a
receipt whose audits are the evidence about the model's behaviour; it does not prove the
influence is gone. Without --public-key the receipt counts as unsigned: anyone can make a
receipt and proof for any file, and the first output line says so.

Exit status: 0 the file's content is committed by the (signed, with --public-key) receipt;
1 it is not (another file, an edited byte, a proof for another receipt, a bad signature);
2 the receipt, proof, file or key cannot be read or is malformed (one line on stderr).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "verify-deletion",
        help="data owner: check that an unlearning receipt commits to your file",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("receipt", metavar="RECEIPT", help="unlearning_receipt.json ('-': stdin)")
    parser.add_argument("--proof", required=True, metavar="PROOF",
                        help="your item's proof (<name>.proof.json from the receipt's proofs/ folder)")
    parser.add_argument("--file", required=True, metavar="FILE", help="your own copy of the item")
    parser.add_argument(
        "--public-key", metavar="PUB",
        help="the signer's public key (receipt_signing.pub from `lightly-unlearn keygen`)",
    )
    return parser


def run(args: argparse.Namespace) -> int:
    from lightly_unlearn.cli.verify_receipt import error
    from lightly_unlearn.receipt import (
        ConfigurationError,
        ReceiptError,
        load_public_key,
        read_receipt,
        verify_deletion,
    )

    if args.receipt == "-" and args.proof == "-":
        return error("verify-deletion", "RECEIPT and --proof cannot both be '-' (standard input).")
    try:
        public_key = load_public_key(args.public_key) if args.public_key else None
        receipt = read_receipt(args.receipt)
        ok, message = verify_deletion(receipt, args.proof, args.file, public_key=public_key)
    except (ReceiptError, ConfigurationError) as err:  # SigningKeyError is a ConfigurationError
        return error("verify-deletion", str(err))
    except OSError as err:
        return error("verify-deletion", f"cannot read {err.filename or args.file}: {err.strerror or err}")
    print(message, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1
