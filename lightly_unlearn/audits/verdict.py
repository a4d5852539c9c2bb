"""Warnings and a one-line verdict from "before" and "after" audit results.

An audit's numbers only mean "forgotten" when the model still works, when there was a membership
signal to remove, when the forget set did not swing past never-seen data, and when the change on
the forget set is larger than the change on never-seen data. :func:`assess` checks each of these
and returns the failures as data (``{"code": ..., "message": ...}``, worst first) together with
a one-line verdict that leads with the worst warning and only says "consistent with forgetting"
when no warning fires. The training callback, ``lightly-unlearn audit`` and receipts all use it.

Warning codes, worst first (thresholds and reasons are the module constants below):

* ``collapse`` -- the encoder's outputs collapsed, or its utility fell: nothing else is evidence.
* ``relearned`` -- ordinary training of a copy on the retain set alone made the forget set
  recognisable again (the relearning test, :mod:`lightly_unlearn.attacks.relearn`): the
  information was hidden, not removed.
* ``overshoot`` -- the forget set aligns clearly *less* than never-seen data: recognisable again.
* ``no_membership_signal`` -- before unlearning, forget samples were not distinguishable from
  never-seen ones, so the audit cannot show forgetting.
* ``holdout_drift`` -- the forgetting score is not larger than the change on never-seen data.
* ``no_holdout`` -- no never-seen reference: forgetting cannot be separated from drift.
* anything the audits themselves recorded (``missing_labels``, ``partly_labelled``, ...).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: Two-sided 95 % normal quantile: "within sampling error" means within Z standard errors.
Z = 1.96

#: ``collapse`` when different samples' embeddings have a mean cosine of at least this. A working
#: encoder keeps images apart; at 0.99 every input points (almost) the same way, as in a collapsed
#: run where every alignment reads 1.00. Measured on never-seen (holdout), retain and forget
#: samples, whichever the audits computed.
COLLAPSE_COSINE = 0.99

#: ``collapse`` when the spread ``1 - cross-sample cosine`` fell below this fraction of its value
#: before unlearning: a tenfold loss of spread ("feature variance near 0" relative to the model's
#: own starting point) is not what removing a small forget set does.
COLLAPSE_SPREAD_RATIO = 0.1

#: ``collapse`` when retain (RA) or test (TA) probe accuracy fell by more than this many
#: percentage points against "before" (and by more than ``Z`` standard errors of the difference,
#: so a handful of flipped samples in a small audit does not fire). Retraining without a random
#: 10 % forget set typically costs RA/TA a point or two; a five-point loss means the model was
#: damaged, not that it forgot.
UTILITY_DROP_POINTS = 5.0

#: ``overshoot`` needs the forget-vs-holdout AUC below ``0.5 - max(Z * SE, this)``: besides being
#: outside sampling error, the effect must be large enough to make the forget set recognisable.
OVERSHOOT_MIN_EFFECT = 0.05

#: The method the relearning benchmark recommends when the forget set must stay gone under
#: further training (docs/benchmarks/relearning.md): the ``relearned`` warning names it.
RELEARN_RESISTANT_METHOD = "partial_reinit"

#: Worst first; codes not listed (recorded by individual audits) come after, in their order.
SEVERITY = ("collapse", "relearned", "overshoot", "no_membership_signal", "holdout_drift", "no_holdout")

#: (AUC, its standard error) metric names: image audits, then CLIP's pair-alignment audit.
_AUC_KEYS = (
    ("forget_holdout_auc", "forget_holdout_auc_se"),
    ("clip_forget_holdout_auc", "clip_forget_holdout_auc_se"),
)
_FS_KEYS = ("forgetting_score", "clip_forgetting_score")
_COSINE_KEYS = (
    ("cross_cosine_holdout", "never-seen (holdout)"),
    ("cross_cosine_retain", "retain"),
    ("cross_cosine_forget", "forget"),
)


@dataclass
class Verdict:
    """Warnings (worst first), the one-line verdict, and the numbers it rests on."""

    warnings: list[dict[str, str]] = field(default_factory=list)
    line: str = ""
    evidence: dict[str, float] = field(default_factory=dict)

    @property
    def codes(self) -> list[str]:
        return [w["code"] for w in self.warnings]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types: ``{"verdict", "warnings", "evidence"}``."""
        return {
            "verdict": self.line,
            "warnings": [dict(w) for w in self.warnings],
            "evidence": {k: float(v) for k, v in self.evidence.items()},
        }


def _flat(results: Mapping[str, Any] | None) -> tuple[dict[str, float], list[dict[str, str]]]:
    """Flat metrics and recorded warnings from audit results, or a flat metric mapping as is."""
    if not results:
        return {}, []
    if all(hasattr(r, "metrics") for r in results.values()):
        from lightly_unlearn.audits.runner import flat_metrics

        recorded = [dict(w) for r in results.values() for w in getattr(r, "warnings", [])]
        return flat_metrics(results), recorded
    return {k: float(v) for k, v in results.items() if _is_number(v)}, []


def _is_number(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _get(metrics: Mapping[str, float], key: str) -> float | None:
    value = metrics.get(key)
    return float(value) if value is not None and _is_number(value) else None


def _auc(metrics: Mapping[str, float]) -> tuple[float, float] | None:
    for auc_key, se_key in _AUC_KEYS:
        auc, se = _get(metrics, auc_key), _get(metrics, se_key)
        if auc is not None:
            return auc, (se if se is not None else 0.0)
    return None


def collapse_warnings(
    before: Mapping[str, float], after: Mapping[str, float]
) -> list[dict[str, str]]:
    """``collapse`` items: cross-sample cosine near 1, its spread lost, or RA/TA fallen."""
    found = []
    for key, split in _COSINE_KEYS:
        cos_a, cos_b = _get(after, key), _get(before, key)
        if cos_a is None:
            continue
        if cos_a >= COLLAPSE_COSINE:
            found.append(f"different {split} images have mean cosine {cos_a:.3f} (>= {COLLAPSE_COSINE})")
        elif cos_b is not None and (1 - cos_a) < COLLAPSE_SPREAD_RATIO * (1 - cos_b):
            found.append(
                f"the spread of {split} embeddings (1 - mean cosine) fell from {1 - cos_b:.3f} to "
                f"{1 - cos_a:.3f} (below {COLLAPSE_SPREAD_RATIO:g} of before)"
            )
    for key, name in (("ra", "retain"), ("ta", "test/holdout")):
        acc_b, acc_a = _get(before, key), _get(after, key)
        if acc_b is None or acc_a is None:
            continue
        drop = acc_b - acc_a
        n_b, n_a = _get(before, f"{key}_samples"), _get(after, f"{key}_samples")
        se = 0.0
        if n_b and n_a:
            pb, pa = acc_b / 100, acc_a / 100
            se = 100 * math.sqrt(pb * (1 - pb) / n_b + pa * (1 - pa) / n_a)
        margin = max(UTILITY_DROP_POINTS, Z * se)
        if drop > margin:
            found.append(
                f"{name} probe accuracy fell from {acc_b:.1f} to {acc_a:.1f} % "
                f"(by {drop:.1f} points, more than the {margin:.1f}-point margin)"
            )
    if not found:
        return []
    return [
        {
            "code": "collapse",
            "message": "The encoder looks broken, not unlearned ("
            + "; ".join(found)
            + "): none of the forgetting numbers is evidence of forgetting.",
        }
    ]


def membership_warnings(
    before: Mapping[str, float], after: Mapping[str, float]
) -> list[dict[str, str]]:
    """``no_membership_signal`` (before) and ``overshoot`` (after) from the forget-vs-holdout AUC.

    Sampling error: the AUC's Hanley-McNeil standard error (``forget_holdout_auc_se``, see
    :func:`lightly_unlearn.audits.membership.auc_standard_error`). A membership signal needs the
    AUC before unlearning above ``0.5 + Z * SE`` (one-sided: AUC below 0.5 is no signal either).
    """
    out = []
    b = _auc(before)
    if b is not None:
        auc, se = b
        if auc <= 0.5 + Z * se:
            out.append(
                {
                    "code": "no_membership_signal",
                    "message": (
                        f"Before unlearning the forget set was not distinguishable from "
                        f"never-seen images (forget-vs-holdout AUC {auc:.3f} ± {Z * se:.3f}, "
                        f"needs > {0.5 + Z * se:.3f}): there was no membership signal to remove, "
                        "so this audit cannot show forgetting."
                    ),
                }
            )
    a = _auc(after)
    if a is not None:
        auc, se = a
        limit = 0.5 - max(Z * se, OVERSHOOT_MIN_EFFECT)
        if auc < limit:
            out.append(
                {
                    "code": "overshoot",
                    "message": (
                        f"After unlearning the forget set aligns clearly less than never-seen "
                        f"images (forget-vs-holdout AUC {auc:.3f} < {limit:.3f}): it is "
                        "recognisable again, as the images the model was made to push away."
                    ),
                }
            )
    return out


def relearn_warnings(after: Mapping[str, float]) -> list[dict[str, str]]:
    """``relearned`` when the relearning test's AUC rose beyond its interval *and* the relearned
    AUC's interval lies above 0.5.

    Both intervals come from one paired percentile bootstrap
    (:func:`lightly_unlearn.audits.membership.compare_aucs`). The second condition keeps a
    model that merely came back from overshoot (AUC below 0.5 rising to 0.5) from the warning.
    """
    low_change = _get(after, "relearn_forget_holdout_auc_change_ci_low")
    low_auc = _get(after, "relearn_forget_holdout_auc_ci_low")
    if low_change is None or low_auc is None or not (low_change > 0 and low_auc > 0.5):
        return []
    auc_b = _get(after, "relearn_before_forget_holdout_auc") or float("nan")
    auc_a = _get(after, "relearn_forget_holdout_auc") or float("nan")
    high_change = _get(after, "relearn_forget_holdout_auc_change_ci_high") or float("nan")
    epochs = int(_get(after, "relearn_epochs") or 0)
    return [
        {
            "code": "relearned",
            "message": (
                f"After {epochs} epoch(s) of ordinary training of a copy on the retain set alone "
                f"(the forget images never shown), the forget set became recognisable again: "
                f"forget-vs-holdout AUC {auc_b:.3f} -> {auc_a:.3f} (change 95 % interval "
                f"[{low_change:+.3f}, {high_change:+.3f}], relearned AUC above 0.5). The "
                "information was hidden, not removed. A model retrained without the forget set "
                "is the reference for this test; benchmarks/unlearning.py measures it. To remove "
                f"it, unlearn with method '{RELEARN_RESISTANT_METHOD}' (fresh projection head and "
                "last backbone stage, then fine-tuning on the retain set: its relearned AUC stayed "
                "within noise of Retrain's in the benchmarks, at a tenth of Retrain's steps) or "
                "'retrain'."
            ),
        }
    ]


def drift_warnings(after: Mapping[str, float]) -> list[dict[str, str]]:
    """``holdout_drift`` when a positive forgetting score is within ``Z`` bootstrap standard
    errors of the holdout's own drift; ``no_holdout`` when there is no drift to compare with."""
    fs = next((v for k in _FS_KEYS if (v := _get(after, k)) is not None), None)
    if fs is None:
        return []
    beyond, se = _get(after, "forgetting_beyond_drift"), _get(after, "forgetting_beyond_drift_se")
    if beyond is None:
        if fs > 0:
            return [
                {
                    "code": "no_holdout",
                    "message": (
                        f"The forgetting score is {fs:+.4f}, but without never-seen images "
                        "(a holdout) it cannot be separated from the model changing on every "
                        "image; give a holdout to get a verdict."
                    ),
                }
            ]
        return []
    drift = _get(after, "holdout_drift_score") or 0.0
    se = se or 0.0
    if fs > 0 and beyond <= Z * se:
        return [
            {
                "code": "holdout_drift",
                "message": (
                    f"No evidence of forgetting beyond general drift: FS {fs:+.4f} vs holdout "
                    f"drift {drift:+.4f}, difference {beyond:+.4f} ± {Z * se:.4f} (95 %): "
                    "never-seen images changed about as much as yours."
                ),
            }
        ]
    return []


def order_warnings(items: Iterable[Mapping[str, str]]) -> list[dict[str, str]]:
    """De-duplicated, worst first (:data:`SEVERITY`), then in the order given."""
    seen, unique = set(), []
    for w in items:
        key = (w["code"], w["message"])
        if key not in seen:
            seen.add(key)
            unique.append({"code": str(w["code"]), "message": str(w["message"])})
    rank = {code: i for i, code in enumerate(SEVERITY)}
    return sorted(unique, key=lambda w: rank.get(w["code"], len(SEVERITY)))


def assess(
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any],
    extra_warnings: Iterable[Mapping[str, str]] = (),
) -> Verdict:
    """Warnings and a one-line verdict for one unlearning run.

    Args:
        before: Audit results on the model before unlearning: ``{audit name: AuditResult}`` or a
            flat ``{metric: value}`` mapping (``None`` if not measured).
        after: The same, after unlearning.
        extra_warnings: Further ``{"code", "message"}`` items (e.g. from the caller's checks).

    Returns:
        A :class:`Verdict`. ``line`` leads with the worst warning; it says "consistent with
        forgetting" only when no warning fired and the forgetting score exceeds the holdout
        drift by more than ``Z`` standard errors (or, without a forgetting score, when the
        forget-vs-holdout AUC moved from a signal to within sampling error of 0.5).
    """
    b, b_recorded = _flat(before)
    a, a_recorded = _flat(after)
    warnings = order_warnings(
        [
            *collapse_warnings(b, a),
            *membership_warnings(b, a),
            *relearn_warnings(a),
            *drift_warnings(a),
            *b_recorded,
            *a_recorded,
            *extra_warnings,
        ]
    )
    evidence = {
        k: v
        for k in (
            "forgetting_score",
            "clip_forgetting_score",
            "holdout_drift_score",
            "forgetting_beyond_drift",
            "forgetting_beyond_drift_se",
        )
        if (v := _get(a, k)) is not None
    }
    return Verdict(warnings, _line(b, a, warnings), evidence)


def _line(before: Mapping[str, float], after: Mapping[str, float], warnings: list) -> str:
    if warnings:
        worst = warnings[0]
        more = [w["code"] for w in warnings[1:]]
        tail = f" (also: {', '.join(dict.fromkeys(more))})" if more else ""
        return f"{worst['code'].upper()}: {worst['message']}{tail}"
    fs = next((v for k in _FS_KEYS if (v := _get(after, k)) is not None), None)
    if fs is not None:
        beyond = _get(after, "forgetting_beyond_drift")
        if fs <= 0:
            return f"No evidence of forgetting: forgetting score FS = {fs:+.4f} (<= 0)."
        if beyond is not None:
            se = _get(after, "forgetting_beyond_drift_se") or 0.0
            drift = _get(after, "holdout_drift_score") or 0.0
            return (
                f"Forgetting beyond general drift: FS {fs:+.4f} vs holdout drift {drift:+.4f}, "
                f"difference {beyond:+.4f} ± {Z * se:.4f} (95 %): consistent with forgetting."
            )
    auc_b, auc_a = _auc(before), _auc(after)
    if auc_a is not None:
        auc, se = auc_a
        if abs(auc - 0.5) <= Z * se and auc_b is None:
            return (
                f"No verdict: the forget set is indistinguishable from never-seen images (AUC "
                f"{auc:.3f}), but without a 'before' audit it cannot be shown it ever was not."
            )
        if abs(auc - 0.5) <= Z * se:
            return (
                f"Forget set now indistinguishable from never-seen images (forget-vs-holdout AUC "
                f"{auc_b[0]:.3f} -> {auc:.3f}, 0.5 ± {Z * se:.3f}): consistent with forgetting."
            )
        return (
            f"No evidence of forgetting: the forget set is still distinguishable from never-seen "
            f"images (forget-vs-holdout AUC {auc:.3f}, 0.5 ± {Z * se:.3f})."
        )
    return "No verdict: no forgetting score or forget-vs-holdout AUC was computed."
