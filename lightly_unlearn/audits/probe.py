"""Linear probe on frozen backbone features: RA, TA, UA (the utility and forget accuracies of
unlearning benchmarks, e.g. Jia et al., arXiv:2304.04934).

**Not the reference protocol.** The reference trains a linear layer for 100 epochs of SGD
(lr 1.0, cosine) on freshly augmented images. The default here, ``mode="logreg"``, fits
scikit-learn's ``LogisticRegression`` on *cached clean* features (standardised): seconds instead
of 100 passes, and deterministic. ``mode="sgd_augmented"`` is the closer variant: a linear layer
trained with SGD (lr 1.0, momentum 0.9, cosine schedule) on the ``K`` cached *augmented* view
features of every retain sample (no extra forward passes; the reference sees a new augmentation
every epoch, this one cycles through ``K``). Both are evaluated on clean features.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from lightly_unlearn.audits.base import (
    Audit,
    AuditResult,
    MetricInfo,
    labelled,
    require_inputs,
)
from lightly_unlearn.audits.features import AuditInputs
from lightly_unlearn.errors import AuditInputError

ProbeMode = Literal["logreg", "sgd_augmented"]


@dataclass
class FittedProbe:
    """A fitted linear head: ``proba(features)`` gives class probabilities over ``classes``."""

    scaler: StandardScaler
    classes: np.ndarray
    weight: np.ndarray  # (num_classes, d) on standardised features
    bias: np.ndarray

    def proba(self, features: np.ndarray) -> np.ndarray:
        logits = self.scaler.transform(np.asarray(features, dtype=np.float64)) @ self.weight.T
        logits = logits + self.bias
        if logits.shape[1] == 1:  # binary LogisticRegression stores one row
            logits = np.concatenate([np.zeros_like(logits), logits], axis=1)
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def accuracy(self, features: np.ndarray, targets: np.ndarray) -> float:
        """Top-1 accuracy in % (labels never seen in training count as wrong)."""
        pred = self.classes[self.proba(features).argmax(axis=1)]
        return 100.0 * float(np.mean(pred == np.asarray(targets)))

    def true_label_confidence(self, features: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """Softmax probability of each sample's true label (0 for labels unseen in training)."""
        p = self.proba(features)
        index = {c: i for i, c in enumerate(self.classes.tolist())}
        cols = np.array([index.get(int(t), -1) for t in np.asarray(targets)])
        conf = p[np.arange(len(p)), np.clip(cols, 0, None)]
        return np.where(cols >= 0, conf, 0.0)


def fit_probe(
    features: np.ndarray,
    targets: np.ndarray,
    *,
    mode: ProbeMode = "logreg",
    C: float = 1.0,
    max_iter: int = 1000,
    epochs: int = 100,
    lr: float = 1.0,
    seed: int = 0,
) -> FittedProbe:
    """Fit a linear head. ``features`` is ``(n, d)`` for ``logreg`` or ``(n, K, d)`` views for
    ``sgd_augmented`` (each view is one training example with its sample's label)."""
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(targets)
    if len(np.unique(y)) < 2:
        raise ValueError("The linear probe needs retain samples of at least two classes.")
    if mode == "sgd_augmented":
        if x.ndim != 3:
            raise ValueError("mode='sgd_augmented' needs view features of shape (n, K, d).")
        y = np.repeat(y, x.shape[1])
        x = x.reshape(-1, x.shape[-1])
    scaler = StandardScaler().fit(x)
    xs = scaler.transform(x)
    if mode == "logreg":
        clf = LogisticRegression(C=C, max_iter=max_iter).fit(xs, y)
        return FittedProbe(scaler, clf.classes_, clf.coef_, clf.intercept_)
    if mode != "sgd_augmented":
        raise ValueError(f"Unknown probe mode {mode!r}; use 'logreg' or 'sgd_augmented'.")
    classes, yi = np.unique(y, return_inverse=True)
    gen = torch.Generator().manual_seed(seed)
    head = torch.nn.Linear(xs.shape[1], len(classes)).double()
    opt = torch.optim.SGD(head.parameters(), lr=lr, momentum=0.9)
    xt, yt = torch.from_numpy(xs), torch.from_numpy(yi)
    batch = 256
    steps = epochs * math.ceil(len(xt) / batch)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps))
    )
    for _ in range(epochs):
        for idx in torch.randperm(len(xt), generator=gen).split(batch):
            loss = torch.nn.functional.cross_entropy(head(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return FittedProbe(scaler, classes, head.weight.detach().numpy(), head.bias.detach().numpy())


def probe_cache_key(mode: ProbeMode, fit_kwargs: dict) -> str:
    """Cache key of a probe: its mode *and* every fit argument (different ``C`` -> different probe)."""
    args = ",".join(f"{k}={fit_kwargs[k]!r}" for k in sorted(fit_kwargs))
    return f"probe/{mode}/{args}"


def get_probe(inputs: AuditInputs, mode: ProbeMode = "logreg", **kwargs) -> FittedProbe:
    """The probe of this audit run, fitted once per ``(mode, arguments)`` on the *labelled*
    retain samples and shared (e.g. by CMIA, when it asks for the same arguments)."""
    key = probe_cache_key(mode, kwargs)
    if key not in inputs.cache:
        r = inputs.retain
        r = r.subset(torch.nonzero(r.targets >= 0).flatten())
        if len(r) == 0:
            raise AuditInputError(
                "The linear probe trains on retain labels, but no retain sample has one "
                "(targets -1). Use a dataset whose items are (image, target), or drop the "
                "label-based audits (linear_probe, cmia)."
            )
        feats = r.clean if mode == "logreg" else r.views
        inputs.cache[key] = fit_probe(feats.numpy(), r.targets.numpy(), mode=mode, **kwargs)
    return inputs.cache[key]


class LinearProbe(Audit):
    """RA / TA / UA (%) of a linear head trained on retain labels over frozen backbone features.

    ``RA`` on the retain sample it was trained on, ``TA`` on holdout (the test split; omitted
    without one), ``UA`` on forget. Only labelled samples (target ``>= 0``) are fitted or
    scored: a partly labelled split is scored on its labelled part (``ra_samples``,
    ``ta_samples``, ``ua_samples`` say how many, and a ``partly_labelled`` warning is recorded);
    a split without labels has its accuracy skipped with a ``missing_labels`` warning. See the
    module docstring for how this differs from the reference's 100-epoch augmented SGD probe.
    """

    name = "linear_probe"
    needs = frozenset({"retain", "clean", "labels"})
    metric_info = {
        "ra": MetricInfo("linear probe accuracy on retain (%)", True),
        "ta": MetricInfo("linear probe accuracy on holdout/test (%)", True),
        "ua": MetricInfo("linear probe accuracy on forget (%) (compare to Retrain)"),
        "ra_samples": MetricInfo("labelled retain samples scored for RA"),
        "ta_samples": MetricInfo("labelled holdout samples scored for TA"),
        "ua_samples": MetricInfo("labelled forget samples scored for UA"),
    }

    def __init__(self, mode: ProbeMode = "logreg", **fit_kwargs) -> None:
        self.mode = mode
        self.fit_kwargs = fit_kwargs
        if mode == "sgd_augmented":
            self.needs = frozenset({"retain", "clean", "views", "labels"})
        how = (
            "logistic regression on cached clean backbone features (the fast default)"
            if mode == "logreg"
            else "SGD on the K cached augmented views of each retain image, cycled"
        )
        self.note = (
            f"Linear probe: {how}, not the reference's 100-epoch augmented SGD probe; "
            "accuracies are compared to Retrain's."
        )

    def __call__(self, inputs: AuditInputs, before: AuditResult | None = None) -> AuditResult:
        require_inputs(self, inputs)
        probe = get_probe(inputs, self.mode, **self.fit_kwargs)
        result = AuditResult()
        splits = [("ra", "retain", inputs.retain), ("ua", "forget", inputs.forget)]
        h = inputs.holdout
        if h is not None and h.clean is not None:
            splits.append(("ta", "holdout", h))
        for metric, name, split in splits:
            part = labelled(split, name, result, metric.upper())
            if part is None:
                continue
            result.metrics[metric] = probe.accuracy(part.clean.numpy(), part.targets.numpy())
            result.metrics[f"{metric}_samples"] = float(len(part))
        return result
