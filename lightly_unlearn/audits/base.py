"""The audit interface: a named callable over cached features that returns numbers.

An audit declares what it reads (``needs``: the ``"retain"`` and ``"holdout"`` splits beside
``forget``, ``"clean"`` features, augmented ``"views"``, ``"labels"``), so the caller computes
each kind of feature once for all selected audits. ``__call__(inputs, before=None)`` returns an
:class:`AuditResult`; ``before`` is the same audit's result on the model before unlearning, for
audits that compare the two (the alignment gap matrix).

Like a torchmetrics ``Metric``, an audit also describes its outputs: ``metric_info`` maps each
metric it reports to a :class:`MetricInfo` (what it means, whether higher is better), and
``figures`` names the figures it can draw from a result (:meth:`Audit.figure`), and ``note`` is
the footnote a report prints when the audit ran. Reports, the callback and the CLI read these
declarations instead of knowing audits by name. Third-party
audits subclass :class:`Audit` and are declared in the ``lightly_unlearn.audits`` entry-point
group.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from lightly_unlearn.audits.features import AuditInputs, SplitFeatures
from lightly_unlearn.errors import AuditInputError


@dataclass
class AuditResult:
    """Scalar metrics (logged) and arrays (saved to ``audit.json`` / plotted), of one audit run."""

    metrics: dict[str, float] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    #: ``{"code": ..., "message": ...}`` items: what this audit skipped or could not trust
    warnings: list[dict[str, str]] = field(default_factory=list)

    def warn(self, code: str, message: str) -> None:
        """Record a warning (a data item, not a Python warning: reports and receipts carry it)."""
        self.warnings.append({"code": str(code), "message": str(message)})

    def to_state(self) -> dict[str, Any]:
        """Plain Python types only (checkpoints load with ``weights_only=True``)."""
        return {
            "metrics": {k: float(v) for k, v in self.metrics.items()},
            "arrays": {k: np.asarray(v, dtype=float).tolist() for k, v in self.arrays.items()},
            "warnings": [dict(w) for w in self.warnings],
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> AuditResult:
        return cls(
            metrics={k: float(v) for k, v in state.get("metrics", {}).items()},
            arrays={k: np.asarray(v, dtype=float) for k, v in state.get("arrays", {}).items()},
            warnings=[dict(w) for w in state.get("warnings", [])],
        )


@dataclass(frozen=True)
class MetricInfo:
    """What one audit metric means.

    ``higher_is_better`` follows torchmetrics: ``True`` / ``False``, or ``None`` when neither
    direction is "better" -- most unlearning numbers are judged against Retrain's (a model
    never trained on the forget set), not against an extreme.
    """

    description: str
    higher_is_better: bool | None = None


#: ``labeler(split, keys) -> names``: how a caller names samples on figure axes (file names,
#: dataset positions); ``split`` is ``"forget"`` or ``"holdout"``.
Labeler = Callable[[str, Any], "list[str] | None"]


class Audit:
    """Base class: set ``name``, ``needs`` and ``metric_info``, implement ``__call__``.

    Audits that draw figures list them in ``figures`` and implement :meth:`figure`.
    """

    name: ClassVar[str] = "audit"
    #: subset of {"retain", "clean", "views", "holdout", "labels"}
    needs: ClassVar[frozenset[str]] = frozenset()
    #: every metric this audit may report, with its meaning
    metric_info: ClassVar[Mapping[str, MetricInfo]] = {}
    #: names of the figures :meth:`figure` can draw (file stems of the saved PNGs)
    figures: ClassVar[tuple[str, ...]] = ()
    #: what a reader of the report must know to read this audit's numbers ("" for nothing)
    note: ClassVar[str] = ""

    def __call__(self, inputs: AuditInputs, before: AuditResult | None = None) -> AuditResult:
        raise NotImplementedError

    def figure(
        self,
        name: str,
        result: AuditResult,
        *,
        title: str,
        labeler: Labeler | None = None,
        verdict: Any = None,
    ) -> Any:
        """The matplotlib figure ``name`` (one of :attr:`figures`) for ``result``, or ``None``
        when the result holds nothing to draw (e.g. no ``before`` result to compare with).

        ``verdict`` (a :class:`~lightly_unlearn.audits.verdict.Verdict`) goes into the title.
        """
        raise NotImplementedError(f"{type(self).__name__} draws no figure {name!r}.")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def require_inputs(audit: Audit, inputs: AuditInputs) -> None:
    """Raise :class:`AuditInputError` saying what is missing and how to provide it."""
    splits = [("forget", inputs.forget)]
    if "retain" in audit.needs or "labels" in audit.needs:
        if inputs.retain is None:
            raise AuditInputError(
                f"The {audit.name!r} audit needs member samples (a sample of the retain split)."
            )
        splits.append(("retain", inputs.retain))
    if "holdout" in audit.needs:
        if inputs.holdout is None:
            raise AuditInputError(
                f"The {audit.name!r} audit needs non-member samples: pass `holdout=` (e.g. the "
                "test split) to ForgetRetainDataModule, or drop this audit."
            )
        splits.append(("holdout", inputs.holdout))
    for kind in ("clean", "views"):
        if kind in audit.needs:
            for split_name, split in splits:
                if getattr(split, kind) is None:
                    raise AuditInputError(
                        f"The {audit.name!r} audit needs {kind!r} features of the {split_name} "
                        "split; compute them with extract_features(..., "
                        + ("eval_transform=...)." if kind == "clean" else "view_transform=...).")
                    )
    if "labels" in audit.needs:
        if not bool((inputs.retain.targets >= 0).any()):
            raise AuditInputError(
                f"The {audit.name!r} audit trains a classifier on retain labels, but the dataset "
                "yields no integer targets. Use a dataset whose items are (image, target), or "
                "drop this audit."
            )


def labelled(split: SplitFeatures, name: str, result: AuditResult, metric: str) -> SplitFeatures | None:
    """The labelled rows of ``split`` (targets ``>= 0``), for an audit that scores labels.

    Unlabelled samples are never scored as wrong: a partly labelled split is reduced to its
    labelled samples and a ``partly_labelled`` warning says how many were used; a split with no
    labels at all gives ``None`` and a ``missing_labels`` warning saying that ``metric`` was
    skipped.
    """
    mask = split.targets >= 0
    used, total = int(mask.sum()), len(split)
    if used == 0:
        result.warn(
            "missing_labels",
            f"{metric} skipped: none of the {total} {name} samples has a label (target -1). "
            "Give the dataset (image, target) items to measure it.",
        )
        return None
    if used < total:
        result.warn(
            "partly_labelled",
            f"{metric} uses the {used} labelled of {total} {name} samples "
            f"({total - used} have no label and are left out, not counted as wrong).",
        )
        return split.subset(torch.nonzero(mask).flatten())
    return split


def metric_descriptions(audits: Sequence[Audit]) -> dict[str, MetricInfo]:
    """``{metric: MetricInfo}`` over ``audits`` (the first audit declaring a metric wins)."""
    out: dict[str, MetricInfo] = {}
    for audit in audits:
        for key, info in getattr(audit, "metric_info", {}).items():
            out.setdefault(key, info)
    return out
