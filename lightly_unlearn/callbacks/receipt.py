"""``ReceiptCallback``: write an unlearning receipt (``lightly_unlearn.receipt``) and the data
owners' deletion proofs when fit ends."""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from lightly_unlearn.audits.runner import flat_metrics
from lightly_unlearn.callbacks.audit import AuditCallback
from lightly_unlearn.callbacks.unlearn import UnlearnCallback
from lightly_unlearn.errors import ConfigurationError
from lightly_unlearn.forget_commitment import (
    PROOFS_FOLDER,
    ForgetCommitment,
    commit_forget_set,
    forget_contents,
    is_proofs_folder,
    write_proofs,
)
from lightly_unlearn.namespaces import DualNamespaceCallback
from lightly_unlearn.paths import check_output_path
from lightly_unlearn.receipt import (
    build_receipt,
    file_record,
    is_receipt,
    load_signing_key,
    now,
    sign_receipt,
    write_receipt,
)
from lightly_unlearn.weights_digest import (
    check_digestible,
    checkpoint_state_dict,
    state_dict_sha256,
    weights_record,
)

RECEIPT_NAME = "unlearning_receipt.json"


def _find(trainer: Any, kind: type) -> Any:
    """The trainer's first callback of class ``kind`` (``None`` if there is none)."""
    return next((cb for cb in getattr(trainer, "callbacks", []) or [] if isinstance(cb, kind)), None)


def _state_dict(trainer: Any, pl_module: nn.Module) -> dict[str, Any]:
    """The LightningModule's state dict as ``trainer.save_checkpoint`` stores it (collective
    under sharded strategies: call on every rank)."""
    strategy = getattr(trainer, "strategy", None)
    if strategy is not None and getattr(strategy, "lightning_module", None) is not None:
        return strategy.lightning_module_state_dict()
    return pl_module.state_dict()


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
            (:func:`lightly_unlearn.receipt.commit_files`, e.g. by ``lightly-unlearn unlearn``
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
    def setup(self, trainer: Any, pl_module: nn.Module, stage: str) -> None:
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
        self._source = self.input_checkpoint or getattr(  # UnlearnCallback(init_checkpoint=...)
            self._unlearn(trainer), "init_checkpoint", None)
        self._source = None if self._source is None else Path(self._source)
        if self._source is not None:
            self._refuse_overwriting_checkpoint_callback(trainer, self._source)
        # trainer.log_dir is a collective (broadcast) under DDP: setup runs on every rank
        self._path = self.path or Path(trainer.log_dir or trainer.default_root_dir) / RECEIPT_NAME
        self._check_path(self._path, self._source)
        check_digestible(pl_module.state_dict(), what=f"{type(pl_module).__name__}.state_dict()")
        self._signer = None if self.signing_key is None else load_signing_key(self.signing_key)
        self._commit(getattr(trainer, "datamodule", None))
        self.started_at = now()
        self.receipt = self.written = self.weights = self.proofs_written = None

    def _commit(self, dm: Any) -> None:
        """Commit to the forget set by content (or check the caller's commitment)."""
        dataset, positions = getattr(dm, "dataset", None), getattr(dm, "forget_indices", None)
        if positions is None:
            self.commitment, self.commitment_missing = None, (
                "the datamodule has no forget_indices, so no forget items could be committed")
            return
        positions = [int(p) for p in positions]
        given = self.given_commitment
        if given is None:
            self.commitment, self.commitment_missing = commit_forget_set(dataset, positions)
            return
        if len(given.names) != len(positions):
            raise ConfigurationError(
                f"ReceiptCallback(forget_commitment=...) commits to {len(given.names)} items, "
                f"but the datamodule forgets {len(positions)} samples."
            )
        contents, _ = forget_contents(dataset, positions)
        if contents is not None and contents.kind == given.kind:
            ours = sorted(zip(contents.names, (h.hex() for h in contents.content_sha256)))
            theirs = sorted(zip(given.names, given.content_sha256))
            changed = [name for (name, h), (_, g) in zip(ours, theirs) if h != g]
            if [n for n, _ in ours] != [n for n, _ in theirs] or changed:
                raise ConfigurationError(
                    "ReceiptCallback(forget_commitment=...) does not describe the datamodule's "
                    "forget set: "
                    + (f"the content of {changed[:5]} changed after it was committed"
                       if changed else "the committed names differ from the forget items' files")
                    + ". The receipt would not describe the data that is unlearned."
                )
        self.commitment, self.commitment_missing = given, None

    def _unlearn(self, trainer: Any) -> UnlearnCallback | None:
        return self.unlearn if self.unlearn is not None else _find(trainer, UnlearnCallback)

    def _audit(self, trainer: Any) -> AuditCallback | None:
        return self.audit if self.audit is not None else _find(trainer, AuditCallback)

    def _refuse_overwriting_checkpoint_callback(self, trainer: Any, source: Path) -> None:
        for cb in getattr(trainer, "callbacks", []) or []:
            dirpath = getattr(cb, "dirpath", None)
            if dirpath is None or not hasattr(cb, "save_last"):
                continue
            if Path(dirpath).resolve() == source.resolve().parent and (
                source.name.startswith("last") or source.name.startswith("epoch=")
            ):
                hint = (
                    " If you are resuming an interrupted unlearning run, pass the checkpoint its "
                    "weights were first loaded from: ReceiptCallback(input_checkpoint="
                    "'pretrained.ckpt'); the resume checkpoint is then not taken as the input."
                    if self.input_checkpoint is None
                    else ""
                )
                raise ValueError(
                    f"{type(cb).__name__}(dirpath={str(dirpath)!r}) writes into the folder of the "
                    f"input checkpoint {source}, and could overwrite it. Inputs are never "
                    "modified: give ModelCheckpoint another dirpath (or copy the input first)."
                    + hint
                )

    def _check_path(self, path: Path, *inputs: Any) -> None:
        what = "ReceiptCallback(path=...)" if self.path is not None else "The receipt path"
        check_output_path(path, inputs=inputs, kind="file", replaceable=is_receipt, what=what)
        proofs = path.parent / PROOFS_FOLDER
        check_output_path(proofs, inputs=inputs, kind="dir", what="The deletion proofs folder")
        if proofs.exists() and not is_proofs_folder(proofs):
            raise ConfigurationError(
                f"The deletion proofs folder {proofs} (beside the receipt) already exists and "
                "holds files other than *.proof.json; it is not replaced. Choose another "
                "receipt path or move that folder."
            )

    def _check_ckpt_path(self, trainer: Any) -> None:
        resume = getattr(trainer, "ckpt_path", None)
        if self._source is None and resume:
            self._source = Path(resume)
            self._refuse_overwriting_checkpoint_callback(trainer, self._source)
        if resume and self._path is not None:
            self._check_path(self._path, self._source, resume)

    def on_load_checkpoint(self, trainer: Any, pl_module: nn.Module, checkpoint: dict[str, Any]) -> None:
        # Lightning sets trainer.ckpt_path only after `setup`; the first hook that sees it is
        # this one, while the checkpoint is being restored and before any hook writes a file.
        if getattr(trainer, "state", None) is None or getattr(trainer.state, "fn", None) == "fit":
            self._check_ckpt_path(trainer)

    def on_fit_start(self, trainer: Any, pl_module: nn.Module) -> None:
        self._check_ckpt_path(trainer)  # (again, for strategies that restore after setup)
        source = self._source
        self.input_record = None
        if source is not None and trainer.is_global_zero:
            self.input_record = self._given_input_record or file_record(source)

    # -- after training ----------------------------------------------------------------------------
    def on_fit_end(self, trainer: Any, pl_module: nn.Module) -> None:
        state = _state_dict(trainer, pl_module)  # on every rank (collective when sharded)
        output = None
        if getattr(trainer, "is_global_zero", True):
            self.weights = weights_record(state)
            ckpt_cb = getattr(trainer, "checkpoint_callback", None)
            for attr in ("last_model_path", "best_model_path"):  # only a file of these weights
                candidate = getattr(ckpt_cb, attr, "") if ckpt_cb is not None else ""
                if candidate and Path(candidate).is_file() and self._holds_weights(candidate):
                    output = candidate
                    break
        self.write(trainer, output)

    def _holds_weights(self, path: str | os.PathLike) -> bool:
        try:
            return state_dict_sha256(checkpoint_state_dict(path)) == self.weights["sha256"]
        except ConfigurationError:
            return False

    def write(
        self, trainer: Any, checkpoint_path: str | os.PathLike | None = None, *,
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
        path = self.path or Path(log_dir or trainer.default_root_dir) / RECEIPT_NAME
        input_path = None if self.input_record is None else self.input_record["path"]
        self._check_path(path, input_path, checkpoint_path)  # also for write() without a fit
        if self.signing_key is not None and self._signer is None:
            self._signer = load_signing_key(self.signing_key)
        unlearn = self._unlearn(trainer)
        if unlearn is None:
            raise ConfigurationError(
                "No UnlearnCallback in this trainer; nothing to write a receipt for."
            )
        dm = getattr(trainer, "datamodule", None)
        if self.weights is None:  # write() without a fit: the module as it is now
            self.weights = weights_record(_state_dict(trainer, trainer.lightning_module))
        if self.commitment is None and self.commitment_missing is None:
            self._commit(dm)
        output = None
        if checkpoint_path is not None:
            if state_dict_sha256(checkpoint_state_dict(checkpoint_path)) != self.weights["sha256"]:
                raise ConfigurationError(
                    f"{checkpoint_path} does not hold the weights this unlearning run ended with, "
                    "so the receipt cannot name it as the output checkpoint. Save the trained "
                    "module (trainer.save_checkpoint) and pass that file."
                )
            output = file_record(checkpoint_path)
            if output_name is not None:
                output["path"] = output_name
        state = unlearn.state_dict()
        receipt = build_receipt(
            method=state["method"],
            hyperparameters=state["hyperparameters"],
            weights=self.weights,
            num_forget=state["num_forget"],
            num_samples=getattr(dm, "num_samples", -1),
            forget_commitment=self.commitment,
            commitment_missing=self.commitment_missing,
            input_checkpoint=self._input_record(),
            output_checkpoint=output,
            audits=self._audits(trainer),
            training={
                "current_epoch": int(trainer.current_epoch),
                "global_step": int(trainer.global_step),
                "world_size": int(getattr(trainer, "world_size", 1) or 1),
                "max_epochs": trainer.max_epochs,
            },
            started_at=self.started_at,
        )
        if self._signer is not None:
            receipt = sign_receipt(receipt, self._signer)
        self._write_proofs(path.parent)
        self.receipt, self.written = receipt, write_receipt(path, receipt)
        return self.written

    def _write_proofs(self, folder: Path) -> None:
        """The proofs beside the receipt, once per commitment (an earlier run's are replaced)."""
        target = folder / PROOFS_FOLDER
        if self.commitment is None:
            if is_proofs_folder(target):  # an earlier run's proofs: they no longer match a receipt
                shutil.rmtree(target)
            return
        if self.proofs_written != target:
            write_proofs(folder, self.commitment.proofs, self.commitment.names, replace=True)
            self.proofs_written = target

    def _input_record(self) -> dict[str, Any] | None:
        record = self.input_record
        if record is None:
            return None
        current = file_record(record["path"])
        record = {**record, "unchanged": current["sha256"] == record["sha256"]}
        if not record["unchanged"]:
            warnings.warn(
                f"The input checkpoint {record['path']} changed during the run "
                "(another process or a checkpoint callback wrote to it).",
                stacklevel=3,
            )
        return record

    def _audits(self, trainer: Any) -> dict[str, Any] | None:
        """The audit numbers, and the verdict the ``AuditCallback`` kept for its "after" audit."""
        audit = self._audit(trainer)
        if audit is None or (audit.before is None and audit.after is None):
            return None
        verdict = audit.verdict if audit.after else None  # an epoch audit's is not the final one
        return {
            "before": flat_metrics(audit.before) if audit.before else None,
            "after": flat_metrics(audit.after) if audit.after else None,
            "warnings": verdict.warnings if verdict else [],  # worst first
            "verdict": verdict.line if verdict else None,
        }
