"""``ReceiptCallback``: write an unlearning receipt (``lightly_unlearn.receipt``) when fit ends."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from lightly_unlearn.audits.runner import flat_metrics
from lightly_unlearn.audits.verdict import assess
from lightly_unlearn.callbacks.audit import AuditCallback
from lightly_unlearn.callbacks.unlearn import UnlearnCallback
from lightly_unlearn.errors import ConfigurationError
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

RECEIPT_NAME = "unlearning_receipt.json"


def _find(trainer: Any, kind: type) -> Any:
    """The trainer's first callback of class ``kind`` (``None`` if there is none)."""
    return next((cb for cb in getattr(trainer, "callbacks", []) or [] if isinstance(cb, kind)), None)


def _named(record: dict[str, Any] | None, name: str | None) -> dict[str, Any] | None:
    return record if record is None or name is None else {**record, "path": name}


class ReceiptCallback(DualNamespaceCallback):  # a Callback in both namespaces
    """Write ``unlearning_receipt.json`` at the end of an ``UnlearnCallback`` run.

    The receipt records the method and hyper-parameters, the forget-set hash, SHA-256 of the
    input checkpoint (``input_checkpoint=``, or the ``ckpt_path`` given to ``fit``) and of the
    output checkpoint (the file the trainer's ``ModelCheckpoint`` wrote last, if any), library
    versions, the "before"/"after" audit numbers of an ``AuditCallback`` in the same trainer,
    and timestamps. Only global rank 0 hashes and writes.

    Fit-end hooks run after the last epoch's checkpoint is written, so the hashed output
    checkpoint exists and holds the final weights. Without a ``ModelCheckpoint``, save the
    weights yourself and call :meth:`write` (``trainer.save_checkpoint`` is collective under DDP:
    call it, and ``write``, on every rank)::

        trainer.fit(model, datamodule=dm)
        trainer.save_checkpoint("unlearned.ckpt")
        receipt_cb.write(trainer, "unlearned.ckpt")

    The input checkpoint is only read; it is hashed before training and again at the end. In
    ``setup``, before any work, the callback refuses a receipt path that is (or links to) an input
    checkpoint, an existing folder or an existing file that is not an earlier receipt
    (:func:`lightly_unlearn.paths.check_output_path`), a ``ModelCheckpoint`` that could overwrite
    the input (same folder, a ``last``/``epoch=`` file name), and an unusable signing key. (An
    input given only as ``fit``'s ``ckpt_path`` is known to callbacks from ``on_fit_start``; its
    checks run there, still before the first step.)

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
        self._signer: Any = None
        self.started_at: str | None = None
        self.input_record: dict[str, Any] | None = None
        self._source: Path | None = None
        self._path: Path | None = None
        self.receipt: dict[str, Any] | None = None
        self.written: Path | None = None

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
        self._signer = None if self.signing_key is None else load_signing_key(self.signing_key)
        self.started_at = now()
        self.receipt = self.written = None

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
        ckpt_cb = getattr(trainer, "checkpoint_callback", None)
        output = None
        for attr in ("last_model_path", "best_model_path"):
            candidate = getattr(ckpt_cb, attr, "") if ckpt_cb is not None else ""
            if candidate and Path(candidate).is_file():
                output = candidate
                break
        self.write(trainer, output)

    def write(
        self, trainer: Any, checkpoint_path: str | os.PathLike | None, *, output_name: str | None = None
    ) -> Path | None:
        """Build the receipt for ``checkpoint_path`` (the unlearned checkpoint) and write it.

        Call on every rank; only global rank 0 writes. Returns the receipt's path (rank 0).
        ``output_name``: the path the receipt names for the checkpoint, when it is written
        somewhere else first (the CLI writes into a temporary folder renamed into place).
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
        state = unlearn.state_dict()
        dm = getattr(trainer, "datamodule", None)
        audit = self._audit(trainer)
        audits = None
        if audit is not None and (audit.before is not None or audit.after is not None):
            audits = {
                "before": flat_metrics(audit.before or {}) if audit.before else None,
                "after": flat_metrics(audit.after or {}) if audit.after else None,
            }
            verdict = assess(audit.before, audit.after) if audit.after else None  # the audit's
            audits["warnings"] = verdict.warnings if verdict else []  # warnings, worst first
            audits["verdict"] = verdict.line if verdict else None
        input_record = self.input_record
        if input_record is not None:
            current = file_record(input_record["path"])
            input_record = {**input_record, "unchanged": current["sha256"] == input_record["sha256"]}
            if not input_record["unchanged"]:
                warnings.warn(
                    f"The input checkpoint {input_record['path']} changed during the run "
                    "(another process or a checkpoint callback wrote to it).",
                    stacklevel=2,
                )
        receipt = build_receipt(
            method=state["method"],
            hyperparameters=state["hyperparameters"],
            forget_sha256=state["forget_sha256"],
            num_forget=state["num_forget"],
            num_samples=getattr(dm, "num_samples", -1),
            input_checkpoint=input_record,
            output_checkpoint=_named(file_record(checkpoint_path), output_name) if checkpoint_path else None,
            audits=audits,
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
        self.receipt, self.written = receipt, write_receipt(path, receipt)
        return self.written
