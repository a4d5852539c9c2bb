"""``HoldoutAlignmentStopping``: stop unlearning when forget samples align like never-seen ones.

Success is landing where Retrain lands, not past it: forget samples made *less* aligned
than never-seen samples are recognisable again. Methods that push the forget samples' alignment
down (AC with β > 0, NegGrad, gradient ascent) overshoot if they run too long, and "how long" is
seed- and data-dependent. This callback is the calibrated mode: like Lightning's
``EarlyStopping`` it checks a monitored quantity at the end of every (n-th) training epoch and
stops the run, here once the *alignment level gap*

    mean alignment score(D_forget) − mean alignment score(D_holdout)

has fallen to ``margin`` (default 0: the forget samples look never seen). Alignment scores are the
audits' (K seeded augmentations, mean pairwise cosine, eval mode), on a fixed seeded sample of each
split, so successive checks compare like with like.

**Insufficient on its own: it calibrates a signal that can be masked.** Stopping where the forget
samples *look* never seen says nothing about whether their information is gone: after methods
that push their alignment down, a few epochs of ordinary training on the retain set bring it
back (the relearning test, :func:`lightly_unlearn.relearn`). Use it with a method that removes
rather than hides, and check with the relearning test (``docs/benchmarks/relearning.md``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import nn
from typing_extensions import override

from lightly_unlearn.audits.alignment import alignment_scores
from lightly_unlearn.audits.features import (
    EmbedSpec,
    check_embed_spec,
    extract_features,
    resolve_embed_fn,
)
from lightly_unlearn.audits.runner import sample_keys
from lightly_unlearn.namespaces import DualNamespaceCallback
from lightly_unlearn.roles import EmbedFn, ModuleRoles

if TYPE_CHECKING:
    import lightning.pytorch as pl


class HoldoutAlignmentStopping(DualNamespaceCallback):  # a Callback in both namespaces
    """Stop when the forget samples' alignment reaches the holdout's level (the calibrated mode).

    Args:
        margin: Stop once ``gap <= margin``; a small positive margin stops just before parity.
        num_samples: Samples of each split measured per check (seeded, fixed across checks).
        num_views: Augmentations per sample (``K``).
        embed_fn: ``"head"`` (projection-head outputs, where a small model's membership signal
            lives), ``"backbone"`` or a callable images -> embeddings.
        roles: Where the backbone and head are (``ModuleRoles``; default: lightly's example
            names, ``backbone``/``projection_head`` or DINO's ``student_*``).
        check_every_n_epochs: Check after every n-th training epoch.
        min_epochs: Never stop before this many epochs.

    Example:
        >>> callbacks = [UnlearnCallback("ac", beta=1.0), HoldoutAlignmentStopping()]
        >>> pl.Trainer(max_epochs=30, callbacks=callbacks).fit(model, datamodule=dm)
    """

    def __init__(
        self,
        margin: float = 0.0,
        num_samples: int = 128,
        num_views: int = 4,
        embed_fn: EmbedSpec = "head",
        check_every_n_epochs: int = 1,
        min_epochs: int = 1,
        roles: ModuleRoles | None = None,
    ) -> None:
        super().__init__()
        if num_views < 2 or num_samples < 1 or check_every_n_epochs < 1:
            raise ValueError("num_views must be >= 2, num_samples and check_every_n_epochs >= 1.")
        self.margin = float(margin)
        self.num_samples = int(num_samples)
        self.num_views = int(num_views)
        self.embed_fn = check_embed_spec(embed_fn)
        self.roles = roles
        self.check_every_n_epochs = int(check_every_n_epochs)
        self.min_epochs = int(min_epochs)
        self.history: list[float] = []
        self.stopped_epoch: int | None = None

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"history": list(self.history), "stopped_epoch": self.stopped_epoch}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = [float(v) for v in state_dict.get("history", [])]
        self.stopped_epoch = state_dict.get("stopped_epoch")

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        dm = getattr(trainer, "datamodule", None)
        if stage == "fit" and (getattr(dm, "holdout", None) is None or not hasattr(dm, "forget")):
            raise ValueError(
                "HoldoutAlignmentStopping compares forget samples with never-seen ones: pass "
                "`holdout=` (e.g. the test split) to ForgetRetainDataModule."
            )

    def _embed(self, pl_module: nn.Module) -> EmbedFn:
        return resolve_embed_fn(self.embed_fn, pl_module, self.roles)

    def level_gap(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> float:
        """``mean score(forget) − mean score(holdout)`` on the fixed seeded samples."""
        dm = trainer.datamodule
        means = []
        for split, dataset in (("forget", dm.forget), ("holdout", dm.holdout)):
            keys = sample_keys(len(dataset), self.num_samples, dm.seed, split)
            feats = extract_features(
                self._embed(pl_module), dataset, keys=keys, view_transform=dm.view_transform,
                num_views=self.num_views, seed=dm.seed, split=split, module=pl_module,
                device=pl_module.device,
            )
            means.append(alignment_scores(feats.views).mean().item())
        return means[0] - means[1]

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        if epoch % self.check_every_n_epochs:
            return
        gap = self.level_gap(trainer, pl_module)
        self.history.append(gap)
        pl_module.log("calibration/alignment_level_gap", gap, batch_size=1)
        should_stop = epoch >= self.min_epochs and gap <= self.margin
        should_stop = trainer.strategy.reduce_boolean_decision(should_stop, all=False)
        if should_stop and not trainer.should_stop:
            trainer.should_stop = True
            self.stopped_epoch = trainer.current_epoch

