"""What an unlearning method is: the data it trains on and how it weighs retain and forget rows.

A method is one small class (see the siblings of this module) registered in the
``lightly_unlearn.methods`` entry-point group. ``UnlearnCallback`` asks the datamodule for the
method's ``data`` stream, computes per-row contrastive terms on the full batch and calls
:meth:`UnlearningMethod.objective` in place of the user's criterion.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from torch import Tensor, nn

from lightly_unlearn.losses.rows import RowTerms, normalise, row_mask

if TYPE_CHECKING:  # the stream names are the datamodule's (importing it would load Lightning)
    from lightly_unlearn.data.datamodule import DataMode
    from lightly_unlearn.roles import ModuleRoles


@dataclass
class StepContext:
    """Everything a method may use to build one step's objective.

    Attributes:
        terms: Per-row terms of the whole (local) batch.
        forget: ``(N,)`` bool per sample: which samples of the batch are forget samples.
        anchor: ``(N, D)`` the first embedding handed to the criterion (``z0`` / query / image).
        extra: ``(F, D)`` embeddings of the forget samples' extra views, if the method asked.
        module: The LightningModule being unlearned.
        progress: Fraction of the unlearning run completed, in ``[0, 1]``.
        forget_fraction: ``|D_forget| / |D_train|``.
        second: ``(N, D)`` the second embedding handed to the criterion (``z1`` / key /
            captions), or ``None``.
        image_text: Whether the criterion is an image–text (CLIP) loss: ``anchor`` holds image
            and ``second``/``extra`` caption embeddings.
    """

    terms: RowTerms
    forget: Tensor
    anchor: Tensor
    extra: Tensor | None
    module: nn.Module
    progress: float
    forget_fraction: float
    second: Tensor | None = None
    image_text: bool = False


class UnlearningMethod:
    """Base class. Subclasses set the class attributes and implement :meth:`objective`."""

    #: Canonical name (the entry-point name).
    name: ClassVar[str] = ""
    #: One line for ``lightly-unlearn list``.
    summary: ClassVar[str] = ""
    #: Which samples each step sees: the ``ForgetRetainDataModule`` stream ``"retain"``,
    #: ``"forget"`` or ``"mixed"`` (both).
    data: ClassVar[DataMode] = "retain"
    #: Whether forget samples' second view comes from another forget sample (AC).
    pairs_forget: ClassVar[bool] = False
    #: Whether forget samples need an extra own view (AC's positive calibration).
    extra_view: bool = False
    #: Which encoder embeds that extra view: ``"online"`` (``forward``, with gradient),
    #: ``"momentum"`` (the roles' embedding: a momentum / teacher encoder where the module has
    #: one) or ``"auto"`` (online for contrastive losses, the target side for losses with a
    #: no-gradient target: ``RowTermsAdapter.target_extra_view``).
    extra_encoder: str = "momentum"
    #: Whether all weights are re-initialised first (Retrain).
    reinitialise: ClassVar[bool] = False
    #: Whether :meth:`prepare` changes the given weights (then a step refused before the first
    #: update puts the whole given state back, as for Retrain).
    prepare_changes_weights: ClassVar[bool] = False
    #: Hyper-parameters with their defaults, and a short help text for each.
    defaults: ClassVar[dict[str, Any]] = {}
    #: For options added later with a default that behaves differently from before: the value
    #: that reproduces what a checkpoint written without the option ran (resume checks).
    before_option: ClassVar[dict[str, Any]] = {}
    help: ClassVar[dict[str, str]] = {}

    def __init__(self, **hyperparameters: Any) -> None:
        unknown = sorted(set(hyperparameters) - set(self.defaults))
        if unknown:
            valid = ", ".join(f"{k}={v!r}" for k, v in self.defaults.items()) or "none"
            raise TypeError(
                f"Method {self.name!r} got unknown hyper-parameter(s) {', '.join(unknown)}. "
                f"Its hyper-parameters (with defaults) are: {valid}."
            )
        self.hparams: dict[str, Any] = {**self.defaults, **hyperparameters}
        self.validate()

    @property
    def needs_forget(self) -> bool:
        return self.data in ("forget", "mixed")

    @property
    def needs_retain(self) -> bool:
        return self.data in ("retain", "mixed")

    def validate(self) -> None:
        """Check hyper-parameter values when the method (and so the callback) is built.

        A hyper-parameter whose default is a number must be a finite, non-negative real number
        (not a string, ``None``, ``bool``, ``nan`` or ``inf``) unless its default is ``None``
        (then ``None`` is allowed too); one whose default is an ``int`` must be a whole number;
        one whose default is a string must be a string. Values are stored as plain ``float`` /
        ``int``. Raises
        ``TypeError``/``ValueError`` naming the parameter. Subclasses add their own range checks after ``super().validate()``.
        """
        for key, value in self.hparams.items():
            default = self.defaults[key]
            if isinstance(default, str):
                if not isinstance(value, str):
                    raise TypeError(
                        f"{self.name}: {key} must be a string (default {default!r}); got "
                        f"{value!r} of type {type(value).__name__}."
                    )
                continue
            numeric = default is None or (
                isinstance(default, numbers.Real) and not isinstance(default, bool)
            )
            if not numeric or (value is None and default is None):
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                hint = " (a number, not a string)" if isinstance(value, str) else ""
                allowed = " or None" if default is None else ""
                raise TypeError(
                    f"{self.name}: {key} must be a finite number >= 0{allowed}{hint}; got "
                    f"{value!r} of type {type(value).__name__}."
                )
            if isinstance(default, int) and not isinstance(value, numbers.Integral):
                raise TypeError(f"{self.name}: {key} must be a whole number >= 0; got {value!r}.")
            if not math.isfinite(float(value)):
                raise ValueError(
                    f"{self.name}: {key} must be a finite number; got {value!r}. A non-finite "
                    "weight makes every step's loss non-finite."
                )
            if value < 0:
                raise ValueError(f"{self.name}: {key} must be >= 0; got {value}.")
            if default is None or isinstance(default, float):
                self.hparams[key] = float(value)  # numpy/torch scalars -> plain JSON numbers
            elif isinstance(default, int):
                self.hparams[key] = int(value)

    def objective(self, ctx: StepContext) -> Tensor:
        """The scalar loss that replaces the user's criterion for one step."""
        raise NotImplementedError

    def regularizer(self, module: nn.Module, progress: float) -> Tensor | None:
        """An extra term on the weights (ℓ1-sparse); ``None`` for most methods."""
        return None

    def prepare(self, module: nn.Module, roles: ModuleRoles) -> None:
        """Change the given weights once, before the first step (e.g. re-initialise some
        sub-modules, perturb the weights, remember the starting point); not on a resumed run.

        ``roles`` are resolved on ``module``: whatever a method changes on the online weights
        it must also make consistent on the momentum / teacher copies (``roles.sync_pairs``).
        Default: nothing. (Retrain's full re-initialisation is :attr:`reinitialise`.)
        """

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hparams.items())
        return f"{type(self).__name__}({args})"


def mean_row_loss(ctx: StepContext, *, forget_only: bool = False) -> Tensor:
    """The criterion's ordinary loss: mean over all rows (globally normalised under DDP).

    With ``forget_only=True`` only forget rows count: retain samples in a forget stream are
    fillers (negatives for a forget set too small to fill a batch) whose own rows are ignored.
    """
    loss = ctx.terms.loss
    if forget_only:
        loss = loss[row_mask(ctx.forget.to(loss.device), ctx.terms.rows_per_sample)]
    return normalise(loss.sum(), loss.new_tensor(float(loss.numel())))
