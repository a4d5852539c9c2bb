"""CLIP audits: pair-alignment membership inference, retrieval, zero-shot, gap matrix.

CLIP is Radford et al., arXiv:2103.00020; the membership and alignment-matrix audits carry the
image audits of Alignment Calibration (Wang et al., arXiv:2406.03603) over to image-caption pairs.

All read :class:`~lightly_unlearn.audits.clip_features.CLIPFeatures` from
``inputs.cache["clip"]`` (built by :func:`~lightly_unlearn.audits.clip_features.compute_clip_inputs`);
every number is a percentage in ``[0, 100]`` unless stated.

* ``clip_mia`` — the EMIA analogue: a pair's score is ``cos(image_i, text_i)``; one
  accuracy-optimal threshold separates members (retain sample) from non-members (holdout);
  efficacy = % of forget pairs below it (compare to Retrain). Also the member/non-member AUC,
  the two-sided forget-vs-holdout AUC (0.5 = indistinguishable, below 0.5 = overshoot) with TPR
  at 1 % / 0.1 % FPR on the same scores, and the mean score gap.
* ``clip_retrieval`` — recall@1/@5, image→text and text→image, within each split (forget,
  retain, test) on galleries of the *same* size (the smallest split, at most ``max_gallery``),
  so the splits are comparable. Template captions repeat: retrieving a caption identical to the
  query's own counts as correct (and for text→image, any image with that caption).
* ``clip_zero_shot`` — accuracy of the nearest class prompt embedding (prompt templates) on each
  split, per class; for class forgetting also the accuracy on the forgotten classes' test pairs.
* ``clip_alignment_matrix`` — ``A_ij = cos(image_i, text_j)`` over forget pairs; with the
  ``before`` result the gap matrix ``G = A_before − A_after`` (heat map) and the forgetting score
  ``FS = mean(diag G) − mean(offdiag G)``.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lightly_unlearn.audits.alignment import diag_offdiag_means, forgetting_score
from lightly_unlearn.audits.base import Audit, AuditResult, Labeler, MetricInfo
from lightly_unlearn.audits.clip_features import PairFeatures, clip_features
from lightly_unlearn.audits.emia import EMIA_METRICS, emia_metrics
from lightly_unlearn.audits.features import AuditInputs
from lightly_unlearn.audits.figures import gap_figure, result_gap_figure, save_figure
from lightly_unlearn.errors import AuditInputError

#: EMIA's metric names -> the pair-alignment audit's (the rest get a ``clip_`` prefix).
_CLIP_MIA_NAMES = {
    "emia": "clip_mia",
    "emia_threshold": "clip_mia_threshold",
    "emia_attack_accuracy": "clip_mia_attack_accuracy",
    "emia_auc": "clip_mia_auc",
    "forget_holdout_auc": "clip_forget_holdout_auc",
    "alignment_level_gap": "clip_pair_alignment_gap",
    "alignment_retain": "clip_pair_alignment_retain",
    "alignment_forget": "clip_pair_alignment_forget",
    "alignment_holdout": "clip_pair_alignment_holdout",
}


def _clip_mia_name(key: str) -> str:
    return _CLIP_MIA_NAMES.get(key, f"clip_{key}")


class ClipPairMIA(Audit):
    """Pair-alignment membership inference (EMIA with ``cos(image, caption)`` as the score)."""

    name = "clip_mia"
    needs = frozenset({"clip"})
    metric_info = {
        _clip_mia_name(k): MetricInfo(
            v.description.replace("alignment score", "cos(image, caption)"), v.higher_is_better
        )
        for k, v in EMIA_METRICS.items()
        if not k.startswith("cross_cosine")
    }

    def __init__(self, max_samples: int = 10_000) -> None:
        self.max_samples = int(max_samples)

    def __call__(self, inputs: AuditInputs, before: AuditResult | None = None) -> AuditResult:
        feats = clip_features(inputs, self.name)
        if feats.retain is None or feats.holdout is None:
            raise AuditInputError(
                "clip_mia needs member pairs (retain) and non-member pairs (holdout: pass "
                "`holdout=` to ForgetRetainDataModule / compute_clip_inputs)."
            )
        size = min(len(feats.retain), len(feats.holdout), self.max_samples)
        m = emia_metrics(
            feats.retain.pair_scores()[:size].numpy(),
            feats.holdout.pair_scores()[:size].numpy(),
            feats.forget.pair_scores().numpy(),
        )
        return AuditResult(metrics={_clip_mia_name(k): v for k, v in m.items()})


def retrieval_ranks(query: Tensor, gallery: Tensor, query_ids: Tensor, gallery_ids: Tensor) -> Tensor:
    """Rank of the best correct gallery item per query (0 = retrieved first).

    ``correct(q, g) = query_ids[q] == gallery_ids[g]``; rank = number of *incorrect* gallery items
    scoring strictly higher than the best correct one (ties favour the query).
    """
    sim = query.double() @ gallery.double().T
    correct = query_ids[:, None] == gallery_ids[None, :]
    if not bool(correct.any(1).all()):
        raise ValueError("Some query has no correct item in the gallery.")
    best = sim.masked_fill(~correct, -torch.inf).max(1).values
    return ((sim > best[:, None]) & ~correct).sum(1)


def recall_at(ranks: Tensor, k: int) -> float:
    return 100.0 * float((ranks < k).double().mean())


def retrieval_metrics(pairs: PairFeatures, ks: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """Recall@k image→text and text→image of one split's pairs against each other."""
    ids = pairs.caption_ids
    i2t = retrieval_ranks(pairs.image, pairs.text, ids, ids)
    t2i = retrieval_ranks(pairs.text, pairs.image, ids, ids)
    out = {}
    for k in ks:
        out[f"i2t_r{k}"] = recall_at(i2t, k)
        out[f"t2i_r{k}"] = recall_at(t2i, k)
    return out


class ClipRetrieval(Audit):
    """Recall@1/@5 both directions on forget / retain / test galleries of equal size."""

    name = "clip_retrieval"
    needs = frozenset({"clip"})
    metric_info = {
        "retrieval_gallery_size": MetricInfo("pairs per retrieval gallery (same for every split)"),
        **{
            f"retrieval_{split}_{d}_r{k}": MetricInfo(
                f"recall@{k} (%), {'image→text' if d == 'i2t' else 'text→image'}, {split} pairs"
                + ("" if split != "forget" else " (compare to Retrain)"),
                None if split == "forget" else True,
            )
            for split in ("forget", "retain", "test")
            for d in ("i2t", "t2i")
            for k in (1, 5)
        },
    }

    def __init__(self, max_gallery: int = 1000, ks: tuple[int, ...] = (1, 5)) -> None:
        self.max_gallery = int(max_gallery)
        self.ks = tuple(ks)

    def __call__(self, inputs: AuditInputs, before: AuditResult | None = None) -> AuditResult:
        splits = clip_features(inputs, self.name).splits()
        n = min(min(len(p) for p in splits.values()), self.max_gallery)
        if n < max(self.ks):
            raise AuditInputError(f"Retrieval galleries need at least {max(self.ks)} pairs; got {n}.")
        metrics = {"retrieval_gallery_size": float(n)}
        for split, pairs in splits.items():
            for key, value in retrieval_metrics(pairs.subset(slice(0, n)), self.ks).items():
                metrics[f"retrieval_{split}_{key}"] = value
        return AuditResult(metrics=metrics)


class ClipZeroShot(Audit):
    """Zero-shot accuracy with prompt-template class embeddings, per split and per class.

    ``forget_classes``: classes forgotten as a whole; by default the classes present among the
    forget pairs but absent from the retain sample (none for random forgetting). For them
    ``zs_test_forget_classes`` (accuracy on their test pairs) and ``zs_test_other_classes``.
    """

    name = "clip_zero_shot"
    needs = frozenset({"clip", "labels"})
    metric_info = {
        "zs_forget": MetricInfo("zero-shot accuracy (%) on forget pairs (compare to Retrain)"),
        "zs_retain": MetricInfo("zero-shot accuracy (%) on retain pairs", True),
        "zs_test": MetricInfo("zero-shot accuracy (%) on test pairs", True),
        "zs_test_forget_classes": MetricInfo(
            "zero-shot accuracy (%) on test pairs of the forgotten classes"
        ),
        "zs_test_other_classes": MetricInfo(
            "zero-shot accuracy (%) on test pairs of the other classes", True
        ),
    }

    def __init__(self, forget_classes: list[int] | None = None) -> None:
        self.forget_classes = forget_classes

    def __call__(self, inputs: AuditInputs, before: AuditResult | None = None) -> AuditResult:
        feats = clip_features(inputs, self.name)
        if feats.class_text is None:
            raise AuditInputError(
                "clip_zero_shot needs class prompts: pass classnames= and templates= to "
                "compute_clip_inputs."
            )
        num_classes = feats.class_text.shape[0]
        result = AuditResult()
        preds: dict[str, tuple[Tensor, Tensor]] = {}
        for split, pairs in feats.splits().items():
            labelled = pairs.targets >= 0
            if not bool(labelled.any()):
                continue
            pred = (pairs.image[labelled] @ feats.class_text.T).argmax(1)
            target = pairs.targets[labelled]
            preds[split] = (pred, target)
            result.metrics[f"zs_{split}"] = 100.0 * float((pred == target).double().mean())
            per_class = np.full(num_classes, np.nan)
            for c in range(num_classes):
                sel = target == c
                if bool(sel.any()):
                    per_class[c] = 100.0 * float((pred[sel] == c).double().mean())
            result.arrays[f"per_class_{split}"] = per_class
        if not preds:
            raise AuditInputError("clip_zero_shot needs integer targets in the pairs.")
        forget_classes = self.forget_classes
        if forget_classes is None and feats.retain is not None:
            present = set(feats.forget.targets.tolist()) - {-1}
            forget_classes = sorted(present - set(feats.retain.targets.tolist()))
        if forget_classes and "test" in preds:
            pred, target = preds["test"]
            sel = torch.isin(target, torch.as_tensor(forget_classes))
            if bool(sel.any()):
                result.metrics["zs_test_forget_classes"] = 100.0 * float((pred[sel] == target[sel]).double().mean())
            if bool((~sel).any()):
                result.metrics["zs_test_other_classes"] = 100.0 * float((pred[~sel] == target[~sel]).double().mean())
        return result


def image_text_matrix(pairs: PairFeatures) -> Tensor:
    """``A_ij = cos(image_i, text_j)`` (rows: images, columns: captions)."""
    return (pairs.image.double() @ pairs.text.double().T).float()


class ClipAlignmentGap(Audit):
    """Image × caption alignment matrix of forget pairs; with ``before``, the gap matrix and FS."""

    name = "clip_alignment_matrix"
    needs = frozenset({"clip"})
    metric_info = {
        "clip_diag_alignment": MetricInfo("mean cos(image i, its own caption) over forget pairs"),
        "clip_offdiag_alignment": MetricInfo("mean cos(image i, caption j != i) over forget pairs"),
        "clip_forgetting_score": MetricInfo(
            "FS = mean(diag G) - mean(offdiag G), G = A_before - A_after on image × caption "
            "(> 0: forgotten)",
            True,
        ),
    }
    figures = ("gap_matrix",)

    def __init__(self, num_samples: int = 64) -> None:
        self.num_samples = int(num_samples)

    def figure(
        self,
        name: str,
        result: AuditResult,
        *,
        title: str,
        labeler: Labeler | None = None,
        verdict: Any = None,
    ) -> Any:
        """The image × caption gap-matrix heat map."""
        if name not in self.figures:
            return super().figure(name, result, title=title, labeler=labeler, verdict=verdict)
        return result_gap_figure(result, title, labeler, verdict, kind="clip")

    def __call__(self, inputs: AuditInputs, before: AuditResult | None = None) -> AuditResult:
        pairs = clip_features(inputs, self.name).forget.subset(slice(0, self.num_samples))
        if len(pairs) < 2:
            raise AuditInputError("The image-text alignment matrix needs at least 2 forget pairs.")
        a = image_text_matrix(pairs)
        diag, off = diag_offdiag_means(a)
        result = AuditResult(
            metrics={"clip_diag_alignment": diag, "clip_offdiag_alignment": off},
            arrays={"matrix": a.numpy(), "keys": pairs.keys.numpy()},
        )
        if before is not None:
            if not np.array_equal(np.asarray(before.arrays["keys"]), pairs.keys.numpy()):
                raise AuditInputError(
                    "The before and after matrices were computed on different forget pairs; audit "
                    "both models on the same pairs (same seed)."
                )
            g = torch.as_tensor(before.arrays["matrix"], dtype=torch.float32) - a
            result.arrays["gap_matrix"] = g.numpy()
            result.metrics["clip_forgetting_score"] = forgetting_score(g)
        return result


def save_clip_gap_heatmap(
    gap: np.ndarray, path: str | os.PathLike, title: str = "Image × caption alignment gap"
) -> str:
    """PNG heat map of ``G = A_before − A_after`` (rows images, columns captions, diagonal outlined)."""
    gap = np.asarray(gap, dtype=float)
    return str(save_figure(gap_figure(gap, title=title, fs=forgetting_score(gap), kind="clip"), path))
