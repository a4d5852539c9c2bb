"""Classifier-level membership inference (CMIA) on the probe's true-label confidence.

The confidence-based attack used to evaluate unlearning by Jia et al. (arXiv:2304.04934) and
Alignment Calibration (Wang et al., arXiv:2406.03603).

The only feature is the linear probe's softmax probability of the true label. An
``SVC(C=3, kernel="rbf", gamma="auto")`` is fit on retain-sample confidences (members, label 1)
vs holdout confidences (non-members, label 0); ``CMIA`` is the % of forget samples it predicts
non-member (higher = more forgotten; compare to Retrain, not to 100).
"""

from __future__ import annotations

import numpy as np
from sklearn.svm import SVC

from lightly_unlearn.audits.base import Audit, AuditResult, MetricInfo, labelled, require_inputs
from lightly_unlearn.audits.features import AuditInputs
from lightly_unlearn.audits.probe import ProbeMode, get_probe


def cmia_efficacy(
    member_conf: np.ndarray, nonmember_conf: np.ndarray, forget_conf: np.ndarray
) -> float:
    """% of ``forget_conf`` that an RBF SVC (C=3, gamma="auto") fit on members vs non-members
    classifies as non-member."""
    members = np.asarray(member_conf, dtype=np.float64).reshape(-1, 1)
    nonmembers = np.asarray(nonmember_conf, dtype=np.float64).reshape(-1, 1)
    if len(members) == 0 or len(nonmembers) == 0:
        raise ValueError("CMIA needs at least one member and one non-member confidence.")
    x = np.concatenate([members, nonmembers])
    y = np.concatenate([np.ones(len(members)), np.zeros(len(nonmembers))])
    svc = SVC(C=3, kernel="rbf", gamma="auto").fit(x, y)
    pred = svc.predict(np.asarray(forget_conf, dtype=np.float64).reshape(-1, 1))
    return 100.0 * float(np.mean(pred == 0))


class CMIA(Audit):
    """CMIA efficacy (%) from the linear probe's confidences; reuses the probe fitted in this run.

    Only labelled samples are used (a true-label confidence needs a true label): members are the
    labelled retain sample, non-members the labelled holdout, and only labelled forget samples
    are judged. A split without labels skips CMIA with a ``missing_labels`` warning (an
    unlabelled sample would otherwise get confidence 0 and look like a non-member); a partly
    labelled one adds a ``partly_labelled`` warning. Members and non-members are truncated to
    the same size (at most ``max_samples``). ``fit_kwargs`` are the probe's arguments; the probe
    is shared with ``LinearProbe`` only when they match.
    """

    name = "cmia"
    note = (
        "CMIA: % of forget images a classifier-level membership attack (on the linear probe's "
        "confidence) judges non-members; higher means more forgotten, compared to Retrain's, "
        "never to 100."
    )
    needs = frozenset({"retain", "clean", "holdout", "labels"})
    metric_info = {
        "cmia": MetricInfo("CMIA efficacy: % of forget samples predicted non-member"),
        "cmia_samples": MetricInfo("labelled forget samples judged by CMIA"),
    }

    def __init__(
        self, probe_mode: ProbeMode = "logreg", max_samples: int = 10_000, **fit_kwargs
    ) -> None:
        self.probe_mode = probe_mode
        self.max_samples = int(max_samples)
        self.fit_kwargs = fit_kwargs
        if probe_mode == "sgd_augmented":
            self.needs = frozenset({"retain", "clean", "views", "holdout", "labels"})

    def __call__(self, inputs: AuditInputs, before: AuditResult | None = None) -> AuditResult:
        require_inputs(self, inputs)
        assert inputs.holdout is not None
        result = AuditResult()
        parts = [
            labelled(split, name, result, "CMIA")
            for name, split in (
                ("retain", inputs.retain),
                ("holdout", inputs.holdout),
                ("forget", inputs.forget),
            )
        ]
        if any(p is None for p in parts):
            return result
        retain, holdout, forget = parts
        probe = get_probe(inputs, self.probe_mode, **self.fit_kwargs)
        size = min(len(retain), len(holdout), self.max_samples)

        def conf(split, n=None):
            sub = split if n is None else split.subset(slice(0, n))
            return probe.true_label_confidence(sub.clean.numpy(), sub.targets.numpy())

        result.metrics["cmia"] = cmia_efficacy(conf(retain, size), conf(holdout, size), conf(forget))
        result.metrics["cmia_samples"] = float(len(forget))
        return result
