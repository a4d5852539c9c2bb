"""Which samples each batch holds: every forget sample is unlearned in every epoch.

A plain shuffled loader with ``drop_last=True`` drops the last incomplete batch, and a forget
sample landing there is silently not unlearned that epoch (with one forget sample and 400 samples
at batch 256 that happened in 8 of 20 epochs). :class:`ForgetCoveringSampler` plans each epoch
instead: every forget sample is an anchor in exactly one batch (on exactly one device), the
forget samples are spread evenly over the batches, and only retain samples are left out to fill
whole, equal batches. The plan depends only on ``(seed, epoch)`` and is the same on every rank,
so resumed and multi-device runs see the same batches.

Plans are tensors built with a handful of vectorised operations (one ``randperm`` per batch is
the only loop), and positions are handed to the loader a chunk at a time: no Python list of the
whole dataset is built, and planning an epoch of a million samples takes a fraction of a second
(``benchmarks/scale.py``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, DistributedSampler

from lightly_unlearn.data.validation import check_batches

#: Positions converted to Python ints at a time while a plan is iterated.
_CHUNK = 16_384


@dataclass(frozen=True)
class BatchLayout:
    """How many batches of which size each device gets per epoch."""

    num_batches: int
    batch_size: int

    @property
    def samples(self) -> int:
        return self.num_batches * self.batch_size


def mixed_layout(per_rank: int, max_forget: int, batch_size: int) -> BatchLayout:
    """Equal batches over ``per_rank`` samples that hold all ``max_forget`` forget samples.

    Normally ``floor(per_rank / batch_size)`` batches of ``batch_size``. When the forget share
    does not fit into those (a forget set close to the whole dataset), more batches are used and
    the batch size shrinks to the largest equal size that still holds every forget sample.
    """
    if per_rank < 2:
        raise ValueError(f"Each device needs at least 2 samples per epoch; it has {per_rank}.")
    size = max(2, min(batch_size, per_rank))
    count = max(per_rank // size, math.ceil(max_forget / size), 1)
    if count * size <= per_rank:
        return BatchLayout(count, size)
    for count in range(math.ceil(max_forget / size), per_rank // 2 + 1):
        size = per_rank // count
        if count * size >= max_forget:
            return BatchLayout(count, size)
    raise ValueError(  # unreachable with at least one retain sample per device
        f"Cannot place {max_forget} forget samples into equal batches of at least 2 from "
        f"{per_rank} samples per device."
    )


def forget_layout(max_forget: int, batch_size: int, forget_batch_size: int | None) -> BatchLayout:
    """Batches for a forget-only stream: sized from the forget set, at least 2 samples each.

    ``forget_batch_size=None`` means ``min(batch_size, forget samples per device)``. Slots the
    forget samples do not fill (a single forget sample, or a remainder) are filled with retain
    samples whose rows the method does not count; they only serve as negatives.
    """
    size = forget_batch_size if forget_batch_size is not None else min(batch_size, max_forget)
    size = max(2, int(size))
    return BatchLayout(max(1, math.ceil(max_forget / size)), size)


def stream_layout(
    mode: str, num_samples: int, num_forget: int, batch_size: int, forget_batch_size: int | None,
    world: int,
) -> BatchLayout:
    """Batches per device per epoch and their size for a stream (``ForgetRetainDataModule.layout``).

    * ``"all"``: ``batch_size`` (raises if the dataset cannot fill one batch per device);
    * ``"retain"``: ``min(batch_size, retain samples per device)``, last partial batch dropped;
    * ``"mixed"``: every forget sample in exactly one batch per epoch, only retain samples
      left out (:func:`mixed_layout`);
    * ``"forget"``: batches sized from the forget set, completed with retain samples
      (:func:`forget_layout`).
    """
    n_retain = num_samples - num_forget
    per_rank_forget = math.ceil(num_forget / world)
    if mode == "all":
        per_rank = num_samples // world
        check_batches(per_rank, batch_size, f"per-device ({world} devices) training")
        return BatchLayout(per_rank // batch_size, batch_size)
    if mode == "retain":
        per_rank = n_retain // world
        if per_rank < 2:
            raise ValueError(
                f"The retain set has {n_retain} sample(s) ({per_rank} per device): a method "
                "that trains on retain samples only needs at least 2 per device for a "
                "contrastive batch. Forget fewer samples, or use a method that trains on the "
                "forget set (gradient_ascent, neggrad, ac)."
            )
        check_batches(per_rank, min(batch_size, per_rank), f"per-device ({world} devices) retain")
        size = min(batch_size, per_rank)
        return BatchLayout(per_rank // size, size)
    if num_forget == 0:
        raise ValueError(f"The {mode!r} stream needs forget samples; the forget set is empty.")
    if n_retain == 0:
        raise ValueError(
            f"The {mode!r} stream needs at least one retain sample (as negatives or to fill "
            "batches); the forget set is the whole dataset."
        )
    check_batches(max(batch_size, 2), batch_size, "training")  # batch_size >= 2
    if mode == "forget":
        return forget_layout(per_rank_forget, batch_size, forget_batch_size)
    return mixed_layout(num_samples // world, per_rank_forget, batch_size)


def as_positions(positions: Sequence[int] | Tensor | np.ndarray) -> Tensor:
    """Positions as a flat ``int64`` tensor (a tensor or array is not copied when it is one)."""
    if isinstance(positions, Tensor):
        return positions.detach().to(torch.long).flatten()
    if isinstance(positions, range):
        return torch.arange(positions.start, positions.stop, positions.step, dtype=torch.long)
    return torch.from_numpy(np.asarray(positions, dtype=np.int64).reshape(-1))


def iterate_plan(plan: Tensor) -> Iterator[int]:
    """The positions of a plan (flattened: batch after batch) as Python ints, a chunk at a time."""
    for chunk in plan.flatten().split(_CHUNK):
        yield from chunk.tolist()


class ShuffledSampler(DistributedSampler):
    """``DistributedSampler(shuffle=True, drop_last=True)`` that yields the same indices without
    building a Python list of the whole dataset each epoch (it permutes a tensor and hands out
    a chunk at a time)."""

    def __init__(
        self, dataset: Dataset, *, num_replicas: int = 1, rank: int = 0, seed: int = 0
    ) -> None:
        super().__init__(
            dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=True
        )

    def order(self) -> Tensor:
        """This device's indices for the current epoch."""
        g = torch.Generator()
        g.manual_seed(self.seed + self.epoch)
        perm = torch.randperm(len(self.dataset), generator=g)  # type: ignore[arg-type]
        return perm[self.rank : self.total_size : self.num_replicas]

    def __iter__(self) -> Iterator[int]:
        return iterate_plan(self.order())


class ForgetCoveringSampler(DistributedSampler):
    """A ``DistributedSampler`` whose epoch covers every forget sample exactly once.

    Yields this device's positions in ``dataset`` batch after batch (use it with
    ``DataLoader(batch_size=layout.batch_size, drop_last=True)``). Forget positions are dealt
    round-robin to devices and then evenly to batches; retain positions fill the remaining slots
    (disjoint across devices; reused only when a forget-only stream needs more filler than there
    are retain samples). Lightning keeps a ``DistributedSampler`` it is given and calls
    :meth:`set_epoch`.

    Retain fillers come from a fresh permutation of the whole retain set each epoch (the mixed
    stream, whose fillers are nearly all retain samples); :class:`ForgetOnlySampler` draws only
    the few fillers a forget-only stream needs.

    Args:
        dataset: The training set the positions index into.
        forget: Positions of forget samples.
        retain: Positions of retain samples (fillers).
        layout: Batches per device and their size (see :func:`mixed_layout`, :func:`forget_layout`).
        num_replicas, rank, seed: As in ``DistributedSampler``.
    """

    def __init__(
        self,
        dataset: Dataset,
        forget: Sequence[int] | Tensor,
        retain: Sequence[int] | Tensor,
        layout: BatchLayout,
        *,
        num_replicas: int = 1,
        rank: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.forget_positions = as_positions(forget)
        self.retain_positions = as_positions(retain)
        self.layout = layout
        per_rank_forget = math.ceil(len(self.forget_positions) / num_replicas)
        if per_rank_forget > layout.samples:
            raise ValueError(
                f"{per_rank_forget} forget samples per device do not fit into {layout.num_batches} "
                f"batches of {layout.batch_size}."
            )
        if len(self.retain_positions) == 0 and layout.samples * num_replicas > len(self.forget_positions):
            raise ValueError("Filling batches needs at least one retain sample; none is left.")
        self.num_samples = layout.samples
        self.total_size = layout.samples * num_replicas

    def __len__(self) -> int:
        return self.layout.samples

    def _forget_share(self, rank: int) -> int:
        """How many forget samples device ``rank`` holds (dealt round-robin)."""
        return len(range(rank, len(self.forget_positions), self.num_replicas))

    def _fillers(self, g: torch.Generator, start: int, count: int, total: int) -> Tensor:
        """Retain positions ``start .. start + count`` of this epoch's ``total`` fillers (all
        devices' fillers, device after device)."""
        n = len(self.retain_positions)
        perm = torch.randperm(n, generator=g)
        if start + count <= n:
            return self.retain_positions[perm[start : start + count]]
        return self.retain_positions[perm[torch.arange(start, start + count) % n]]

    def batches(self) -> Tensor:
        """This device's batches for the current epoch: a ``(num_batches, batch_size)`` tensor of
        positions."""
        g = torch.Generator()
        g.manual_seed(self.seed + self.epoch)
        world, rank = self.num_replicas, self.rank
        nb, size = self.layout.num_batches, self.layout.batch_size
        forget = self.forget_positions[torch.randperm(len(self.forget_positions), generator=g)]
        need = [self.layout.samples - self._forget_share(r) for r in range(world)]
        fill = self._fillers(g, sum(need[:rank]), need[rank], sum(need))
        mine = forget[rank::world]
        # Forget sample j goes to batch j % nb at slot j // nb (round-robin): the first `extra`
        # batches hold q + 1 of them, the others q. Fillers take the remaining slots, batch after batch.
        q, extra = divmod(len(mine), nb)
        plan = torch.empty(nb, size, dtype=torch.long)
        plan[:, :q] = mine[: q * nb].view(q, nb).T
        head = 0
        if extra:
            plan[:extra, q] = mine[q * nb :]
            head = extra * (size - q - 1)
            plan[:extra, q + 1 :] = fill[:head].view(extra, size - q - 1)
        plan[extra:, q:] = fill[head:].view(nb - extra, size - q)
        order = torch.stack([torch.randperm(size, generator=g) for _ in range(nb)])
        return plan.gather(1, order)

    def plan(self) -> list[list[int]]:
        """This device's batches for the current epoch, as lists of positions (see :meth:`batches`)."""
        return self.batches().tolist()

    def __iter__(self) -> Iterator[int]:
        return iterate_plan(self.batches())


class ForgetOnlySampler(ForgetCoveringSampler):
    """:class:`ForgetCoveringSampler` for the forget-only stream (gradient ascent).

    Its batches are forget samples plus the few retain samples that complete them (at most one
    batch's worth per device). Those fillers are drawn without replacement from the retain set
    without permuting it: an epoch's cost does not grow with the retain set.
    """

    def _fillers(self, g: torch.Generator, start: int, count: int, total: int) -> Tensor:
        n = len(self.retain_positions)
        if 2 * total > n:  # a retain set not much larger than the fillers: permute it
            return super()._fillers(g, start, count, total)
        drawn = np.empty(0, dtype=np.int64)
        while len(drawn) < total:  # distinct draws, in the order drawn
            more = torch.randint(n, (2 * (total - len(drawn)),), generator=g).numpy()
            joined = np.concatenate([drawn, more])
            _, first = np.unique(joined, return_index=True)
            drawn = joined[np.sort(first)]
        return self.retain_positions[torch.from_numpy(drawn[start : start + count])]
