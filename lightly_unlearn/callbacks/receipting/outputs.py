"""Where a receipt and its deletion proofs go, and what they may never overwrite."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from lightly_unlearn.errors import ConfigurationError
from lightly_unlearn.forget_commitment import (
    PROOFS_FOLDER,
    ForgetCommitment,
    is_proofs_folder,
    write_proofs,
)
from lightly_unlearn.paths import check_output_path
from lightly_unlearn.receipt import is_receipt

RECEIPT_NAME = "unlearning_receipt.json"


def default_receipt_path(log_dir: str | None, default_root_dir: str) -> Path:
    """``<log_dir>/unlearning_receipt.json`` (``default_root_dir`` without a logger)."""
    return Path(log_dir or default_root_dir) / RECEIPT_NAME


def check_receipt_outputs(path: Path, inputs: tuple[Any, ...], what: str) -> None:
    """The receipt at ``path`` and the ``proofs/`` folder beside it may be written: neither is
    (or links to) an input, the receipt replaces only an earlier receipt and the folder holds
    only proofs."""
    check_output_path(path, inputs=inputs, kind="file", replaceable=is_receipt, what=what)
    proofs = path.parent / PROOFS_FOLDER
    check_output_path(proofs, inputs=inputs, kind="dir", what="The deletion proofs folder")
    if proofs.exists() and not is_proofs_folder(proofs):
        raise ConfigurationError(
            f"The deletion proofs folder {proofs} (beside the receipt) already exists and "
            "holds files other than *.proof.json; it is not replaced. Choose another "
            "receipt path or move that folder."
        )


def refuse_overwriting_checkpoint_callback(trainer: Any, source: Path, input_given: bool) -> None:
    """Refuse a ``ModelCheckpoint`` that could overwrite the input checkpoint ``source`` (same
    folder, a ``last`` / ``epoch=`` file name). ``input_given``: the input was named explicitly
    (otherwise the message explains how to resume)."""
    for cb in getattr(trainer, "callbacks", []) or []:
        dirpath = getattr(cb, "dirpath", None)
        if dirpath is None or not hasattr(cb, "save_last"):
            continue
        if Path(dirpath).resolve() == source.resolve().parent and (
            source.name.startswith("last") or source.name.startswith("epoch=")
        ):
            hint = "" if input_given else (
                " If you are resuming an interrupted unlearning run, pass the checkpoint its "
                "weights were first loaded from: ReceiptCallback(input_checkpoint="
                "'pretrained.ckpt'); the resume checkpoint is then not taken as the input."
            )
            raise ValueError(
                f"{type(cb).__name__}(dirpath={str(dirpath)!r}) writes into the folder of the "
                f"input checkpoint {source}, and could overwrite it. Inputs are never "
                "modified: give ModelCheckpoint another dirpath (or copy the input first)."
                + hint
            )


def place_proofs(folder: Path, commitment: ForgetCommitment | None) -> Path | None:
    """Write one proof per committed item to ``folder/proofs`` (an earlier run's are replaced);
    without a commitment, remove an earlier run's proofs, which match no receipt any more.
    Returns the proofs folder, or ``None`` if none was written."""
    target = folder / PROOFS_FOLDER
    if commitment is None:
        if is_proofs_folder(target):
            shutil.rmtree(target)
        return None
    write_proofs(folder, commitment.proofs, commitment.names, replace=True)
    return target
