"""``AuditCallback``: audit the model before and after an unlearning run.

The audits (EMIA after EncoderMI, arXiv:2108.11023; linear probe; CMIA; the alignment gap matrix
of Alignment Calibration, MUC, arXiv:2406.03603) are defined in :mod:`lightly_unlearn.audits`
and explained in the docs' audits guide (``docs/guide/auditing.md``)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from lightly_unlearn.audits.base import Audit, AuditResult, metric_descriptions
from lightly_unlearn.audits.features import EmbedSpec, check_embed_spec, resolve_embed_fn
from lightly_unlearn.audits.report import draw_figures, write_report
from lightly_unlearn.audits.runner import (
    DEFAULT_AUDITS,
    compute_inputs,
    flat_metrics,
    needs_of,
    resolve_audits,
    run_audits,
)
from lightly_unlearn.audits.verdict import Verdict, assess
from lightly_unlearn.namespaces import DualNamespaceCallback
from lightly_unlearn.roles import ModuleRoles


def _file_names(dataset: Any) -> Sequence[str] | None:
    """The dataset's per-item file names: a ``names`` sequence, or lightly's
    ``LightlyDataset.get_filenames()``; ``None`` when it has neither (or they do not fit)."""
    names = getattr(dataset, "names", None)
    if names is None and callable(getattr(dataset, "get_filenames", None)):
        names = dataset.get_filenames()
    if isinstance(names, (str, bytes)) or not isinstance(names, Sequence):
        return None
    try:
        return names if len(names) == len(dataset) else None  # e.g. class names: not per item
    except TypeError:
        return None


def sample_labels(dataset: Any, keys: Any) -> list[str]:
    """Heat-map labels of the samples ``keys`` (positions in ``dataset``, an audited split).

    The data owner's file names where the dataset knows them, else ``#<id>``, the sample's
    position in the dataset given to the datamodule. A dataset knows its file names through a
    ``names`` sequence (one per item, in item order; :class:`~lightly_unlearn.image_folder.
    ImageFolder`, and so ``ImageFolderDataModule`` and ``lightly-unlearn unlearn``, has it) or
    lightly's ``LightlyDataset.get_filenames()``. Subsets (``.dataset`` and ``.indices``, such
    as the datamodule's ``forget`` split or a torch ``Subset``) are followed down to it.
    """
    positions = [int(k) for k in np.asarray(keys).reshape(-1).tolist()]
    base = dataset
    indices = getattr(base, "indices", None)
    if indices is not None and hasattr(base, "dataset"):  # ids: positions in the user's dataset
        positions = [int(indices[p]) for p in positions]
        base = base.dataset
    ids = [f"#{p}" for p in positions]
    while getattr(base, "indices", None) is not None and hasattr(base, "dataset"):
        positions = [int(base.indices[p]) for p in positions]
        base = base.dataset
    names = _file_names(base) if base is not None else None
    if names is None or any(p >= len(names) for p in positions):
        return ids
    return [str(names[p]) for p in positions]


class AuditCallback(DualNamespaceCallback):  # a Callback in both namespaces
    """Run audits at fit start ("before"), at train end ("after") and optionally every n epochs.

    Reads the splits from the trainer's ``ForgetRetainDataModule`` (``retain``, ``forget``,
    ``holdout``, ``eval_transform``, ``view_transform``, ``seed``). Features are computed once
    per run for all audits: one clean pass (probe, CMIA) and ``num_views`` seeded augmented
    passes (EMIA, alignment matrix) per sampled example, with the same samples and augmentations
    every time, so "before" and "after" are comparable.

    Outputs:
        * scalars through every logger of the trainer: ``audit/before/<metric>``,
          ``audit/after/<metric>`` and ``audit/epoch/<metric>`` (``logger.log_metrics``, as
          ``pl_module.log`` is forbidden in fit-start/-end hooks);
        * the same scalars in ``trainer.callback_metrics`` (as tensors, on every rank), so
          ``ModelCheckpoint`` / ``EarlyStopping`` can monitor e.g. ``audit/after/emia``;
        * on global rank 0, under ``<trainer.log_dir>/audits/``: ``audit.json``, ``report.md``
          and ``gap_matrix.png`` (also sent to loggers whose experiment has ``add_figure``);
          ``audit.json`` and ``report.md`` carry the ``warnings`` list and the one-line
          ``verdict`` of :func:`lightly_unlearn.audits.verdict.assess` (``collapse``,
          ``no_membership_signal``, ``overshoot``, ``holdout_drift``, ...), also kept in
          :attr:`verdict` for a ``ReceiptCallback``. The heat map's axes name the samples by
          their file names when the dataset has a ``names`` sequence (``ImageFolderDataModule``
          does), else by ids (``#<position in the dataset>``), see :func:`sample_labels`;
          ``audit.json`` lists those labels as ``image_names`` and ``holdout_names``, in the
          order of the heat map's rows and columns (``null`` without that panel);
        * a progress bar in Lightning's style while embedding, and one summary line (verdict and
          report path) when the "after" audit is written. Audit time is taken out of the
          training progress bar's clock, so the epoch's rate shows training alone.

    Feature extraction uses the datamodule's ``num_workers``; each image is decoded once and
    its clean and ``K`` augmented views are made from the decoded image.

    The "before" results are kept in the callback's ``state_dict`` (plain Python types), so a
    resumed run compares against the model as it was before unlearning started. Under
    multi-device training each rank embeds a shard, features are gathered and de-duplicated by
    sample key, and the audits run once on rank 0.

    Note: "before" is measured in ``on_fit_start``; ``UnlearnCallback(method="retrain")``
    re-initialises the model later (``on_train_start``), so "before" is the given model.

    Args:
        audits: Registered audit names (``lightly-unlearn list``) or :class:`Audit` instances.
        num_samples: At most this many samples of each split are audited (seeded sample; the
            reference protocol uses up to 10 000 members). Lower it to make audits cheaper.
        every_n_epochs: Also audit after every n-th training epoch (``None``: never).
        num_views: ``K``, augmentations per sample for alignment scores and matrices.
        embed_fn: ``"backbone"`` (flattened backbone features, the default), ``"head"``
            (projection-head outputs) or a callable images -> embeddings.
        roles: Where the backbone and head are (``ModuleRoles``; default: lightly's example
            names, ``backbone``/``projection_head`` or DINO's ``student_*``).
        batch_size: Images per forward pass.
        save_files: Write ``audit.json``, ``report.md`` and the heat map.
        classnames: Class names for the ``clip_zero_shot`` audit's prompts (CLIP only); the CLIP
            audits (``clip_mia``, ``clip_retrieval``, ``clip_zero_shot``,
            ``clip_alignment_matrix``) embed image-caption pairs of the datamodule's splits.
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
        if isinstance(audits, (str, bytes)):  # a str is a sequence of letters: 'e', 'm', ...
            raise TypeError(
                f"audits must be a list of audit names or Audit instances; got the string "
                f"{audits!r}. Write audits=({audits!r},)."
            )
        self.audits = resolve_audits(audits)
        if num_samples < 2:
            raise ValueError(f"num_samples must be at least 2; got {num_samples}.")
        if every_n_epochs is not None and every_n_epochs < 1:
            raise ValueError(
                f"every_n_epochs must be a positive integer or None; got {every_n_epochs}."
            )
        check_embed_spec(embed_fn)
        self.num_samples = int(num_samples)
        self.every_n_epochs = every_n_epochs
        self.num_views = int(num_views)
        self.embed_fn = embed_fn
        self.roles = roles
        self.batch_size = int(batch_size)
        self.save_files = save_files
        self.classnames = list(classnames) if classnames is not None else None
        self.templates = list(templates) if templates is not None else None
        self.progress = progress
        self.verbose = bool(verbose)
        #: warnings and one-line verdict of the last "after" (or epoch) audit, rank 0
        self.verdict: Verdict | None = None
        #: where the last report was written (rank 0, ``save_files=True``)
        self.report_path: Path | None = None
        self.before: dict[str, AuditResult] | None = None
        self.after: dict[str, AuditResult] | None = None
        self.history: list[dict[str, Any]] = []
        self._restored = False

    # -- checkpoint state ---------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "before": None
            if self.before is None
            else {name: r.to_state() for name, r in self.before.items()},
            "history": [dict(h) for h in self.history],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        before = state_dict.get("before")
        if before is not None:
            self.before = {name: AuditResult.from_state(s) for name, s in before.items()}
            self._restored = True
        self.history = [dict(h) for h in state_dict.get("history", [])]

    # -- hooks ----------------------------------------------------------------------------------
    def setup(self, trainer: Any, pl_module: nn.Module, stage: str) -> None:
        if stage == "fit":  # refuse a datamodule without the needed splits before anything runs
            self._datamodule(trainer)
            if self.save_files:  # the reports' folder: never an existing file (checked now)
                from lightly_unlearn.paths import check_output_path

                folder = Path(trainer.log_dir or trainer.default_root_dir) / "audits"
                check_output_path(folder, kind="dir", what="AuditCallback's report folder")

    def on_fit_start(self, trainer: Any, pl_module: nn.Module) -> None:
        if self._restored and self.before is not None:
            if getattr(trainer, "is_global_zero", True):
                self._publish(trainer, "before", flat_metrics(self.before))
            return  # resumed: the model is no longer the "before" model
        self.history = []
        self.after = None
        self.before = self._audit(trainer, pl_module, "before")

    def on_train_epoch_end(self, trainer: Any, pl_module: nn.Module) -> None:
        n = self.every_n_epochs
        if n is None or (trainer.current_epoch + 1) % n != 0:
            return
        if trainer.current_epoch + 1 >= (trainer.max_epochs or -1) > 0:
            return  # the final epoch is audited by on_train_end
        self._audit(trainer, pl_module, "epoch")

    def on_train_end(self, trainer: Any, pl_module: nn.Module) -> None:
        self.after = self._audit(trainer, pl_module, "after")
        self._restored = False

    # -- work -----------------------------------------------------------------------------------
    def _embed(self, pl_module: nn.Module) -> Callable[[Tensor], Tensor]:
        return resolve_embed_fn(self.embed_fn, pl_module, self.roles)

    def _clip_inputs(self, dm: Any, pl_module: nn.Module, device: Any) -> Any:
        """Image and caption embeddings for the CLIP audits (computed whole on every rank)."""
        from lightly_unlearn.audits.clip_features import compute_clip_inputs

        return compute_clip_inputs(
            pl_module,
            forget=dm.forget,
            retain=dm.retain,
            holdout=getattr(dm, "holdout", None),
            image_transform=dm.eval_transform,
            tokenizer=getattr(dm, "tokenizer", None),
            classnames=self.classnames,
            templates=self.templates,
            num_samples=self.num_samples,
            seed=int(getattr(dm, "seed", 0)),
            batch_size=self.batch_size,
            device=device,
        )

    def _datamodule(self, trainer: Any) -> Any:
        dm = getattr(trainer, "datamodule", None)
        missing = [
            a
            for a in ("retain", "forget", "view_transform", "eval_transform")
            if not hasattr(dm, a)
        ]
        if dm is None or missing:
            raise TypeError(
                "AuditCallback reads the forget, retain and holdout splits from a "
                "ForgetRetainDataModule: call `trainer.fit(model, datamodule="
                "ForgetRetainDataModule(dataset, forget_indices, transform, holdout=test_set))`."
            )
        if "holdout" in needs_of(self.audits) and getattr(dm, "holdout", None) is None:
            names = [a.name for a in self.audits if "holdout" in a.needs]
            raise ValueError(
                f"The audits {names} need non-member samples, but the datamodule has no holdout. "
                "Pass `holdout=` (e.g. the test split) to ForgetRetainDataModule, or choose "
                "audits=('linear_probe', 'alignment_matrix')."
            )
        return dm

    def _progress_bar(self, trainer: Any, dm: Any, when: str) -> Any:
        """A tqdm bar in Lightning's style counting embedded images (``None`` when hidden)."""
        show = self.progress
        if show is None:
            show = getattr(trainer, "progress_bar_callback", None) is not None
        if not show or not getattr(trainer, "is_global_zero", True):
            return None
        from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm, TQDMProgressBar

        needs = needs_of(self.audits)
        passes = ("clean" in needs) + ("views" in needs) * self.num_views
        splits = [dm.forget, getattr(dm, "holdout", None)]
        if {"retain", "labels"} & needs:
            splits.append(dm.retain)
        world = int(getattr(trainer, "world_size", 1) or 1)
        total = sum(-(-min(len(d), self.num_samples) // world) for d in splits if d is not None)
        return Tqdm(
            desc=f"Audit ({when})",
            total=total * max(passes, 1),
            unit="img",
            leave=False,
            dynamic_ncols=True,
            file=sys.stdout,
            smoothing=0,
            bar_format=TQDMProgressBar.BAR_FORMAT,
        )

    @staticmethod
    def _pause_training_clock(trainer: Any, seconds: float) -> None:
        """Move the training progress bar's clock forward by the audit's duration, so the
        epoch's rate and elapsed time show training alone."""
        bar_cb = getattr(trainer, "progress_bar_callback", None)
        try:
            bar = getattr(bar_cb, "train_progress_bar", None)
        except Exception:  # Lightning raises when the bar does not exist (yet)
            return
        if bar is not None and hasattr(bar, "start_t"):
            bar.start_t += seconds
            if hasattr(bar, "last_print_t"):
                bar.last_print_t += seconds

    def _publish(self, trainer: Any, when: str, metrics: dict[str, float]) -> None:
        """``audit/<when>/<metric>`` tensors in ``trainer.callback_metrics``."""
        callback_metrics = getattr(trainer, "callback_metrics", None)
        if callback_metrics is None:
            return
        for key, value in metrics.items():
            callback_metrics[f"audit/{when}/{key}"] = torch.tensor(float(value))

    def _inputs(self, trainer: Any, pl_module: nn.Module, dm: Any, when: str) -> Any:
        """Embed every split once for all audits (a progress bar while images are embedded)."""
        world = int(getattr(trainer, "world_size", 1) or 1)
        device = getattr(pl_module, "device", None)
        needs = needs_of(self.audits)
        image_needs = needs - {"clip"}
        bar = self._progress_bar(trainer, dm, when) if {"clean", "views"} & image_needs else None
        try:
            if {"clean", "views"} & image_needs:
                inputs = compute_inputs(
                    self._embed(pl_module),
                    image_needs,
                    forget=dm.forget,
                    retain=dm.retain,
                    holdout=getattr(dm, "holdout", None),
                    eval_transform=dm.eval_transform,
                    view_transform=dm.view_transform,
                    num_views=self.num_views,
                    num_samples=self.num_samples,
                    seed=int(getattr(dm, "seed", 0)),
                    batch_size=self.batch_size,
                    module=pl_module,
                    device=device,
                    rank=int(getattr(trainer, "global_rank", 0)),
                    world_size=world,
                    all_gather=(lambda t: trainer.strategy.all_gather(t.to(device))) if world > 1 else None,
                    progress=None if bar is None else bar.update,
                    num_workers=int(getattr(dm, "num_workers", 0) or 0),
                )
                if "clip" in needs:
                    inputs.cache.update(self._clip_inputs(dm, pl_module, device).cache)
            else:  # only CLIP audits: their image-caption embeddings are all they read
                inputs = self._clip_inputs(dm, pl_module, device)
        finally:
            if bar is not None:
                bar.close()
        return inputs

    def _audit(
        self, trainer: Any, pl_module: nn.Module, when: str
    ) -> dict[str, AuditResult] | None:
        dm = self._datamodule(trainer)
        start = time.perf_counter()
        world = int(getattr(trainer, "world_size", 1) or 1)
        inputs = self._inputs(trainer, pl_module, dm, when)
        # trainer.log_dir broadcasts under DDP: every rank must read it, before rank 0 goes on
        folder = Path(trainer.log_dir or trainer.default_root_dir) / "audits"
        results = metrics = None
        if getattr(trainer, "is_global_zero", True):  # audits run once, on gathered features
            results = run_audits(
                self.audits, inputs, before=None if when == "before" else self.before
            )
            metrics = flat_metrics(results)
            metrics["seconds"] = time.perf_counter() - start
        if world > 1:  # every rank gets the numbers, for callback_metrics (EarlyStopping, ...)
            metrics = trainer.strategy.broadcast(metrics, src=0)
        self._publish(trainer, when, metrics)
        if not getattr(trainer, "is_global_zero", True):
            self._pause_training_clock(trainer, time.perf_counter() - start)
            return None
        step = int(getattr(trainer, "global_step", 0))
        for logger in getattr(trainer, "loggers", []) or []:
            logger.log_metrics({f"audit/{when}/{k}": v for k, v in metrics.items()}, step=step)
        self.history.append(
            {"when": when, "epoch": int(trainer.current_epoch), "step": step, "metrics": metrics}
        )
        if when != "before":
            self.verdict = assess(self.before, results)
            self._write(trainer, results, when, folder)
            if self.verbose:
                where = f"; report: {self.report_path}" if self.report_path else ""
                print(f"Audit ({when}): {self.verdict.line}{where}", flush=True)
        self._pause_training_clock(trainer, time.perf_counter() - start)
        return results

    @staticmethod
    def _panel_labels(results: dict[str, AuditResult], dm: Any) -> dict[str, list[str] | None]:
        """``image_names`` / ``holdout_names`` of ``audit.json``: the heat maps' axis labels
        (:func:`sample_labels`), in the order of the matrices' rows and columns."""
        panels = (("image_names", "forget", "keys"), ("holdout_names", "holdout", "holdout_keys"))
        for name in ("alignment_matrix", *results):  # the image audit's panels first
            arrays = results[name].arrays if name in results else {}
            if "keys" in arrays and "matrix" in arrays:
                return {
                    field: None
                    if arrays.get(key) is None
                    else sample_labels(getattr(dm, split, None), arrays[key])
                    for field, split, key in panels
                }
        return {"image_names": None, "holdout_names": None}

    def _write(
        self, trainer: Any, results: dict[str, AuditResult], when: str, folder: Path
    ) -> None:
        verdict = self.verdict
        dm = getattr(trainer, "datamodule", None)
        figures = draw_figures(
            self.audits,
            results,
            title=f"Alignment gap matrix ({when})",
            labeler=lambda split, keys: sample_labels(getattr(dm, split, None), keys),
            verdict=verdict,
        )
        for name, figure in figures.items():
            for logger in getattr(trainer, "loggers", []) or []:
                experiment = getattr(logger, "experiment", None)
                if hasattr(experiment, "add_figure"):
                    experiment.add_figure(f"audit/{when}/{name}", figure, trainer.global_step)
        if not self.save_files:
            return
        before, after = flat_metrics(self.before or {}), flat_metrics(results)
        payload = {
            "config": {
                "audits": [a.name for a in self.audits],
                "num_samples": self.num_samples,
                "num_views": self.num_views,
                "embed_fn": self.embed_fn if isinstance(self.embed_fn, str) else repr(self.embed_fn),
            },
            "verdict": None if verdict is None else verdict.line,
            "warnings": [] if verdict is None else verdict.warnings,
            # the heat maps' axis labels (file names, else dataset ids), in the matrices' order
            **self._panel_labels(results, dm),
            "before": before,
            when: after,
            "history": self.history,
            "arrays": {
                name: {k: v for k, v in r.arrays.items() if not k.endswith("keys")}
                for name, r in results.items()
                if r.arrays
            },
        }
        notes = [
            "Efficacy numbers (emia, cmia) and accuracies are compared to Retrain's, never to 100.",
            "Linear probe: logistic regression on cached clean backbone features, not the "
            "reference's 100-epoch augmented SGD probe.",
        ]
        paths = write_report(
            folder,
            payload,
            before=before,
            after=after,
            figures=figures,
            title=f"Unlearning audit ({when})",
            notes=notes,
            verdict=verdict,
            metric_info=metric_descriptions(self.audits),
            suffix="" if when == "after" else f"_epoch{trainer.current_epoch}",
        )
        self.report_path = paths["report"]
