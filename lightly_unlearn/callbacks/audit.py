"""``AuditCallback``: audit the model before and after an unlearning run (SPEC §4)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from lightly_unlearn.adapters import backbone_embed_fn, head_embed_fn
from lightly_unlearn.audits.base import Audit, AuditResult
from lightly_unlearn.audits.report import (
    atomic_write,
    gap_figure,
    markdown_report,
    save_figure,
    write_json,
)
from lightly_unlearn.audits.runner import (
    DEFAULT_AUDITS,
    compute_inputs,
    flat_metrics,
    needs_of,
    resolve_audits,
    run_audits,
)
from lightly_unlearn.namespaces import DualNamespaceCallback

EmbedSpec = str | Callable[[Tensor], Tensor]


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
        * on global rank 0, under ``<trainer.log_dir>/audits/``: ``audit.json``, ``report.md``
          and ``gap_matrix.png`` (also sent to loggers whose experiment has ``add_figure``).

    The "before" results are kept in the callback's ``state_dict`` (plain Python types), so a
    resumed run compares against the model as it was before unlearning started. Under
    multi-device training each rank embeds a shard, features are gathered and de-duplicated by
    sample key, and the audits run once on rank 0.

    Note: "before" is measured in ``on_fit_start``; ``UnlearnCallback(method="retrain")``
    re-initialises the model later (``on_train_start``), so "before" is the given model.

    Args:
        audits: Registered audit names (``lightly-unlearn list``) or :class:`Audit` instances.
        num_samples: At most this many samples of each split are audited (seeded sample; SPEC
            §4 uses up to 10 000 members). Lower it to make audits cheaper.
        every_n_epochs: Also audit after every n-th training epoch (``None``: never).
        num_views: ``K``, augmentations per sample for alignment scores and matrices.
        embed_fn: ``"backbone"`` (flattened backbone features, SPEC default), ``"head"``
            (projection-head outputs) or a callable images -> embeddings.
        batch_size: Images per forward pass.
        save_files: Write ``audit.json``, ``report.md`` and the heat map.
        classnames, templates: Zero-shot prompts for the ``clip_zero_shot`` audit (CLIP only);
            the CLIP audits (``clip_mia``, ``clip_retrieval``, ``clip_zero_shot``,
            ``clip_alignment_matrix``) embed image-caption pairs of the datamodule's splits.
    """

    def __init__(
        self,
        audits: Sequence[str | Audit] = DEFAULT_AUDITS,
        num_samples: int = 10_000,
        every_n_epochs: int | None = None,
        *,
        num_views: int = 10,
        embed_fn: EmbedSpec = "backbone",
        batch_size: int = 256,
        save_files: bool = True,
        classnames: Sequence[str] | None = None,
        templates: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        self.audits = resolve_audits(audits)
        if num_samples < 2:
            raise ValueError(f"num_samples must be at least 2; got {num_samples}.")
        if every_n_epochs is not None and every_n_epochs < 1:
            raise ValueError(
                f"every_n_epochs must be a positive integer or None; got {every_n_epochs}."
            )
        if not (callable(embed_fn) or embed_fn in ("backbone", "head")):
            raise ValueError(
                f"embed_fn must be 'backbone', 'head' or a callable; got {embed_fn!r}."
            )
        self.num_samples = int(num_samples)
        self.every_n_epochs = every_n_epochs
        self.num_views = int(num_views)
        self.embed_fn = embed_fn
        self.batch_size = int(batch_size)
        self.save_files = save_files
        self.classnames = list(classnames) if classnames is not None else None
        self.templates = list(templates) if templates is not None else None
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

    def on_fit_start(self, trainer: Any, pl_module: nn.Module) -> None:
        if self._restored and self.before is not None:
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
        if self.embed_fn == "backbone":
            return backbone_embed_fn(pl_module)
        if self.embed_fn == "head":
            return head_embed_fn(pl_module)
        return self.embed_fn  # type: ignore[return-value]

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

    def _audit(
        self, trainer: Any, pl_module: nn.Module, when: str
    ) -> dict[str, AuditResult] | None:
        dm = self._datamodule(trainer)
        start = time.perf_counter()
        world = int(getattr(trainer, "world_size", 1) or 1)
        device = getattr(pl_module, "device", None)
        needs = needs_of(self.audits)
        image_needs = needs - {"clip"}
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
            )
            if "clip" in needs:
                inputs.cache.update(self._clip_inputs(dm, pl_module, device).cache)
        else:  # only CLIP audits: their image-caption embeddings are all they read
            inputs = self._clip_inputs(dm, pl_module, device)
        # trainer.log_dir broadcasts under DDP: every rank must read it, before rank 0 goes on
        folder = Path(trainer.log_dir or trainer.default_root_dir) / "audits"
        if not getattr(trainer, "is_global_zero", True):
            return None  # the audits are run once, on the gathered features, by rank 0
        results = run_audits(self.audits, inputs, before=None if when == "before" else self.before)
        metrics = flat_metrics(results)
        metrics["seconds"] = time.perf_counter() - start
        step = int(getattr(trainer, "global_step", 0))
        for logger in getattr(trainer, "loggers", []) or []:
            logger.log_metrics({f"audit/{when}/{k}": v for k, v in metrics.items()}, step=step)
        self.history.append(
            {"when": when, "epoch": int(trainer.current_epoch), "step": step, "metrics": metrics}
        )
        if when != "before":
            self._write(trainer, results, when, folder)
        return results

    def _write(
        self, trainer: Any, results: dict[str, AuditResult], when: str, folder: Path
    ) -> None:
        name = next((n for n in ("alignment_matrix", "clip_alignment_matrix") if n in results), None)
        gap = None if name is None else results[name].arrays.get("gap_matrix")
        figure = None
        if gap is not None:
            fs = results[name].metrics.get("forgetting_score", results[name].metrics.get("clip_forgetting_score"))
            figure = gap_figure(gap, f"Alignment gap matrix (forget samples, {when})", fs)
            for logger in getattr(trainer, "loggers", []) or []:
                experiment = getattr(logger, "experiment", None)
                if hasattr(experiment, "add_figure"):
                    experiment.add_figure(f"audit/{when}/gap_matrix", figure, trainer.global_step)
        if not self.save_files:
            return
        suffix = "" if when == "after" else f"_epoch{trainer.current_epoch}"
        if figure is not None:
            save_figure(figure, folder / f"gap_matrix{suffix}.png")
        before = flat_metrics(self.before or {})
        after = flat_metrics(results)
        payload = {
            "config": {
                "audits": [a.name for a in self.audits],
                "num_samples": self.num_samples,
                "num_views": self.num_views,
                "embed_fn": self.embed_fn
                if isinstance(self.embed_fn, str)
                else repr(self.embed_fn),
            },
            "before": before,
            when: after,
            "history": self.history,
            "arrays": {
                name: {k: v for k, v in r.arrays.items() if k != "keys"}
                for name, r in results.items()
                if r.arrays
            },
        }
        write_json(folder / f"audit{suffix}.json", payload)
        notes = [
            "Efficacy numbers (emia, cmia) and accuracies are compared to Retrain's, never to 100.",
            "Linear probe: logistic regression on cached clean backbone features, not the "
            "reference's 100-epoch augmented SGD probe.",
        ]
        report = markdown_report(before, after, title=f"Unlearning audit ({when})", notes=notes)
        if figure is not None:
            report += f"\n![alignment gap matrix](gap_matrix{suffix}.png)\n"
        atomic_write(folder / f"report{suffix}.md", report)
