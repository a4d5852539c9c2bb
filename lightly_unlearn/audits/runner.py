"""Run several audits on one set of features: each feature kind is computed once for all.

:func:`compute_inputs` embeds a seeded sample of each split (one clean pass if any audit reads
``clean``, ``K`` augmented passes if any reads ``views``); :func:`run_audits` then calls every
audit on the shared :class:`AuditInputs`. Under multi-device training pass ``rank``,
``world_size`` and ``all_gather``: each rank embeds a strided shard, features are gathered and
de-duplicated by key, and the audits are pure functions of the gathered tensors.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from lightly_unlearn import registry
from lightly_unlearn.audits.base import Audit, AuditResult
from lightly_unlearn.audits.features import (
    AuditInputs,
    EmbedFn,
    SplitFeatures,
    extract_features,
    gather_split,
    shard,
    split_code,
)
from lightly_unlearn.errors import AuditInputError

DEFAULT_AUDITS = ("emia", "linear_probe", "cmia", "alignment_matrix")


def resolve_audits(audits: Sequence[str | Audit]) -> list[Audit]:
    """Names (through the ``lightly_unlearn.audits`` entry points) or instances -> instances."""
    out = []
    for audit in audits:
        if isinstance(audit, str):
            obj = registry.load("audit", audit)
            audit = obj() if isinstance(obj, type) else obj
        if not callable(audit) or not hasattr(audit, "name"):
            raise TypeError(
                f"{audit!r} is not an audit: pass a registered name "
                f"({', '.join(registry.available('audit'))}) or an Audit instance."
            )
        out.append(audit)
    names = [a.name for a in out]
    if len(set(names)) != len(names):
        raise ValueError(f"Audit names must be unique; got {names}.")
    return out


def needs_of(audits: Sequence[Audit]) -> frozenset[str]:
    """Union of what the audits read."""
    needs: set[str] = set()
    for audit in audits:
        needs |= set(getattr(audit, "needs", ()))
    return frozenset(needs)


def sample_keys(n: int, num_samples: int, seed: int, split: str) -> Tensor:
    """A seeded random subset of ``range(n)`` of size ``min(n, num_samples)``, fixed per split."""
    offset = split_code(split, default=3)
    gen = torch.Generator().manual_seed(int(seed) * 4 + offset)
    return torch.randperm(n, generator=gen)[: min(n, int(num_samples))]


def compute_inputs(
    embed_fn: EmbedFn,
    needs: frozenset[str],
    *,
    forget: Dataset,
    retain: Dataset | None = None,
    holdout: Dataset | None = None,
    eval_transform: Callable[[Any], Tensor] | None = None,
    view_transform: Callable[[Any], Tensor] | None = None,
    num_views: int = 10,
    num_samples: int = 10_000,
    seed: int = 0,
    batch_size: int = 256,
    module: nn.Module | None = None,
    device: torch.device | str | None = None,
    rank: int = 0,
    world_size: int = 1,
    all_gather: Callable[[Tensor], Tensor] | None = None,
    progress: Callable[[int], Any] | None = None,
    num_workers: int = 0,
) -> AuditInputs:
    """Embed what ``needs`` asks for, once, for each split (see module docstring); images are
    read and augmented in ``num_workers`` DataLoader workers (see :func:`extract_features`)."""
    want_clean, want_views = "clean" in needs, "views" in needs
    if want_clean and eval_transform is None:
        raise AuditInputError("Clean features are needed: pass eval_transform.")
    if want_views and view_transform is None:
        raise AuditInputError("Augmented views are needed: pass view_transform.")
    if world_size > 1 and all_gather is None:
        raise ValueError("world_size > 1 needs all_gather (e.g. trainer.strategy.all_gather).")

    def one(split: str, dataset: Dataset | None) -> SplitFeatures | None:
        if dataset is None:
            return None
        keys = sample_keys(len(dataset), num_samples, seed, split)
        order = keys.clone()
        feats = extract_features(
            embed_fn,
            dataset,
            keys=shard(keys, rank, world_size),
            eval_transform=eval_transform if want_clean else None,
            view_transform=view_transform if want_views else None,
            num_views=num_views,
            seed=seed,
            split=split,
            batch_size=batch_size,
            module=module,
            device=device,
            progress=progress,
            num_workers=num_workers,
        )
        feats = gather_split(feats, all_gather or (lambda t: t[None]), world_size)
        # back to the seeded sample order (dedupe sorted by key)
        position = {int(k): i for i, k in enumerate(feats.keys.tolist())}
        return feats.subset([position[int(k)] for k in order.tolist()])

    want_retain = bool({"retain", "labels"} & needs)
    return AuditInputs(
        retain=one("retain", retain) if want_retain else None,
        forget=one("forget", forget),
        holdout=one("holdout", holdout) if "holdout" in needs or holdout is not None else None,
    )


def run_audits(
    audits: Sequence[Audit],
    inputs: AuditInputs,
    before: Mapping[str, AuditResult] | None = None,
) -> dict[str, AuditResult]:
    """Call every audit on the shared inputs; ``before`` maps audit names to earlier results."""
    before = before or {}
    return {audit.name: audit(inputs, before=before.get(audit.name)) for audit in audits}


def flat_metrics(results: Mapping[str, AuditResult]) -> dict[str, float]:
    """``{metric: value}`` over all audits (metric names are unique across built-in audits; a
    clash is prefixed with the audit name)."""
    out: dict[str, float] = {}
    for name, result in results.items():
        for key, value in result.metrics.items():
            out[f"{name}/{key}" if key in out else key] = float(value)
    return out
