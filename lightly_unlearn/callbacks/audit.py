"""``AuditCallback``: audit the model before and after an unlearning run.

The audits themselves live in :mod:`lightly_unlearn.audits` (explained for data owners in
docs/audits.md); this callback decides when they run, publishes their numbers, keeps the
verdict and writes the report.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from typing_extensions import override

from lightly_unlearn.audits.base import Audit, AuditResult, MetricInfo, metric_descriptions
from lightly_unlearn.audits.features import EmbedSpec, check_embed_spec, resolve_embed_fn
from lightly_unlearn.audits.figures import draw_figures
from lightly_unlearn.audits.inputs import datamodule_inputs, images_to_embed, require_datamodule
from lightly_unlearn.audits.labels import panel_labels, sample_labels
from lightly_unlearn.audits.report import audit_notes, write_report
from lightly_unlearn.audits.runner import (
    DEFAULT_AUDITS,
    flat_metrics,
    needs_of,
    resolve_audits,
    run_audits,
)
from lightly_unlearn.audits.schema import AuditRecord, result_arrays
from lightly_unlearn.audits.verdict import Verdict, assess
from lightly_unlearn.callbacks.progress import pause_training_clock, work_bar
from lightly_unlearn.namespaces import DualNamespaceCallback
from lightly_unlearn.roles import ModuleRoles

if TYPE_CHECKING:
    import lightning.pytorch as pl


def _check_arguments(audits: Any, num_samples: int, every_n_epochs: int | None) -> None:
    """Refuse, when the callback is built, settings that could only fail once the fit runs."""
    if isinstance(audits, (str, bytes)):  # a str is a sequence of letters: 'e', 'm', ...
        raise TypeError(
            f"audits must be a list of audit names or Audit instances; got the string "
            f"{audits!r}. Write audits=({audits!r},)."
        )
    if num_samples < 2:
        raise ValueError(f"num_samples must be at least 2; got {num_samples}.")
    if every_n_epochs is not None and every_n_epochs < 1:
        raise ValueError(f"every_n_epochs must be a positive integer or None; got {every_n_epochs}.")


class AuditCallback(DualNamespaceCallback):  # a Callback in both namespaces
    """Run audits at fit start ("before"), at train end ("after") and optionally every n epochs.

    Reads the splits of the trainer's ``ForgetRetainDataModule``. Each run embeds a seeded
    sample of every split once for all audits (one clean pass, ``num_views`` seeded augmented
    passes), with the same samples and augmentations every time, so "before" and "after" compare.

    Outputs: ``audit/<before|after|epoch>/<metric>`` through every logger and in
    ``trainer.callback_metrics`` (on every rank, for ``ModelCheckpoint`` / ``EarlyStopping``);
    on global rank 0, under ``<trainer.log_dir>/audits/``, ``audit.json``
    (:class:`~lightly_unlearn.audits.schema.AuditRecord`), ``report.md`` and the gap heat map
    (also sent to loggers with ``add_figure``), with the warnings and one-line verdict of
    :func:`~lightly_unlearn.audits.verdict.assess`, kept in :attr:`verdict`. Samples are named
    by file name where the dataset has ``names``, else ``#<position>``
    (:func:`~lightly_unlearn.audits.labels.sample_labels`). Results measured afterwards (the
    relearning test) join the "after" audit through :meth:`add_result`.

    "Before" is measured in ``on_fit_start`` (before ``UnlearnCallback(method="retrain")``
    re-initialises the model) and kept in ``state_dict``, so a resumed run compares against the
    model as it was. Under multi-device training each rank embeds a shard, features are
    gathered, and the audits run once on rank 0.

    Args:
        audits: Registered audit names (``lightly-unlearn list``) or :class:`Audit` instances.
        num_samples: At most this many samples of each split are audited (a seeded sample).
        every_n_epochs: Also audit after every n-th training epoch (``None``: never).
        num_views: ``K``, augmentations per sample for alignment scores and matrices.
        embed_fn: ``"backbone"`` (default), ``"head"`` or a callable images -> embeddings.
        roles: Where the backbone and head are (``ModuleRoles``; default: lightly's names).
        batch_size: Images per forward pass.
        save_files: Write ``audit.json``, ``report.md`` and the heat map.
        classnames: Class names for the ``clip_zero_shot`` audit's prompts (CLIP only).
        templates: Prompt templates for ``clip_zero_shot`` (CLIP only).
        progress: Show the audit progress bar (default: when the trainer shows its own).
        verbose: Print the one-line summary (verdict and report path) after the audit.
    """

    def __init__(
        self,
        audits: Sequence[str | Audit] = DEFAULT_AUDITS,
        num_samples: int = 10_000,
        every_n_epochs: int | None = None,
        *,
        num_views: int = 10,
        embed_fn: EmbedSpec = "backbone",
        roles: ModuleRoles | None = None,
        batch_size: int = 256,
        save_files: bool = True,
        classnames: Sequence[str] | None = None,
        templates: Sequence[str] | None = None,
        progress: bool | None = None,
        verbose: bool = True,
    ) -> None:
        super().__init__()
        _check_arguments(audits, num_samples, every_n_epochs)
        self.audits = resolve_audits(audits)
        self.num_samples, self.num_views = int(num_samples), int(num_views)
        self.every_n_epochs = every_n_epochs
        self.embed_fn = check_embed_spec(embed_fn)
        self.roles, self.batch_size, self.save_files = roles, int(batch_size), save_files
        self.classnames = list(classnames) if classnames is not None else None
        self.templates = list(templates) if templates is not None else None
        self.progress, self.verbose = progress, bool(verbose)
        #: warnings and one-line verdict of the last "after" (or epoch) audit, rank 0
        self.verdict: Verdict | None = None
        #: where the last report was written (rank 0, ``save_files=True``)
        self.report_path: Path | None = None
        self.before: dict[str, AuditResult] | None = None
        self.after: dict[str, AuditResult] | None = None
        self.history: list[dict[str, Any]] = []
        self._restored = False
        self._added_info: dict[str, MetricInfo] = {}
        self._last_report: tuple[Path, Any] | None = None  # folder and datamodule of "after"

    # -- checkpoint state ---------------------------------------------------------------------
    @override
    def state_dict(self) -> dict[str, Any]:
        before = None if self.before is None else {n: r.to_state() for n, r in self.before.items()}
        return {"before": before, "history": [dict(h) for h in self.history]}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        before = state_dict.get("before")
        if before is not None:
            self.before = {name: AuditResult.from_state(s) for name, s in before.items()}
            self._restored = True
        self.history = [dict(h) for h in state_dict.get("history", [])]

    # -- hooks ----------------------------------------------------------------------------------
    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":  # refuse a datamodule without the needed splits before anything runs
            require_datamodule(self.audits, getattr(trainer, "datamodule", None))
            if self.save_files:  # the reports' folder: never an existing file (checked now)
                from lightly_unlearn.paths import check_output_path

                folder = Path(trainer.log_dir or trainer.default_root_dir) / "audits"
                check_output_path(folder, kind="dir", what="AuditCallback's report folder")

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._restored and self.before is not None:
            if getattr(trainer, "is_global_zero", True):
                self._publish(trainer, "before", flat_metrics(self.before))
            return  # resumed: the model is no longer the "before" model
        self.history, self.after = [], None
        self.before = self._audit(trainer, pl_module, "before")

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        n = self.every_n_epochs
        if n is None or (trainer.current_epoch + 1) % n != 0:
            return
        if trainer.current_epoch + 1 >= (trainer.max_epochs or -1) > 0:
            return  # the final epoch is audited by on_train_end
        self._audit(trainer, pl_module, "epoch")

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.after = self._audit(trainer, pl_module, "after")
        self._restored = False

    # -- results measured outside the callback ------------------------------------------------
    def add_result(
        self, name: str, result: AuditResult, *, metric_info: Mapping[str, MetricInfo] | None = None
    ) -> Verdict:
        """Add ``result`` (e.g. the relearning test's ``RelearnResult.to_audit_result()``) to the
        "after" audit under ``name``: the verdict is assessed again and, on the rank that wrote
        the report, ``audit.json`` and ``report.md`` are rewritten. Returns the new verdict."""
        if self.after is None:
            raise RuntimeError(
                "AuditCallback.add_result needs the 'after' audit: call it after trainer.fit."
            )
        self.after = {**self.after, name: result}
        self._added_info.update(metric_info or {})
        if self.history and self.history[-1]["when"] == "after":
            self.history[-1]["metrics"].update(result.metrics)
        self.verdict = assess(self.before, self.after)
        if self._last_report is not None:
            self._report(self.after, "after", *self._last_report, suffix="")
        return self.verdict

    # -- work -----------------------------------------------------------------------------------
    def _embed(self, pl_module: nn.Module) -> Any:
        """Images -> the embeddings the audits read (``embed_fn`` resolved through ``roles``)."""
        return resolve_embed_fn(self.embed_fn, pl_module, self.roles)

    def _publish(self, trainer: pl.Trainer, when: str, metrics: dict[str, float]) -> None:
        """``audit/<when>/<metric>`` tensors in ``trainer.callback_metrics``."""
        callback_metrics = getattr(trainer, "callback_metrics", None)
        if callback_metrics is not None:
            for key, value in metrics.items():
                callback_metrics[f"audit/{when}/{key}"] = torch.tensor(float(value))

    def _inputs(self, trainer: pl.Trainer, pl_module: pl.LightningModule, dm: Any, when: str) -> Any:
        """Embed every split once for all audits (a progress bar while images are embedded)."""
        world = int(getattr(trainer, "world_size", 1) or 1)
        device = getattr(pl_module, "device", None)
        bar = None
        if {"clean", "views"} & needs_of(self.audits):
            total = images_to_embed(self.audits, dm, self.num_views, self.num_samples, world)
            bar = work_bar(trainer, f"Audit ({when})", total, self.progress)
        try:
            return datamodule_inputs(
                self.audits, dm, pl_module, self._embed(pl_module),
                num_views=self.num_views, num_samples=self.num_samples, batch_size=self.batch_size,
                device=device, rank=int(getattr(trainer, "global_rank", 0)), world_size=world,
                all_gather=None if world == 1 else (lambda t: trainer.strategy.all_gather(t.to(device))),
                progress=None if bar is None else bar.update,
                classnames=self.classnames, templates=self.templates,
            )  # fmt: skip
        finally:
            if bar is not None:
                bar.close()

    def _audit(self, trainer: pl.Trainer, pl_module: pl.LightningModule, when: str) -> dict[str, AuditResult] | None:
        dm = require_datamodule(self.audits, getattr(trainer, "datamodule", None))
        start = time.perf_counter()
        inputs = self._inputs(trainer, pl_module, dm, when)
        # trainer.log_dir broadcasts under DDP: every rank must read it, before rank 0 goes on
        folder = Path(trainer.log_dir or trainer.default_root_dir) / "audits"
        results = metrics = None
        rank_zero = getattr(trainer, "is_global_zero", True)
        if rank_zero:  # audits run once, on gathered features
            before = None if when == "before" else self.before
            results = run_audits(self.audits, inputs, before=before)
            metrics = {**flat_metrics(results), "seconds": time.perf_counter() - start}
        if int(getattr(trainer, "world_size", 1) or 1) > 1:  # every rank gets the numbers
            metrics = trainer.strategy.broadcast(metrics, src=0)
        self._publish(trainer, when, metrics)
        if rank_zero:
            self._conclude(trainer, when, results, metrics, folder, dm)
        pause_training_clock(trainer, time.perf_counter() - start)
        return results

    def _conclude(self, trainer: pl.Trainer, when: str, results: dict[str, AuditResult],
                  metrics: dict[str, float], folder: Path, dm: Any) -> None:  # fmt: skip
        """Rank 0: log the numbers, keep them in the history, and after "before" the verdict,
        the figures, the files and the one-line summary."""
        step = int(getattr(trainer, "global_step", 0))
        for logger in getattr(trainer, "loggers", []) or []:
            logger.log_metrics({f"audit/{when}/{k}": v for k, v in metrics.items()}, step=step)
        epoch = int(trainer.current_epoch)
        self.history.append({"when": when, "epoch": epoch, "step": step, "metrics": metrics})
        if when == "before":
            return
        self.verdict = assess(self.before, results)
        suffix = "" if when == "after" else f"_epoch{epoch}"
        self._log_figures(trainer, when, self._report(results, when, folder, dm, suffix))
        if when == "after":
            self._last_report = (folder, dm)
        if self.verbose:
            where = f"; report: {self.report_path}" if self.report_path else ""
            print(f"Audit ({when}): {self.verdict.line}{where}", flush=True)

    def _report(self, results: dict[str, AuditResult], when: str, folder: Path, dm: Any,
                suffix: str) -> dict[str, Any]:  # fmt: skip
        """Figures of ``results`` (returned, for loggers) and, with ``save_files``, the files."""
        figures = draw_figures(
            self.audits, results, title=f"Alignment gap matrix ({when})", verdict=self.verdict,
            labeler=lambda split, keys: sample_labels(getattr(dm, split, None), keys),
        )  # fmt: skip
        if not self.save_files:
            return figures
        embed = self.embed_fn if isinstance(self.embed_fn, str) else repr(self.embed_fn)
        record = AuditRecord(
            config={"audits": [a.name for a in self.audits], "num_samples": self.num_samples,
                    "num_views": self.num_views, "embed_fn": embed},
            before=flat_metrics(self.before or {}), after=flat_metrics(results),
            verdict=self.verdict, when=when, **panel_labels(results, dm),
            arrays=result_arrays(results), history=self.history,
        )  # fmt: skip
        paths = write_report(
            folder, record, figures=figures, title=f"Unlearning audit ({when})",
            notes=audit_notes(self.audits, list(results)),
            metric_info={**metric_descriptions(self.audits), **self._added_info}, suffix=suffix,
        )  # fmt: skip
        self.report_path = paths["report"]
        return figures

    @staticmethod
    def _log_figures(trainer: pl.Trainer, when: str, figures: Mapping[str, Any]) -> None:
        for name, figure in figures.items():
            for logger in getattr(trainer, "loggers", []) or []:
                experiment = getattr(logger, "experiment", None)
                if hasattr(experiment, "add_figure"):
                    experiment.add_figure(f"audit/{when}/{name}", figure, trainer.global_step)
