"""The loss-adapter protocol: how the callback turns a user's criterion into per-sample terms.

``UnlearnCallback`` replaces the ``forward`` of the module's ``criterion`` by an unlearning
method's objective, which weighs forget and retain samples apart. For that it needs the
criterion's loss split per row (:class:`~lightly_unlearn.losses.rows.RowTerms`). A
:class:`RowTermsAdapter` knows one loss family: whether a criterion belongs to it
(:meth:`~RowTermsAdapter.matches`), its per-row terms (:meth:`~RowTermsAdapter.row_terms`), and
which argument embeds the sample's own first view (:meth:`~RowTermsAdapter.anchor`, used by
Alignment Calibration's positive calibration).

A ``training_step`` may call the criterion with positional or keyword arguments
(``criterion(out0=z0, out1=z1)``): every adapter method reads them through
:meth:`RowTermsAdapter.arguments`, which binds them to the parameters of the criterion class's
own ``forward``, so adapters index arguments by position whatever the call's spelling.

Adapters are found through the ``lightly_unlearn.loss_adapters`` entry-point group; a new loss is
one module plus one line in the distribution's ``pyproject.toml``::

    [project.entry-points."lightly_unlearn.loss_adapters"]
    my_loss = "my_package.my_loss_rows:MyLossAdapter"

The entry point names a class with a no-argument constructor (or an instance). Adapters never
import Lightning.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, ClassVar

from torch import Tensor, nn

from lightly_unlearn import registry
from lightly_unlearn.losses.rows import RowTerms


@functools.lru_cache(maxsize=64)
def _forward_signature(criterion_type: type) -> inspect.Signature:
    return inspect.signature(criterion_type.forward)


def bind_arguments(criterion: nn.Module, args: tuple, kwargs: dict[str, Any]) -> tuple:
    """The arguments of ``criterion(*args, **kwargs)`` in the order of the parameters of the
    criterion class's ``forward`` (defaults filled in; keyword-only parameters, which cannot be
    placed by position, are left out). Raises ``TypeError`` as the call itself would."""
    bound = _forward_signature(type(criterion)).bind(criterion, *args, **kwargs)
    bound.apply_defaults()
    return bound.args[1:]


class RowTermsAdapter:
    """Per-row terms of one loss family; subclass it and register the subclass.

    Contract of :meth:`row_terms`: ``terms.loss`` (``logsumexp − positive``) has
    ``rows_per_sample · N`` rows for ``N`` samples, laid out as ``rows_per_sample`` blocks of
    ``N`` (so a per-sample mask ``m`` is the row mask ``concat([m] * rows_per_sample)``), and
    ``terms.loss.mean()`` equals the value the criterion itself returns for the same arguments.
    ``positive`` is the row's alignment part (the term that rewards the positive pair),
    ``logsumexp`` its uniformity part (zero for losses without one). The criterion's own
    side effects (memory-bank updates, centre updates) must happen exactly once per call.

    Every method receives the criterion and the arguments of one call as the user's step passed
    them; :meth:`arguments` gives them by position.

    Class attributes (shown by ``lightly-unlearn list loss_adapter``):
        name: Entry-point name.
        losses: The criteria served, with the methods that use them.
        criterion_types: Classes :meth:`matches` accepts (``isinstance``); may stay empty when
            :meth:`matches` is overridden.
        positive_pair: Whether the loss has a positive pair, so Alignment Calibration's
            negative and positive calibration are defined.
        image_text: Whether the criterion compares image and caption embeddings (CLIP).
        target_extra_view: Whether the loss compares an online output with a no-gradient target
            (BYOL, SimSiam, DINO): AC's ``extra_encoder="auto"`` then embeds the extra view on
            the target side (momentum encoder / teacher), as the loss's own targets are; for
            contrastive losses (NT-Xent, DCL: SimCLR, MoCo) it uses the online encoder.
        gamma: What AC's ``gamma`` weighs for this loss (or that it is unused).
        calibration: Alignment Calibration's forget-row term and positive calibration for this
            loss, as formulas.
    """

    name: ClassVar[str] = ""
    losses: ClassVar[str] = ""
    criterion_types: ClassVar[tuple[type, ...]] = ()
    positive_pair: ClassVar[bool] = True
    image_text: ClassVar[bool] = False
    target_extra_view: ClassVar[bool] = False
    gamma: ClassVar[str] = "weight of the forget rows' uniformity part (None: tied to alpha)"
    calibration: ClassVar[str] = ""

    def matches(self, criterion: nn.Module) -> bool:
        """Whether this adapter serves ``criterion``."""
        return bool(self.criterion_types) and isinstance(criterion, self.criterion_types)

    def specificity(self, criterion: nn.Module) -> int:
        """Lower is more specific: the position of the closest matching class in the criterion's
        MRO. When several adapters match (a subclass has its own adapter), the most specific wins."""
        mro = type(criterion).__mro__
        hits = [mro.index(t) for t in self.criterion_types if t in mro]
        return min(hits) if hits else len(mro)

    def arguments(self, criterion: nn.Module, args: tuple, kwargs: dict[str, Any]) -> tuple:
        """The call's arguments by position, keywords placed by the criterion's ``forward``
        signature (see :func:`bind_arguments`)."""
        return bind_arguments(criterion, args, kwargs)

    def row_terms(self, criterion: nn.Module, *args: Any, **kwargs: Any) -> RowTerms:
        """Per-row terms of ``criterion(*args, **kwargs)``, computed with the criterion's *class*
        ``forward`` semantics (the instance's ``forward`` is the callback's patch)."""
        raise NotImplementedError

    def anchor(self, criterion: nn.Module, *args: Any, call: int = 1, **kwargs: Any) -> Tensor:
        """``(N, D)``: the embedding of each sample's own first view in this criterion call.

        ``call`` counts the criterion's calls in the current training step (1, 2, ...), for
        losses that a training step calls several times (BYOL, SimSiam). Its first dimension is
        the number of samples of the batch (checked against the forget mask).
        """
        return self.arguments(criterion, args, kwargs)[0]

    def second(self, criterion: nn.Module, *args: Any, call: int = 1, **kwargs: Any) -> Tensor | None:
        """``(N, D)``: the other embedding of the call (``z1`` / key / captions), or ``None``."""
        values = self.arguments(criterion, args, kwargs)
        return values[1] if len(values) > 1 else None

    def extra_embedding(self, output: Any) -> Tensor:
        """The embedding to compare with :meth:`anchor` from what the embedding function returned
        for the extra views (a tensor, or the first tensor of a tuple)."""
        if isinstance(output, (tuple, list)):
            return output[0]
        return output

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def installed_adapters() -> dict[str, RowTermsAdapter]:
    """Every adapter of the ``lightly_unlearn.loss_adapters`` group (runtime registrations
    included), by name; broken plugins are skipped with a warning."""
    out = {}
    for name, obj in registry.load_all("loss_adapter").items():
        out[name] = obj() if isinstance(obj, type) else obj
    return out


def find_adapter(criterion: nn.Module) -> RowTermsAdapter | None:
    """The installed adapter serving ``criterion`` (the most specific when several match), or
    ``None``."""
    matching = [a for a in installed_adapters().values() if a.matches(criterion)]
    if not matching:
        return None
    return min(matching, key=lambda a: a.specificity(criterion))


def describe_adapters() -> str:
    """``name (losses)`` of every installed adapter, for error messages."""
    adapters = installed_adapters()
    if not adapters:
        return "none installed (reinstall lightly-unlearn: its entry points are missing)"
    return "; ".join(f"{name} ({a.losses})" for name, a in adapters.items())
