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
from typing import Any


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    from lightly_unlearn.cli.verify_receipt import add_receipt_arguments

    parser = subparsers.add_parser(
        "verify-deletion",
        help="data owner: check that an unlearning receipt commits to your file",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_receipt_arguments(parser)
    parser.add_argument("--proof", required=True, metavar="PROOF",
                        help="your item's proof (<name>.proof.json from the receipt's proofs/ folder)")
    parser.add_argument("--file", required=True, metavar="FILE", help="your own copy of the item")
    return parser


def run(args: argparse.Namespace) -> int:
    from lightly_unlearn.cli.verify_receipt import error, run_check
    from lightly_unlearn.receipt import verify_deletion

    if args.receipt == "-" and args.proof == "-":
        return error("verify-deletion", "RECEIPT and --proof cannot both be '-' (standard input).")
    return run_check("verify-deletion", args, verify_deletion, args.proof, args.file)
