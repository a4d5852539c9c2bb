"""``ReceiptCallback``: write an unlearning receipt (``lightly_unlearn.receipt``) and the data
owners' deletion proofs when fit ends.

Its parts, one job each, are in ``callbacks.receipting``: where the files go and what they may not
overwrite, the forget set's commitment, and what the receipt records.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from typing_extensions import override

from lightly_unlearn.callbacks.audit import AuditCallback
from lightly_unlearn.callbacks.receipting.contents import (
    audit_section,
    input_record_at_end,
    module_state_dict,
    output_record,
    saved_final_checkpoint,
    training_section,
)
from lightly_unlearn.callbacks.receipting.forget_set import commit_datamodule_forget_set
from lightly_unlearn.callbacks.receipting.outputs import (
    check_receipt_outputs,
    default_receipt_path,
    place_proofs,
    refuse_overwriting_checkpoint_callback,
)
from lightly_unlearn.callbacks.unlearn import UnlearnCallback
from lightly_unlearn.errors import ConfigurationError
from lightly_unlearn.forget_commitment import PROOFS_FOLDER, ForgetCommitment
from lightly_unlearn.namespaces import DualNamespaceCallback
from lightly_unlearn.receipt import (
    build_receipt,
    file_record,
    load_signing_key,
    now,
    sign_receipt,
    write_receipt,
)
from lightly_unlearn.weights_digest import check_digestible, weights_record

if TYPE_CHECKING:
    import lightning.pytorch as pl


def _find(trainer: pl.Trainer, kind: type) -> Any:
    """The trainer's first callback of class ``kind`` (``None`` if there is none)."""
    return next((cb for cb in getattr(trainer, "callbacks", []) or [] if isinstance(cb, kind)), None)


class ReceiptCallback(DualNamespaceCallback):  # a Callback in both namespaces
    """Write ``unlearning_receipt.json`` and the deletion proofs at the end of an
    ``UnlearnCallback`` run (``docs/receipts.md``).

    The receipt records the method and hyper-parameters; a digest of the unlearned weights
    (the LightningModule's state dict at fit end, after momentum copies are synced; what a
    checkpoint's ``state_dict`` holds), so any file holding exactly these weights verifies:
    ``trainer.save_checkpoint`` after ``fit``, a ``ModelCheckpoint`` file or
    ``torch.save(model.state_dict())``; the forget set committed by content (a Merkle root over
    salted per-item hashes, see :mod:`lightly_unlearn.forget_commitment`); SHA-256 of the input
    checkpoint (``input_checkpoint=``, ``UnlearnCallback(init_checkpoint=...)`` or the
    ``ckpt_path`` given to ``fit``) and of a ``ModelCheckpoint`` file holding the final weights,
    if any; library versions; the "before"/"after" audit numbers and verdict of an
    ``AuditCallback`` in the same trainer; timestamps. Only global rank 0 hashes and writes.

    Where the files go: the receipt to ``path`` (default
    ``<trainer.log_dir>/unlearning_receipt.json``; with ``logger=False`` that is
    ``default_root_dir``), and one proof per forget item to ``proofs/`` beside it
    (``<name>.proof.json``, named after the item's file relative to the dataset's folder, or
    ``item-<position>``), written at fit end. Each data owner gets the receipt, their proof and
    the public key, and runs ``lightly-unlearn verify-deletion``. When the dataset names no
    files and its items are neither images nor tensors, no proof can be made: the receipt's
    ``forget_set.commitment_missing`` says so. An earlier run's receipt and proofs at the same
    place are replaced; any other existing file there is refused in ``setup``.

    The natural flow verifies with no extra call::

        trainer = Trainer(callbacks=[UnlearnCallback("ac"), ReceiptCallback(signing_key=KEY)])
        trainer.fit(model, datamodule=dm)
        trainer.save_checkpoint("unlearned.ckpt")
        # lightly-unlearn verify-receipt <log_dir>/unlearning_receipt.json --checkpoint unlearned.ckpt

    :meth:`write` re-writes the receipt with a saved file recorded as the output checkpoint (by
    SHA-256, after checking it holds the final weights).

    The input checkpoint is only read; it is hashed before training and again at the end. In
    ``setup``, before any work, the callback refuses a receipt path that is (or links to) an input
    checkpoint, an existing folder or an existing file that is not an earlier receipt
    (:func:`lightly_unlearn.paths.check_output_path`), a ``proofs`` folder holding other files, a
    ``ModelCheckpoint`` that could overwrite the input (same folder, a ``last``/``epoch=`` file
    name), a state dict that cannot be digested, and an unusable signing key; it reads the
    forget items and hashes them there. (An input given only as ``fit``'s ``ckpt_path`` is known
    to callbacks from ``on_fit_start``; its checks run there, still before the first step.)

    When resuming an interrupted run (``trainer.fit(..., ckpt_path="last")``), pass
    ``input_checkpoint=`` (the pretrained weights the run started from): otherwise the resume
    checkpoint would be taken as the input.

    Args:
        path: Where to write; default ``<trainer.log_dir>/unlearning_receipt.json``.
        input_checkpoint: The checkpoint the unlearned model was loaded from (pretrained
            weights). Default: the ``ckpt_path`` passed to ``trainer.fit``, if any.
        signing_key: An Ed25519 private key file (``lightly-unlearn keygen``) to sign the
            receipt with, so auditors can check it with the public key
            (``verify-receipt --public-key``). Unsigned receipts only detect accidental changes.
        unlearn: The ``UnlearnCallback`` whose run this receipt records. Default: the
            trainer's ``UnlearnCallback`` (found by class; exactly one is expected).
        audit: The ``AuditCallback`` whose numbers and verdict go into the receipt. Default:
            the trainer's ``AuditCallback``, if any.
        forget_commitment: The forget set already committed by the caller
            (:func:`lightly_unlearn.forget_commitment.commit_files`, e.g. by ``lightly-unlearn unlearn``
            before any user code runs). It must have one item per forget sample; when the
            dataset names its items' files, ``setup`` checks that their names and contents
            are the committed ones. Default: committed from the datamodule's dataset in ``setup``.
        input_record: The input checkpoint's ``receipt.file_record``, taken when its weights
            were read (``lightly-unlearn unlearn`` reads and hashes it before importing any
            user code). Default: hashed at fit start. ``unchanged`` compares the file at the
            end with this record.
    """

    def __init__(
        self,
        path: str | os.PathLike | None = None,
        input_checkpoint: str | os.PathLike | None = None,
        signing_key: str | os.PathLike | None = None,
        *,
        unlearn: UnlearnCallback | None = None,
        audit: AuditCallback | None = None,
        forget_commitment: ForgetCommitment | None = None,
        input_record: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self._given_input_record = None if input_record is None else dict(input_record)
        self.unlearn = unlearn
        self.audit = audit
        self.path = None if path is None else Path(path)
        self.input_checkpoint = None if input_checkpoint is None else Path(input_checkpoint)
        self.signing_key = None if signing_key is None else Path(signing_key)
        if self.signing_key is not None:
            load_signing_key(self.signing_key)  # refuse a missing or unusable key now
        self.given_commitment = forget_commitment
        self._signer: Any = None
        self.started_at: str | None = None
        self.input_record: dict[str, Any] | None = None
        self._source: Path | None = None
        self._path: Path | None = None
        #: the forget set committed by content (``None`` with :attr:`commitment_missing`)
        self.commitment: ForgetCommitment | None = forget_commitment
        self.commitment_missing: str | None = None
        #: the unlearned weights' record (digest) taken at fit end, rank 0
        self.weights: dict[str, Any] | None = None
        self.receipt: dict[str, Any] | None = None
        self.written: Path | None = None
        #: the folder the proofs were written to (rank 0), ``None`` if none were
        self.proofs_written: Path | None = None

    # -- before training: everything that can be refused is refused here -----------------------
    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        if self._unlearn(trainer) is None:
            raise ConfigurationError(
                "ReceiptCallback records an unlearning run, but the trainer has no "
                "UnlearnCallback: add `UnlearnCallback(method=...)` to `callbacks`."
            )
        if self.input_checkpoint is not None and not self.input_checkpoint.is_file():
            raise FileNotFoundError(
                f"ReceiptCallback(input_checkpoint={str(self.input_checkpoint)!r}): no such file. "
                "Pass the checkpoint the model's weights were loaded from."
            )
        source = self.input_checkpoint or getattr(  # UnlearnCallback(init_checkpoint=...)
            self._unlearn(trainer), "init_checkpoint", None)
        self._source = None if source is None else Path(source)
        if self._source is not None:
            refuse_overwriting_checkpoint_callback(trainer, self._source, self.input_checkpoint is not None)
        # trainer.log_dir is a collective (broadcast) under DDP: setup runs on every rank
        self._path = self.path or default_receipt_path(trainer.log_dir, trainer.default_root_dir)
        self._check_outputs(self._path, self._source)
        check_digestible(pl_module.state_dict(), what=f"{type(pl_module).__name__}.state_dict()")
        self._signer = None if self.signing_key is None else load_signing_key(self.signing_key)
        self.commitment, self.commitment_missing = commit_datamodule_forget_set(
            getattr(trainer, "datamodule", None), self.given_commitment)
        self.started_at = now()
        self.receipt = self.written = self.weights = self.proofs_written = None

    def _unlearn(self, trainer: pl.Trainer) -> UnlearnCallback | None:
        return self.unlearn if self.unlearn is not None else _find(trainer, UnlearnCallback)

    def _audit(self, trainer: pl.Trainer) -> AuditCallback | None:
        return self.audit if self.audit is not None else _find(trainer, AuditCallback)

    def _check_outputs(self, path: Path, *inputs: Any) -> None:
        what = "ReceiptCallback(path=...)" if self.path is not None else "The receipt path"
        check_receipt_outputs(path, inputs, what)

    def _check_ckpt_path(self, trainer: pl.Trainer) -> None:
        resume = getattr(trainer, "ckpt_path", None)
        if self._source is None and resume:
            self._source = Path(resume)
            refuse_overwriting_checkpoint_callback(trainer, self._source, self.input_checkpoint is not None)
        if resume and self._path is not None:
            self._check_outputs(self._path, self._source, resume)

    @override
    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        # Lightning sets trainer.ckpt_path only after `setup`; the first hook that sees it is
        # this one, while the checkpoint is being restored and before any hook writes a file.
        if getattr(trainer, "state", None) is None or getattr(trainer.state, "fn", None) == "fit":
            self._check_ckpt_path(trainer)

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._check_ckpt_path(trainer)  # (again, for strategies that restore after setup)
        self.input_record = None
        if self._source is not None and trainer.is_global_zero:
            self.input_record = self._given_input_record or file_record(self._source)

    # -- after training ----------------------------------------------------------------------------
    @override
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        state = module_state_dict(trainer, pl_module)  # on every rank (collective when sharded)
        output = None
        if getattr(trainer, "is_global_zero", True):
            self.weights = weights_record(state)
            output = saved_final_checkpoint(trainer, self.weights["sha256"])
        self.write(trainer, output)

    def write(
        self, trainer: pl.Trainer, checkpoint_path: str | os.PathLike | None = None, *,
        output_name: str | None = None,
    ) -> Path | None:
        """Write the receipt (and, the first time, the proofs), recording ``checkpoint_path`` as
        the output checkpoint by SHA-256.

        ``checkpoint_path`` must hold the weights the run ended with (checked by their digest;
        otherwise :class:`ConfigurationError`, and nothing is written). Without it, the receipt
        binds the weights by digest alone. Called outside the fit it records, the weights are the
        trainer's module's current ones. Call on every rank; only global rank 0 writes. Returns
        the receipt's path (rank 0). ``output_name``: the path the receipt names for the
        checkpoint when it is written elsewhere first (the CLI writes into a temporary folder
        that is renamed into place).
        """
        # trainer.log_dir is a collective (broadcast) under DDP: resolved on every rank
        log_dir = trainer.log_dir if self.path is None else None
        if not getattr(trainer, "is_global_zero", True):
            return None
        path = self.path or default_receipt_path(log_dir, trainer.default_root_dir)
        input_path = None if self.input_record is None else self.input_record["path"]
        self._check_outputs(path, input_path, checkpoint_path)  # also for write() without a fit
        if self.signing_key is not None and self._signer is None:
            self._signer = load_signing_key(self.signing_key)
        if self.weights is None:  # write() without a fit: the module as it is now
            self.weights = weights_record(module_state_dict(trainer, trainer.lightning_module))
        output = None if checkpoint_path is None else output_record(
            checkpoint_path, self.weights["sha256"], output_name)
        receipt = build_receipt(**self._contents(trainer), output_checkpoint=output)
        if self._signer is not None:
            receipt = sign_receipt(receipt, self._signer)
        if self.proofs_written != path.parent / PROOFS_FOLDER:  # once per commitment
            self.proofs_written = place_proofs(path.parent, self.commitment)
        self.receipt, self.written = receipt, write_receipt(path, receipt)
        return self.written

    def _contents(self, trainer: pl.Trainer) -> dict[str, Any]:
        """Everything the receipt records but the output checkpoint."""
        unlearn = self._unlearn(trainer)
        if unlearn is None:
            raise ConfigurationError(
                "No UnlearnCallback in this trainer; nothing to write a receipt for."
            )
        dm = getattr(trainer, "datamodule", None)
        if self.commitment is None and self.commitment_missing is None:
            self.commitment, self.commitment_missing = commit_datamodule_forget_set(
                dm, self.given_commitment)
        state = unlearn.state_dict()
        return dict(
            method=state["method"],
            hyperparameters=state["hyperparameters"],
            weights=self.weights,
            num_forget=state["num_forget"],
            num_samples=getattr(dm, "num_samples", -1),
            forget_commitment=self.commitment,
            commitment_missing=self.commitment_missing,
            input_checkpoint=input_record_at_end(self.input_record),
            audits=audit_section(self._audit(trainer)),
            training=training_section(trainer),
            started_at=self.started_at,
        )
