"""``UnlearnCallback``: turn an unchanged training script into an unlearning run.

The callback wires together its parts (``callbacks.unlearning``): the method's data stream,
the patched criterion and its metrics, forget coverage, the objective check and the non-finite
guard with its roll-back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor, nn
from typing_extensions import override

from lightly_unlearn import registry
from lightly_unlearn.adapters import check_trainable, reinitialise, require
from lightly_unlearn.callbacks.unlearning.coverage import ForgetCoverage
from lightly_unlearn.callbacks.unlearning.finite_guard import NonFiniteGuard
from lightly_unlearn.callbacks.unlearning.objective import (
    PatchedObjective,
    checked_adapter,
    extra_view_embedding,
    extra_view_roles,
)
from lightly_unlearn.callbacks.unlearning.objective_check import ObjectiveCheck, other_loss_names
from lightly_unlearn.callbacks.unlearning.rollback import StepRollback
from lightly_unlearn.callbacks.unlearning.stream import TrainingStream
from lightly_unlearn.data.validation import check_resumed_forget_set
from lightly_unlearn.errors import ModuleContractError, NonFiniteLossError
from lightly_unlearn.methods.base import UnlearningMethod
from lightly_unlearn.model_loading import load_initial_weights
from lightly_unlearn.namespaces import DualNamespaceCallback
from lightly_unlearn.roles import EmbedFn, ModuleRoles, frozen_children, resolve_roles

if TYPE_CHECKING:
    import lightning.pytorch as pl


def _plain(value: Any) -> Any:
    """Hyper-parameter values as plain Python types (checkpoints load with weights_only=True)."""
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    return repr(value)


def _check_resumed_run(
    state: dict[str, Any], method: UnlearningMethod, hyperparameters: dict[str, Any], dm: Any
) -> None:
    """A checkpoint's ``UnlearnCallback`` state belongs to this run (method, forget set, settings)."""
    if state.get("method") not in (None, method.name):
        raise ValueError(
            f"The checkpoint comes from an unlearning run with method {state['method']!r}, but "
            f"this callback runs {method.name!r}. Resume with the same method, or start a new "
            "run without ckpt_path."
        )
    if dm is not None:
        check_resumed_forget_set(
            state.get("forget_sha256"), state.get("num_forget"), dm.forget_sha256, len(dm.forget_indices)
        )
    saved = state.get("hyperparameters")
    # a checkpoint of an older version lacks newer options: those ran at their defaults, or at
    # what the method did before the option existed (``before_option``)
    ran = {**method.defaults, **method.before_option, **(saved or {})}
    if saved is not None and ran != hyperparameters:
        raise ValueError(
            f"Refusing to resume: the checkpoint's hyper-parameters {state['hyperparameters']} "
            f"differ from this callback's {hyperparameters}."
        )


def _warn_if_nothing_to_sync(module: nn.Module, roles: ModuleRoles) -> None:
    """``sync_momentum=True`` with no pair found, but frozen children that may be EMA copies."""
    frozen = frozen_children(module) if not roles.momentum_pairs else []
    if frozen:
        rank_zero_warn(
            f"sync_momentum=True, but no momentum / teacher pair was found in "
            f"{type(module).__name__}, which has frozen sub-module(s) {', '.join(frozen)}: if "
            "they are EMA copies of trained weights, they keep what they learnt from the forget "
            "set. Name the pairs with "
            "`UnlearnCallback(roles=ModuleRoles(momentum_pairs=[(online, copy), ...]))`."
        )


def _log_hyperparams(trainer: pl.Trainer, method: str, num_forget: int, hp: dict[str, Any]) -> None:
    """The run's method, forget-set size and hyper-parameters, to every logger (``unlearn/``)."""
    params = {"unlearn/method": method, "unlearn/num_forget": num_forget}
    params.update({f"unlearn/{k}": v for k, v in hp.items()})
    for logger in trainer.loggers:
        logger.log_hyperparams(params)


class UnlearnCallback(DualNamespaceCallback):  # a Callback in both namespaces
    """Unlearn the forget set of a ``ForgetRetainDataModule`` while the user's module trains.

    The user's ``training_step`` runs unchanged. The callback asks the datamodule for the
    method's data stream (retain only, forget only, or mixed) and, for the duration of ``fit``
    and on the instance only, replaces the ``forward`` of the module's criterion by the method's
    objective on per-row losses of the full batch (the criterion's loss adapter: ``NTXentLoss``,
    ``DCLLoss``, ``NegativeCosineSimilarity``, open_clip's ``ClipLoss``, ``DINOLoss`` and plugins,
    see ``lightly-unlearn list loss_adapter``). Module structure and checkpoint keys stay the
    user's, so the unlearned checkpoint loads with the user's own ``load_from_checkpoint``.
    Before each optimizer step it checks that the step's loss depends on that objective (else it
    stops, no weight changed) and that nothing NaN/inf reaches the weights.

    Works with ``pytorch_lightning.Trainer`` (lightly's modules) and ``lightning.pytorch.Trainer``.

    Args:
        method: A method name from ``lightly-unlearn list`` (``"ac"``, ``"finetune"``, ...; aliases
            ``rt``, ``ft``, ``ga``, ``ng``, ``l1``) or an ``UnlearningMethod`` instance.
        embed_fn: Images -> embeddings for AC's extra view. Default: the module's
            ``forward_momentum`` (no gradient, as in the MoCo reference) if it has one, else its
            ``forward``; AC's ``extra_encoder`` ("auto": ``forward``, with gradient, for
            contrastive losses such as MoCo's) may choose ``forward``.
            With a CLIP criterion (open_clip ``ClipLoss``) the extra view is the forget pairs' own
            caption tokens and the default is ``encode_text(tokens, normalize=True)``.
        roles: Which sub-modules are the backbone, head, momentum / teacher pairs and memory
            banks, and how a view is embedded (see ``ModuleRoles``). Default: lightly's example
            conventions (``<name>_momentum`` for MoCo / BYOL, ``student_*`` / ``teacher_*``
            for DINO), reported in the fit-start line.
        sync_momentum: Copy online -> momentum / student -> teacher weights when training ends
            (MoCo, BYOL, DINO), before the last epoch's checkpoint is written: the copies would
            otherwise keep the forget set's influence.
        reset_memory_bank: Re-initialise memory banks (MoCo's, live in the process, may hold keys
            of forget samples) when unlearning starts and ends.
        keep_finite_weights: Never leave NaN/inf in the module: a step whose objective,
            gradients, buffers (BatchNorm statistics) or optimizer settings are NaN/inf is
            refused before the update and raises ``NonFiniteLossError``, with what its forward
            wrote put back, so the module keeps the state of the last finite step. It costs
            about one read of the gradients per step (what it copies, and when:
            ``callbacks.unlearning.finite_guard``). With ``False`` only a NaN/inf objective
            stops the run (its forward's BatchNorm statistics are still put back).
        init_checkpoint: Start from the weights of this checkpoint (a Lightning checkpoint or a
            state dict, read with ``weights_only=True`` in ``setup``, before anything trains),
            without ``ckpt_path``'s restore of the pretraining loop (epochs, optimizer). For
            configuration files and LightningCLI; a resumed run's ``ckpt_path`` still wins.
        **hyperparameters: The method's hyper-parameters (``alpha=1.0, beta=0.5`` for AC, ...).

    Example:
        >>> trainer = pl.Trainer(max_epochs=10, callbacks=[UnlearnCallback(method="ac", alpha=1.0)])
        >>> trainer.fit(model, datamodule=ForgetRetainDataModule(dataset, forget_ids, transform))
    """

    def __init__(
        self,
        method: str | UnlearningMethod = "ac",
        *,
        embed_fn: EmbedFn | None = None,
        roles: ModuleRoles | None = None,
        sync_momentum: bool = True,
        reset_memory_bank: bool = True,
        keep_finite_weights: bool = True,
        init_checkpoint: str | None = None,
        **hyperparameters: Any,
    ) -> None:
        super().__init__()
        if isinstance(method, UnlearningMethod) and hyperparameters:
            raise TypeError("Pass hyper-parameters to the method instance, not to the callback.")
        if not isinstance(method, UnlearningMethod):
            method = registry.load("method", method)(**hyperparameters)
        self.method = method
        self.embed_fn = embed_fn
        if roles is not None and not isinstance(roles, ModuleRoles):
            raise TypeError(f"roles must be a ModuleRoles; got {type(roles).__name__}.")
        self.roles = roles
        self.sync_momentum, self.reset_memory_bank = sync_momentum, reset_memory_bank
        self.keep_finite_weights, self.init_checkpoint = keep_finite_weights, init_checkpoint
        self._forget_summary: tuple[str | None, int | None] = (None, None)
        self._reset_fit_state()

    def _reset_fit_state(self) -> None:
        """Everything that lives for one ``fit``: created in ``setup``, dropped in ``teardown``,
        so a callback fitted twice unlearns twice."""
        self._stream = TrainingStream(self.method)
        self._roles = ModuleRoles()  # resolved on the module in setup
        self._objective: PatchedObjective | None = None
        self._coverage = ForgetCoverage()
        self._check = ObjectiveCheck()
        self._guard = NonFiniteGuard(self.keep_finite_weights)
        self._rollback = StepRollback()
        self._stepped = False  # an optimizer step was let through since the last batch end
        self._finished = False
        self._resumed = False

    # -- description, logging, checkpoint state ----------------------------------------------
    @property
    def hyperparameters(self) -> dict[str, Any]:
        """The method's hyper-parameters as plain values (recorded in checkpoints and receipts)."""
        return {k: _plain(v) for k, v in self.method.hparams.items()}

    @override
    def state_dict(self) -> dict[str, Any]:
        # the forget set of the last fit (kept after teardown for `trainer.save_checkpoint`)
        sha, num = self._forget_summary
        return {"method": self.method.name, "hyperparameters": self.hyperparameters,
                "forget_sha256": sha, "num_forget": num}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._resumed = True
        _check_resumed_run(state_dict, self.method, self.hyperparameters, self._stream.datamodule)

    def describe(self, trainer: pl.Trainer | None = None) -> str:
        """One line: method, hyper-parameters, forget/retain counts, stream and batches."""
        hp = ", ".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}"
                       for k, v in self.hyperparameters.items()) or "no hyper-parameters"
        return self._stream.describe(trainer, hp, self._roles.describe())

    # -- set-up: validate everything before any training -------------------------------------
    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        if self.init_checkpoint is not None:  # weights only; the loop starts fresh
            load_initial_weights(pl_module, self.init_checkpoint)
        self._reset_fit_state()
        dm = self._stream.check(trainer)
        self._roles = resolve_roles(pl_module, self.roles)  # misspelt role names fail here
        criterion = self._roles.criterion_module(pl_module)
        adapter = checked_adapter(pl_module, criterion, self._roles)
        self._roles = extra_view_roles(self.method, adapter, self._roles, self.roles)
        if self.method.extra_view and self.embed_fn is None and adapter.image_text:
            require(pl_module, "encode_text")  # CLIP: the extra view is the own caption
        if self.sync_momentum:
            _warn_if_nothing_to_sync(pl_module, self._roles)
        check_trainable(pl_module)  # no meta tensors, something to train: refused before any step
        self._stream.configure()
        self._forget_summary = (dm.forget_sha256, len(dm.forget_indices))
        self._objective = PatchedObjective(
            self.method, pl_module, criterion, adapter,
            extra_view_embedding(pl_module, adapter, self._roles, self.embed_fn),
            dm.forget_fraction, on_output=self._on_objective,
        )
        self._objective.install()

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.reset_memory_bank and not self.method.reinitialise:
            self._roles.reset_memory_banks(pl_module)
        dm = self._stream.datamodule
        self._coverage.start(dm.forget_indices, pl_module.device)
        total = trainer.estimated_stepping_batches
        self._objective.total_steps = max(int(total), 1) if total != float("inf") else 1
        _log_hyperparams(trainer, self.method.name, len(dm.forget_indices), self.hyperparameters)
        rank_zero_info(self.describe(trainer))

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # the state a step refused before the first update falls back to: the given one (whole,
        # when re-initialisation or the method's own preparation changes trainable weights first)
        changes_weights = self.method.reinitialise or self.method.prepare_changes_weights
        self._rollback.start(pl_module, whole_state=changes_weights and not self._resumed)
        # Retrain re-initialises after every on_fit_start (AuditCallback's "before" audit sees the
        # given model) and after a checkpoint restore; a resumed run keeps its restored weights
        if self.method.reinitialise and not self._resumed:
            reinitialise(pl_module, self._roles)
        if not self._resumed:  # e.g. partial re-initialisation, weight perturbation
            self.method.prepare(pl_module, self._roles)
        self._guard.start(pl_module, list(trainer.optimizers))

    # -- per step -------------------------------------------------------------------------------
    @override
    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        keys, extra_views = self._stream.split(batch)
        self._rollback.begin_step(pl_module)
        self._objective.begin_step(self._coverage.mask(keys), extra_views)

    def _on_objective(self, loss: Tensor) -> None:
        """Each output of the patched criterion: finite, and tracked for the objective check."""
        self._guard.check_objective(loss, self._objective.module.trainer.global_step, self.method.name)
        self._check.track(loss)

    @override
    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any
    ) -> None:
        # before the update: a refused step changes no weight (on_exception puts back the rest)
        self._check.verify(
            pl_module, self.method.name, self._roles.criterion or "criterion",
            other_losses=lambda: other_loss_names(pl_module, self._objective.criterion),
        )
        plugin = getattr(trainer.strategy, "precision_plugin", None)
        self._guard.before_step(optimizer, trainer.global_step, getattr(plugin, "scaler", None) is not None)
        self._stepped = True

    @override
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any, **kwargs: Any
    ) -> None:
        if self._stepped:
            self._stepped = False
            self._guard.after_step(trainer.global_step)
            self._rollback.applied()
        self._objective.log_step(pl_module)

    # -- every forget sample, every epoch ---------------------------------------------------------
    @override
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._coverage.start_epoch()

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.method.needs_forget:
            self._coverage.check(trainer, pl_module, self.method.name)
        # Before ModelCheckpoint (Lightning runs checkpoint callbacks last), so the last epoch's
        # checkpoint already holds synced momentum weights.
        if trainer.max_epochs is not None and 0 < trainer.max_epochs <= trainer.current_epoch + 1:
            self._finish(pl_module)

    # -- the end ------------------------------------------------------------------------------------
    def _finish(self, pl_module: nn.Module) -> None:
        if not self._finished:
            if self.sync_momentum:  # teachers / momentum copies end equal to the unlearned weights
                self._roles.sync_pairs(pl_module)
            if self.reset_memory_bank:  # the live bank holds keys of forget / partner views
                self._roles.reset_memory_banks(pl_module)
        self._finished = True

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._finish(pl_module)

    @override
    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if isinstance(exception, (NonFiniteLossError, ModuleContractError)):
            self._rollback.restore(pl_module)  # a refused step: what its forward wrote goes back
        # Lightning does not call teardown on errors: give the user their criterion back
        self.teardown(trainer, pl_module, "fit")

    @override
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        if self._objective is not None:
            self._objective.restore()
        self._stream.release()
        self._reset_fit_state()
