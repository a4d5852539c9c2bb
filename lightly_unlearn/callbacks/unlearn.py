"""``UnlearnCallback``: turn an unchanged training script into an unlearning run."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor, nn

from lightly_unlearn import registry
from lightly_unlearn.adapters import (
    ModuleContractError,
    check_trainable,
    reinitialise,
    require,
)
from lightly_unlearn.data.validation import check_resumed_forget_set
from lightly_unlearn.errors import ForgetCoverageError, NonFiniteLossError  # noqa: F401  (re-exported)
from lightly_unlearn.losses.adapter import RowTermsAdapter, describe_adapters, find_adapter
from lightly_unlearn.losses.rows import RowTerms, global_sum, row_mask
from lightly_unlearn.methods.base import StepContext, UnlearningMethod
from lightly_unlearn.model_loading import load_initial_weights
from lightly_unlearn.namespaces import DualNamespaceCallback
from lightly_unlearn.roles import ModuleRoles, frozen_children, resolve_roles


@contextlib.contextmanager
def frozen_batch_norm_stats(module: nn.Module) -> Iterator[None]:
    """BatchNorm layers in training mode still normalise with batch statistics, but their running
    statistics (and counters) are left as they were: an extra forward pass leaves no trace."""
    saved = []
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training and m.track_running_stats:
            tracked = None if m.num_batches_tracked is None else m.num_batches_tracked.clone()
            saved.append((m, m.momentum, tracked))
            m.momentum = 0.0  # running = (1 - 0) * running + 0 * batch
    try:
        yield
    finally:
        for m, momentum, tracked in saved:
            m.momentum = momentum
            if tracked is not None:
                m.num_batches_tracked.copy_(tracked)


class _BatchContext:
    """What ``on_train_batch_start`` learns about the batch, for the patched criterion.

    ``extra_views`` are the extra views of the *whole* batch (AC's positive calibration): they
    are embedded in one pass with the same batch composition as the anchors.
    """

    def __init__(self, forget: Tensor, extra_views: Tensor | None) -> None:
        self.forget = forget
        self.extra_views = extra_views
        self.calls = 0
        # a step may call the criterion several times (BYOL, SimSiam): the extra view is
        # embedded once and used by every call; each call's loss and terms are logged together
        self.extra: Tensor | None = None
        self.extra_done = False
        self.logged: list[tuple[Tensor, RowTerms]] = []


def _plain(value: Any) -> Any:
    """Hyper-parameter values as plain Python types (checkpoints load with weights_only=True)."""
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    return repr(value)


class UnlearnCallback(DualNamespaceCallback):  # a Callback in both namespaces
    """Unlearn the forget set of a ``ForgetRetainDataModule`` while the user's module trains.

    The user's ``training_step`` runs unchanged. The callback asks the datamodule for the
    method's data stream (retain only, forget only, or mixed), and replaces — for the duration of
    ``fit`` and on the instance only — the ``forward`` of the module's ``criterion`` by the
    method's objective on per-row losses of the full batch, with forget rows masked as
    ``concat([m, m])``. The rows come from the criterion's loss adapter (``NTXentLoss``,
    ``DCLLoss``/``DCLWLoss``, ``NegativeCosineSimilarity``, open_clip's ``ClipLoss``, ``DINOLoss``
    and plugins: ``lightly-unlearn list loss``); a step may call the criterion several times
    (BYOL, SimSiam), each call returning the objective over its own rows. Module structure and
    checkpoint keys stay the user's, so
    the unlearned checkpoint loads with the user's own ``load_from_checkpoint``.

    MoCo: the memory bank (non-persistent, but live in the process) may hold keys of forget
    samples, so it is re-initialised when unlearning starts; the momentum encoder still carries
    the forget set's influence at the end, so with ``sync_momentum=True`` it is overwritten by the
    unlearned online weights when training ends (before the last epoch's checkpoint is written).

    Works with ``pytorch_lightning.Trainer`` (lightly's modules) and ``lightning.pytorch.Trainer``.

    Args:
        method: A method name from ``lightly-unlearn list`` (``"ac"``, ``"finetune"``, ...; aliases
            ``rt``, ``ft``, ``ga``, ``ng``, ``l1``) or an ``UnlearningMethod`` instance.
        embed_fn: Images -> embeddings for AC's extra view. Default: the module's
            ``forward_momentum`` (no gradient, as in the MoCo reference) if it has one, else its
            ``forward``. With a CLIP criterion (open_clip ``ClipLoss``) the extra view is the
            forget pairs' own caption tokens and the default is ``encode_text(tokens,
            normalize=True)``.
        roles: Which sub-modules are the backbone, head, momentum / teacher pairs and memory
            banks, and how a view is embedded (see ``ModuleRoles``). Default: lightly's example
            conventions (``<name>_momentum`` for MoCo / BYOL, ``student_*`` / ``teacher_*``
            for DINO), reported in the fit-start line.
        sync_momentum: Copy online -> momentum / student -> teacher weights when training ends
            (MoCo, BYOL, DINO).
        reset_memory_bank: Re-initialise memory banks when unlearning starts and ends.
        keep_finite_weights: Keep a copy of the weights and buffers after each finite step;
            when the objective turns NaN/inf (before backward) or a step makes weights NaN/inf,
            put that copy back and raise ``NonFiniteLossError``, so the module ends with the
            last finite state. Costs one copy of the module's state (freed at teardown); with
            ``False`` a NaN/inf loss still stops the run, but its forward may have left NaN in
            BatchNorm statistics.
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
        embed_fn: Callable[[Tensor], Tensor] | None = None,
        roles: ModuleRoles | None = None,
        sync_momentum: bool = True,
        reset_memory_bank: bool = True,
        keep_finite_weights: bool = True,
        init_checkpoint: str | None = None,
        **hyperparameters: Any,
    ) -> None:
        super().__init__()
        if isinstance(method, UnlearningMethod):
            if hyperparameters:
                raise TypeError("Pass hyper-parameters to the method instance, not to the callback.")
            self.method = method
        else:
            method_cls = registry.load("method", method)
            self.method = method_cls(**hyperparameters)
        self.embed_fn = embed_fn
        if roles is not None and not isinstance(roles, ModuleRoles):
            raise TypeError(f"roles must be a ModuleRoles; got {type(roles).__name__}.")
        self.roles = roles
        self.sync_momentum = sync_momentum
        self.reset_memory_bank = reset_memory_bank
        self.keep_finite_weights = keep_finite_weights
        self.init_checkpoint = init_checkpoint
        self._forget_summary: tuple[str | None, int | None] = (None, None)
        self._reset_fit_state()

    def _reset_fit_state(self) -> None:
        """Everything that lives for one ``fit``: created in ``setup``, dropped in ``teardown``,
        so a callback fitted twice unlearns twice."""
        self._snapshot: list[tuple[str, Tensor, Tensor]] | None = None
        self._batch: _BatchContext | None = None
        self._criterion: nn.Module | None = None
        self._module: nn.Module | None = None
        self._roles: ModuleRoles = ModuleRoles()  # resolved on the module in setup
        self._datamodule: Any = None
        self._forget_keys: Tensor | None = None
        self._forget_seen: Tensor | None = None  # per forget sample: served this epoch
        self._epoch_batches = 0
        self._finished = False
        self._resumed = False
        self._total_steps = 1

    # -- description, logging, checkpoint state ----------------------------------------------
    @property
    def hyperparameters(self) -> dict[str, Any]:
        return {k: _plain(v) for k, v in self.method.hparams.items()}

    def state_dict(self) -> dict[str, Any]:
        # the forget set of the last fit (kept after teardown for `trainer.save_checkpoint`)
        sha, num = self._forget_summary
        return {
            "method": self.method.name,
            "hyperparameters": self.hyperparameters,
            "forget_sha256": sha,
            "num_forget": num,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._resumed = True
        if state_dict.get("method") not in (None, self.method.name):
            raise ValueError(
                f"The checkpoint comes from an unlearning run with method "
                f"{state_dict['method']!r}, but this callback runs {self.method.name!r}. Resume "
                "with the same method, or start a new run without ckpt_path."
            )
        dm = self._datamodule
        if dm is not None:
            check_resumed_forget_set(
                state_dict.get("forget_sha256"), state_dict.get("num_forget"),
                dm.forget_sha256, len(dm.forget_indices),
            )
        saved = state_dict.get("hyperparameters")
        # a checkpoint of an older version lacks newer options: those ran at their defaults
        if saved is not None and {**self.method.defaults, **saved} != self.hyperparameters:
            raise ValueError(
                f"Refusing to resume: the checkpoint's hyper-parameters "
                f"{state_dict['hyperparameters']} differ from this callback's "
                f"{self.hyperparameters}."
            )

    # -- set-up: validate everything before any training -------------------------------------
    def setup(self, trainer: Any, pl_module: nn.Module, stage: str) -> None:
        if stage != "fit":
            return
        if self.init_checkpoint is not None:  # weights only; the loop starts fresh
            load_initial_weights(pl_module, self.init_checkpoint)
        self._reset_fit_state()
        dm = self._checked_datamodule(trainer)
        self._criterion = pl_module.criterion if hasattr(pl_module, "criterion") else None
        self._adapter: RowTermsAdapter = self._checked_adapter(pl_module)
        self._roles = resolve_roles(pl_module, self.roles)  # misspelt role names fail here
        if self.method.extra_view and self.embed_fn is None and self._adapter.image_text:
            require(pl_module, "encode_text")  # CLIP: the extra view is the own caption
        self._warn_if_nothing_to_sync(pl_module)
        check_trainable(pl_module)  # no meta tensors, something to train: refused before any step
        dm.configure(
            self.method.data, extra_view=self.method.extra_view, pair_forget=self.method.pairs_forget
        )
        self._datamodule, self._module = dm, pl_module
        self._forget_keys = dm.forget_indices
        self._forget_summary = (dm.forget_sha256, len(dm.forget_indices))
        self._install(self._criterion)

    def _checked_datamodule(self, trainer: Any) -> Any:
        """The trainer's ``ForgetRetainDataModule``, with the streams this method needs."""
        dm = getattr(trainer, "datamodule", None)
        if dm is None or not hasattr(dm, "configure") or not hasattr(dm, "forget_indices"):
            raise TypeError(
                "UnlearnCallback needs its data from a ForgetRetainDataModule: call "
                "`trainer.fit(model, datamodule=ForgetRetainDataModule(dataset, forget_indices, "
                "transform))` instead of passing dataloaders."
            )
        n_forget, n_retain = len(dm.forget_indices), len(dm.retain_indices)
        if self.method.needs_forget and n_forget == 0:
            raise ValueError(
                f"Method {self.method.name!r} trains on forget samples, but the forget set is "
                "empty. Pass the samples to remove as forget_indices."
            )
        if self.method.needs_retain and n_retain == 0:
            raise ValueError(
                f"Method {self.method.name!r} needs retain data, but the forget set is the whole "
                f"dataset ({n_forget} samples). Forgetting everything is a re-initialisation, "
                "not unlearning; keep some retain samples or use `gradient_ascent`."
            )
        return dm

    def _checked_adapter(self, pl_module: nn.Module) -> RowTermsAdapter:
        """The loss adapter serving the module's ``criterion`` (refused when there is none)."""
        if self._criterion is None:
            raise ModuleContractError(
                f"{type(pl_module).__name__} has no attribute 'criterion'. UnlearnCallback changes "
                "the objective through the module's loss object, as in lightly's examples: store "
                "it as `self.criterion = NTXentLoss(...)` and call `self.criterion(z0, z1)` in "
                "training_step. If your step computes the loss another way, use "
                "`AlignmentCalibrationLoss` there directly instead of the callback."
            )
        adapter = find_adapter(self._criterion)
        if adapter is None:
            raise ModuleContractError(
                f"{type(pl_module).__name__}.criterion is a {type(self._criterion).__name__}, "
                "which no installed loss adapter serves. Installed adapters (entry-point group "
                f"'lightly_unlearn.losses'): {describe_adapters()}. Use one of these losses, or "
                "add an adapter for yours: a RowTermsAdapter subclass registered under that group."
            )
        return adapter

    def _warn_if_nothing_to_sync(self, pl_module: nn.Module) -> None:
        if self.sync_momentum and not self._roles.momentum_pairs:
            frozen = frozen_children(pl_module)
            if frozen:
                rank_zero_warn(
                    f"sync_momentum=True, but no momentum / teacher pair was found in "
                    f"{type(pl_module).__name__}, which has frozen sub-module(s) "
                    f"{', '.join(frozen)}: if they are EMA copies of trained weights, they keep "
                    "what they learnt from the forget set. Name the pairs with "
                    "`UnlearnCallback(roles=ModuleRoles(momentum_pairs=[(online, copy), ...]))`."
                )

    def on_train_start(self, trainer: Any, pl_module: nn.Module) -> None:
        # Retrain re-initialises here, after every on_fit_start (so AuditCallback's "before"
        # audit sees the given model whatever the callback order) and after a checkpoint
        # restore; a resumed unlearning run (our state came back) keeps its restored weights.
        if self.method.reinitialise and not self._resumed:
            # a module that knows how to re-create its weights (CLIPModule: open_clip's own
            # initialisation of embeddings and projections) does it itself
            reset = getattr(pl_module, "reinitialise_parameters", None)
            if callable(reset):
                reset()
            else:  # teachers / momentum copies become copies of the fresh online weights
                reinitialise(pl_module, self._roles)
        if not self._resumed:  # e.g. partial re-initialisation, weight perturbation
            self.method.prepare(pl_module, self._roles)
        self._take_snapshot(pl_module)  # the weights the non-finite guard falls back to

    def on_fit_start(self, trainer: Any, pl_module: nn.Module) -> None:
        if self.reset_memory_bank and not self.method.reinitialise:
            self._roles.reset_memory_banks(pl_module)
        self._forget_keys = self._forget_keys.to(pl_module.device)
        self._forget_seen = torch.zeros(len(self._forget_keys), dtype=torch.bool, device=pl_module.device)
        total = trainer.estimated_stepping_batches
        self._total_steps = max(int(total), 1) if total != float("inf") else 1
        params = {"unlearn/method": self.method.name, "unlearn/num_forget": len(self._forget_keys)}
        params.update({f"unlearn/{k}": v for k, v in self.hyperparameters.items()})
        for logger in trainer.loggers:
            logger.log_hyperparams(params)
        rank_zero_info(self.describe(trainer))

    def describe(self, trainer: Any = None) -> str:
        """One line: method, hyper-parameters, forget/retain counts, stream and batches."""
        dm = self._datamodule
        world = getattr(trainer, "world_size", 1) or 1
        layout = dm.layout(world)
        n_forget, n_retain = len(dm.forget_indices), len(dm.retain_indices)
        stream = self.method.data
        hp = ", ".join(f"{k}={v}" for k, v in self.hyperparameters.items()) or "no hyper-parameters"
        per_batch = {
            "retain": 0.0,
            "forget": n_forget / max(layout.num_batches * world, 1),
            "mixed": n_forget / max(layout.num_batches * world, 1),
        }[stream]
        return (
            f"UnlearnCallback: {self.method.name} ({hp}); forget {n_forget} / retain {n_retain} "
            f"samples; stream '{stream}': {layout.num_batches} batches of {layout.batch_size} per "
            f"device per epoch on {world} device(s), {per_batch:.1f} forget samples per batch on "
            f"average; {self._roles.describe()}."
        )

    # -- per batch ------------------------------------------------------------------------------
    def on_train_batch_start(self, trainer: Any, pl_module: nn.Module, batch: Any, batch_idx: int) -> None:
        if not isinstance(batch, list) or len(batch) < 3 or not isinstance(batch[0], list):
            raise TypeError(
                "UnlearnCallback expected a ForgetRetainDataModule batch `[views, targets, keys]`; "
                f"got {type(batch).__name__}. Pass the datamodule to trainer.fit and do not "
                "override its collate function."
            )
        keys = torch.as_tensor(batch[2], device=self._forget_keys.device)
        forget = torch.isin(keys, self._forget_keys)
        if self._forget_seen is not None:
            self._forget_seen |= torch.isin(self._forget_keys, keys)
        self._epoch_batches += 1
        extra = None
        views = batch[0]
        expected = getattr(self._datamodule, "num_views", None)
        if self.method.extra_view:
            if len(views) < 3 or (expected is not None and len(views) != expected + 1):
                raise RuntimeError(
                    f"The batch carries {len(views)} views; this method needs the transform's "
                    f"{expected or 'two or more'} views plus an extra one, last. Serve the data "
                    "through ForgetRetainDataModule's own train_dataloader (configured by this "
                    "callback) and do not override its collate function."
                )
            # the extra view is the last one, whatever the number of (multi-crop) views; the
            # user's step sees all the others
            extra = views.pop()
        self._batch = _BatchContext(forget, extra)

    # -- every forget sample, every epoch ---------------------------------------------------------
    def on_train_epoch_start(self, trainer: Any, pl_module: nn.Module) -> None:
        if self._forget_seen is not None:
            self._forget_seen.zero_()
        self._epoch_batches = 0

    def _check_coverage(self, trainer: Any, pl_module: nn.Module) -> None:
        """Log ``unlearn/forget_seen`` (distinct forget samples served this epoch, all ranks);
        raise if a complete epoch of a method that trains on forget samples missed some."""
        if self._forget_seen is None or not self.method.needs_forget:
            return
        seen = self._forget_seen.to(torch.int32)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(seen, op=torch.distributed.ReduceOp.MAX)
        count = int(seen.sum())
        pl_module.log("unlearn/forget_seen", float(count), rank_zero_only=True)
        expected = len(self._forget_keys)
        loader_batches = trainer.num_training_batches
        complete = loader_batches != float("inf") and self._epoch_batches >= loader_batches
        if count < expected:
            missing = self._forget_keys[seen == 0][:5].tolist()
            message = (
                f"Epoch {trainer.current_epoch} of {self.method.name} served {count} of "
                f"{expected} forget samples (missing e.g. positions {missing}): they were not "
                "unlearned in this epoch."
            )
            if complete and getattr(trainer, "limit_train_batches", 1.0) in (1.0, None):
                raise ForgetCoverageError(
                    message + " Serve the data through ForgetRetainDataModule's own "
                    "train_dataloader (it covers every forget sample in every epoch); a custom "
                    "loader or sampler must do the same."
                )
            rank_zero_warn(message + " (the epoch was cut short by limit_train_batches or max_steps)")

    def on_train_epoch_end(self, trainer: Any, pl_module: nn.Module) -> None:
        self._check_coverage(trainer, pl_module)
        # Before ModelCheckpoint (Lightning runs checkpoint callbacks last), so the last epoch's
        # checkpoint already holds synced momentum weights.
        max_epochs = trainer.max_epochs
        if max_epochs is not None and max_epochs > 0 and trainer.current_epoch + 1 >= max_epochs:
            self._finish(pl_module)

    def on_train_batch_end(self, trainer: Any, pl_module: nn.Module, *args: Any, **kwargs: Any) -> None:
        if self._batch is not None and self._batch.logged:
            self._log(pl_module, self._batch)
        self._batch = None
        self._check_weights(trainer, pl_module)

    # -- non-finite guard: the module always keeps its last finite weights ------------------------
    def _state(self, pl_module: nn.Module) -> list[tuple[str, Tensor]]:
        # buffers too (BatchNorm running stats and counters move in the forward pass)
        return list(pl_module.named_parameters()) + list(pl_module.named_buffers())

    def _take_snapshot(self, pl_module: nn.Module) -> None:
        self._snapshot = None
        if self.keep_finite_weights:
            self._snapshot = [(n, t, t.detach().clone()) for n, t in self._state(pl_module)]
            # tensors that must stay finite (not e.g. a causal attention mask full of -inf)
            self._finite = {
                n for n, t, _ in self._snapshot if t.is_floating_point() and torch.isfinite(t).all()
            }
            self._watched = [t for n, t, _ in self._snapshot if n in self._finite]

    @torch.no_grad()
    def _check_weights(self, trainer: Any, pl_module: nn.Module) -> None:
        """After a step: remember the weights if finite, else put the last finite ones back."""
        if self._snapshot is None:
            return
        # one device sync for the whole model, one fused copy
        finite = [torch.isfinite(t).all() for t in self._watched]
        if not finite or bool(torch.stack(finite).all()):
            torch._foreach_copy_([s for _, _, s in self._snapshot], [t for _, t, _ in self._snapshot])
            return
        bad = [n for n, t, _ in self._snapshot if n in self._finite and not torch.isfinite(t).all()]
        self._restore_finite()
        raise NonFiniteLossError(
            f"The optimizer step at step {trainer.global_step} made {len(bad)} weight tensor(s) "
            f"NaN/inf (first: {bad[0]}) although the {self.method.name} objective was finite; "
            "the weights from before that step were put back. Lower the learning rate or the "
            "number of epochs (gradient ascent and NegGrad diverge easily)."
        )

    @torch.no_grad()
    def _restore_finite(self) -> None:
        # also buffers: the failed forward may have written NaN into BatchNorm running stats
        for _, t, saved in self._snapshot or []:
            t.copy_(saved)

    def on_exception(self, trainer: Any, pl_module: nn.Module, exception: BaseException) -> None:
        # Lightning does not call teardown on errors: give the user their criterion back
        self.teardown(trainer, pl_module, "fit")

    # -- the patched criterion --------------------------------------------------------------------
    def _install(self, criterion: nn.Module) -> None:
        def forward(*args: Any, **kwargs: Any) -> Tensor:
            return self._objective(criterion, *args, **kwargs)

        criterion.forward = forward  # instance attribute: structure and state_dict unchanged

    def _restore(self) -> None:
        if self._criterion is not None and "forward" in vars(self._criterion):
            del self._criterion.forward

    def _row_terms(self, criterion: nn.Module, *args: Any, **kwargs: Any) -> RowTerms:
        return self._adapter.row_terms(criterion, *args, **kwargs)

    def _extra_embeddings(self, module: nn.Module, extra_views: Tensor, forget: Tensor) -> Tensor | None:
        """Embeddings of the forget samples' extra views, ``(F, D)`` in batch order."""
        forget = forget.to(extra_views.device)
        if not bool(forget.any()):
            return None
        if self._adapter.image_text:
            # CLIP: the extra "view" is the forget pairs' own caption tokens; the text tower has
            # no batch statistics, so only the forget captions are embedded
            tokens = extra_views[forget]
            if self.embed_fn is not None:
                return self.embed_fn(tokens)
            return module.encode_text(tokens, normalize=True)
        # The extra views of the *whole* batch go through one pass, so BatchNorm normalises them
        # with the statistics of the same batch composition as the anchor views; only the
        # forget rows are used. That pass is kept out of BatchNorm's running statistics, which
        # the audits and the unlearned model use in eval mode.
        with frozen_batch_norm_stats(module):
            embed = self.embed_fn or self._roles.embed_fn(module)
            out = self._adapter.extra_embedding(embed(extra_views))
        return out[forget.to(out.device)]

    def _objective(self, criterion: nn.Module, *args: Any, **kwargs: Any) -> Tensor:
        ctx = self._batch
        module = self._module
        if ctx is None or module is None or not module.training:
            return type(criterion).forward(criterion, *args, **kwargs)  # validation etc.
        call = ctx.calls + 1  # this call's number within the step (BYOL / SimSiam call twice)
        anchor = self._adapter.anchor(*args, call=call, **kwargs)
        if anchor.shape[0] != ctx.forget.shape[0]:
            raise RuntimeError(
                f"The criterion was called with {anchor.shape[0]} samples but the batch has "
                f"{ctx.forget.shape[0]}. UnlearnCallback needs `criterion(z0, z1)` on the full, "
                "unsplit batch (the forget mask is per sample of the batch)."
            )
        ctx.calls = call
        terms = self._row_terms(criterion, *args, **kwargs)
        if not ctx.extra_done and ctx.extra_views is not None:  # once per step, for every call
            ctx.extra = self._extra_embeddings(module, ctx.extra_views, ctx.forget)
            ctx.extra_done = True
        trainer = module.trainer
        progress = min(trainer.global_step / self._total_steps, 1.0)
        loss = self.method.objective(
            StepContext(
                terms=terms,
                forget=ctx.forget,
                anchor=anchor,
                extra=ctx.extra,
                module=module,
                progress=progress,
                forget_fraction=self._datamodule.forget_fraction,
                second=self._adapter.second(*args, call=call, **kwargs),
                image_text=self._adapter.image_text,
            )
        )
        reg = self.method.regularizer(module, progress)
        if reg is not None:
            loss = loss + reg
        # all ranks stop together: a rank raising alone would leave the others in backward
        if global_sum(torch.isfinite(loss).logical_not().float()) > 0:
            self._restore_finite()
            raise NonFiniteLossError(
                f"The {self.method.name} objective became {loss.item()} at step "
                f"{trainer.global_step}; training stopped before this step, so the module keeps "
                "the weights of the last finite step. Lower the learning rate or the number of "
                "epochs (gradient ascent and NegGrad diverge easily), or lower `lam`."
            )
        ctx.logged.append((loss.detach(), terms))
        return loss

    def _log(self, module: nn.Module, ctx: _BatchContext) -> None:
        """Once per step, over every criterion call of the step: ``unlearn_loss`` is the mean of
        the calls' objectives (BYOL / SimSiam return ``0.5 · (call 1 + call 2)``), the row
        metrics are over the rows of all calls."""
        forget, n = ctx.forget, ctx.forget.shape[0]
        losses = [loss for loss, _ in ctx.logged]
        parts = [t for _, t in ctx.logged]
        rows = torch.cat([row_mask(forget.to(t.positive.device), t.rows_per_sample) for t in parts])
        per_row = torch.cat([t.loss.detach() for t in parts])
        positive = torch.cat([t.positive.detach() for t in parts])
        module.log("unlearn_loss", torch.stack(losses).mean(), prog_bar=True, batch_size=n)
        if (~rows).any():
            module.log("unlearn/retain_row_loss", per_row[~rows].mean(), batch_size=n)
        if rows.any():
            module.log("unlearn/forget_row_loss", per_row[rows].mean(), batch_size=n)
            module.log("unlearn/forget_alignment", positive[rows].mean(), batch_size=n)

    # -- the end ------------------------------------------------------------------------------------
    def _finish(self, pl_module: nn.Module) -> None:
        if not self._finished:
            if self.sync_momentum:  # teachers / momentum copies end equal to the unlearned weights
                self._roles.sync_pairs(pl_module)
            if self.reset_memory_bank:  # the live bank holds keys of forget / partner views
                self._roles.reset_memory_banks(pl_module)
        self._finished = True

    def on_train_end(self, trainer: Any, pl_module: nn.Module) -> None:
        self._finish(pl_module)

    def teardown(self, trainer: Any, pl_module: nn.Module, stage: str) -> None:
        if stage != "fit":
            return
        self._restore()
        if self._datamodule is not None:
            self._datamodule.configure("all", validate=False)
        self._reset_fit_state()
