"""The relearning test: does ordinary training on the retain set bring the forget set back?

Approximate unlearning can *hide* membership rather than remove it: a few epochs of ordinary
training on data the model owner may keep (the retain set; the forget samples are never shown)
make the forget samples recognisable again, while a model retrained without them stays at chance
(relearning attacks, arXiv:2505.22310). :func:`relearn` runs that test on a deep copy of the
unlearned model, with the model's own ``training_step`` and ``configure_optimizers``, and
measures the forget-vs-holdout AUC (and TPR at low FPR) of the copy before and after, on the
same samples and the same seeded augmentations.

"Significantly" means two things at once, both from one paired bootstrap
(:func:`~lightly_unlearn.audits.membership.compare_aucs`): the AUC rose beyond the
measurement's own 95 % interval, *and* the relearned AUC's interval lies above 0.5 (the forget
set is recognisable as members, not merely back from overshoot). The verdict then carries the
warning ``relearned``. Without a Retrain reference this cannot say how much a model that never
saw the forget set would move under the same test; ``benchmarks/unlearning.py`` measures that.
"""

from __future__ import annotations

import copy
import random
import tempfile
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from typing_extensions import override

from lightly_unlearn.audits.alignment import alignment_scores
from lightly_unlearn.audits.base import AuditResult
from lightly_unlearn.audits.features import EMBED_NAMES, preserved_rng, resolve_embed_fn
from lightly_unlearn.audits.membership import AucComparison, compare_aucs, forget_holdout_metrics
from lightly_unlearn.audits.runner import compute_inputs
from lightly_unlearn.audits.verdict import relearn_warnings
from lightly_unlearn.namespaces import DualNamespaceCallback, trainer_class_for

if TYPE_CHECKING:
    import lightning.pytorch as pl

#: Forget-vs-holdout metrics the relearning test reports, before and after (``relearn_`` prefix).
_REPORTED = ("forget_holdout_auc", "forget_holdout_tpr_at_1pct_fpr", "forget_holdout_tpr_at_0_1pct_fpr")


@dataclass
class RelearnResult:
    """What :func:`relearn` measured. :attr:`metrics` is the flat form reports and logs carry."""

    epochs: int
    steps: int
    seconds: float
    lr: float | None
    seed: int
    #: :func:`~lightly_unlearn.audits.membership.forget_holdout_metrics` of the unlearned model
    before: dict[str, float]
    #: the same for the relearned copy, on the same samples and augmentations
    after: dict[str, float]
    comparison: AucComparison
    #: per-sample alignment scores: ``forget_before``, ``holdout_before``, ``forget_after``, ...
    scores: dict[str, np.ndarray] = field(repr=False, default_factory=dict)
    #: ``[{"code": "relearned", "message": ...}]`` when membership came back, else empty
    warnings: list[dict[str, str]] = field(default_factory=list)

    @property
    def relearned(self) -> bool:
        return any(w["code"] == "relearned" for w in self.warnings)

    @property
    def metrics(self) -> dict[str, float]:
        """``relearn_forget_holdout_auc`` (and TPR at 1 % / 0.1 % FPR, when the holdout resolves
        them) after relearning, ``relearn_before_*`` the same before, the AUC change with its
        interval (``relearn_forget_holdout_auc_change``, ``..._change_ci_low/high``), the
        relearned AUC's interval, the sample counts and the attack's epochs, steps and lr."""
        out: dict[str, float] = {}
        for key in _REPORTED:
            if key in self.after:
                out[f"relearn_{key}"] = self.after[key]
            if key in self.before:
                out[f"relearn_before_{key}"] = self.before[key]
        c = self.comparison
        out.update({
            "relearn_forget_holdout_auc_ci_low": c.auc_a_ci[0],
            "relearn_forget_holdout_auc_ci_high": c.auc_a_ci[1],
            "relearn_forget_holdout_auc_change": c.difference,
            "relearn_forget_holdout_auc_change_ci_low": c.difference_ci[0],
            "relearn_forget_holdout_auc_change_ci_high": c.difference_ci[1],
            "relearn_forget_samples": self.after["forget_samples"],
            "relearn_holdout_samples": self.after["holdout_samples"],
            "relearn_epochs": float(self.epochs),
            "relearn_steps": float(self.steps),
        })  # fmt: skip
        if self.lr is not None:
            out["relearn_lr"] = float(self.lr)
        return out

    def to_audit_result(self) -> AuditResult:
        """As an :class:`~lightly_unlearn.audits.base.AuditResult` (metrics and scores), to add to
        an audit's results (``AuditCallback.add_result("relearn", ...)``); the verdict derives
        the ``relearned`` warning from the metrics."""
        return AuditResult(metrics=self.metrics, arrays=dict(self.scores))


class _LearningRate(DualNamespaceCallback):
    """Set every param group's lr (and a scheduler's base lr) once the optimizers exist."""

    def __init__(self, lr: float) -> None:
        self.lr = float(lr)

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for optimizer in trainer.optimizers:
            for group in optimizer.param_groups:
                group["lr"] = self.lr
                if "initial_lr" in group:
                    group["initial_lr"] = self.lr
        for config in trainer.lr_scheduler_configs:
            if hasattr(config.scheduler, "base_lrs"):
                config.scheduler.base_lrs = [self.lr] * len(config.scheduler.base_lrs)


def _check(module: nn.Module, datamodule: Any, epochs: int, embed: Any) -> None:
    missing = [a for a in ("configure", "forget", "retain", "holdout", "view_transform")
               if not hasattr(datamodule, a)]  # fmt: skip
    if missing:
        raise TypeError(
            "relearn reads the retain, forget and holdout splits of a ForgetRetainDataModule; "
            f"{type(datamodule).__name__} lacks {', '.join(missing)}."
        )
    if datamodule.holdout is None:
        raise ValueError(
            "relearn re-audits the forget set against never-seen samples: pass `holdout=` (e.g. "
            "the test split) to ForgetRetainDataModule (CLI: --holdout)."
        )
    if int(epochs) < 1:
        raise ValueError(f"relearn: epochs must be at least 1; got {epochs}.")
    if embed not in EMBED_NAMES:
        raise ValueError(f"relearn: embed must be one of {EMBED_NAMES}; got {embed!r}.")
    trainer_class_for(module)  # a LightningModule of either namespace, or a clear error


def _scores(model: nn.Module, dm: Any, embed: str, roles: Any, audit: dict[str, Any]) -> dict[str, np.ndarray]:
    """Alignment scores of the forget and holdout samples (seeded sample, seeded views)."""
    device = next(iter(model.parameters()), torch.empty(0)).device
    inputs = compute_inputs(
        resolve_embed_fn(embed, model, roles), frozenset({"views", "holdout"}),
        forget=dm.forget, holdout=dm.holdout, view_transform=dm.view_transform,
        module=model, device=device, **audit,
    )  # fmt: skip
    return {"forget": alignment_scores(inputs.forget.views).numpy(),
            "holdout": alignment_scores(inputs.holdout.views).numpy()}  # fmt: skip


def _train(model: nn.Module, dm: Any, epochs: int, lr: float | None, accelerator: str, seed: int) -> tuple[int, float]:
    """K epochs of the model's own step and optimizer on the retain set; (steps, seconds)."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)
    with tempfile.TemporaryDirectory(prefix="lightly_unlearn_relearn_") as scratch:
        trainer = trainer_class_for(model)(
            max_epochs=int(epochs), accelerator=accelerator, devices=1, logger=False,
            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
            limit_val_batches=0, num_sanity_val_steps=0, default_root_dir=scratch,
            callbacks=[] if lr is None else [_LearningRate(lr)],
        )  # fmt: skip
        start = time.perf_counter()
        trainer.fit(model, datamodule=dm)
        return int(trainer.global_step), time.perf_counter() - start


def relearn(
    module: nn.Module,
    datamodule: Any,
    epochs: int,
    *,
    lr: float | None = None,
    batch_size: int | None = None,
    seed: int | None = None,
    accelerator: str = "cpu",
    embed: str = "backbone",
    roles: Any = None,
    num_views: int = 10,
    num_samples: int = 10_000,
    confidence: float = 0.95,
    n_resamples: int = 2000,
) -> RelearnResult:
    """Train a copy of an unlearned model on the retain set only and re-audit the forget set.

    Call it after unlearning (after ``trainer.fit`` returned). The user's ``module`` and
    ``datamodule`` are not changed: the model is deep-copied, and the datamodule shallow-copied
    and set to its retain-only stream. The copy trains ``epochs`` epochs with its own
    ``training_step`` and ``configure_optimizers`` in a fresh ``Trainer`` of the module's
    Lightning namespace (one device of ``accelerator``, no logger, no checkpoint, nothing
    written; seeded), and is then discarded. After a multi-device fit, call it on one rank; the
    datamodule's loader follows the live process group, so the copy then trains on that rank's
    share of the retain set each epoch.

    Args:
        module: The unlearned LightningModule (``pytorch_lightning`` or ``lightning.pytorch``).
        datamodule: Its ``ForgetRetainDataModule``, with a ``holdout``.
        epochs: ``K``, retain-only training epochs.
        lr: Sets every param group's learning rate after ``configure_optimizers`` (e.g. the
            pretraining lr as a stronger attack than the unlearning lr); ``None``: the module's.
        batch_size: Retain batch size (default: the datamodule's).
        seed: Seeds the copy's training and shuffling (default: the datamodule's ``seed``).
        accelerator: Lightning accelerator of the attack's one device.
        embed: ``"backbone"`` or ``"head"``: what the alignment scores embed (as the audits).
        roles: ``ModuleRoles`` locating backbone and head (default: lightly's names).
        num_views: ``K`` views per sample; the samples and views are those of the audits with
            the datamodule's ``seed``.
        num_samples: The seeded sample size per split.
        confidence: Confidence of the paired bootstrap of the AUC change
            (:func:`~lightly_unlearn.audits.membership.compare_aucs`).
        n_resamples: Resamplings of that bootstrap.

    Returns:
        A :class:`RelearnResult`; ``result.metrics["relearn_forget_holdout_auc"]`` is the
        forget-vs-holdout AUC after relearning, ``result.relearned`` whether membership came back
        beyond the interval.

    Example:
        >>> trainer.fit(model, datamodule=dm)           # unlearning, with UnlearnCallback
        >>> result = lightly_unlearn.relearn(model, dm, epochs=5)
        >>> result.metrics["relearn_forget_holdout_auc"], result.relearned
    """
    _check(module, datamodule, epochs, embed)
    seed = int(datamodule.seed if seed is None else seed)
    audit = dict(num_views=int(num_views), num_samples=int(num_samples), seed=int(datamodule.seed))
    model = copy.deepcopy(module)
    dm = copy.copy(datamodule)
    dm.seed = seed
    if batch_size is not None:
        dm.batch_size = int(batch_size)
    dm.configure("retain")
    with preserved_rng():
        before = _scores(model, dm, embed, roles, audit)
        steps, seconds = _train(model, dm, epochs, lr, accelerator, seed)
        after = _scores(model, dm, embed, roles, audit)
    comparison = compare_aucs(after["forget"], after["holdout"], before["forget"], before["holdout"],
                              confidence=confidence, n_resamples=n_resamples, seed=seed)  # fmt: skip
    result = RelearnResult(
        epochs=int(epochs), steps=steps, seconds=seconds, lr=lr, seed=seed,
        before=forget_holdout_metrics(before["forget"], before["holdout"]),
        after=forget_holdout_metrics(after["forget"], after["holdout"]),
        comparison=comparison,
        scores={f"{split}_{when}": s[split] for when, s in (("before", before), ("after", after))
                for split in ("forget", "holdout")},
    )  # fmt: skip
    result.warnings = relearn_warnings(result.metrics)
    return result
