"""Which samples each batch holds: every forget sample is unlearned in every epoch.

A plain shuffled loader with ``drop_last=True`` drops the last incomplete batch, and a forget
sample landing there is silently not unlearned that epoch (with one forget sample and 400 samples
at batch 256 that happened in 8 of 20 epochs). :class:`ForgetCoveringSampler` plans each epoch
instead: every forget sample is an anchor in exactly one batch (on exactly one device), the
forget samples are spread evenly over the batches, and only retain samples are left out to fill
whole, equal batches. The plan depends only on ``(seed, epoch)`` and is the same on every rank,
so resumed and multi-device runs see the same batches.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset, DistributedSampler


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


def _spread(items: Sequence[int], parts: int) -> list[list[int]]:
    """``items`` dealt round-robin into ``parts`` lists (sizes differ by at most one)."""
    return [list(items[p::parts]) for p in range(parts)]


class ForgetCoveringSampler(DistributedSampler):
    """A ``DistributedSampler`` whose epoch covers every forget sample exactly once.

    Yields this device's positions in ``dataset`` batch after batch (use it with
    ``DataLoader(batch_size=layout.batch_size, drop_last=True)``). Forget positions are dealt
    round-robin to devices and then evenly to batches; retain positions fill the remaining slots
    (disjoint across devices; reused only when a forget-only stream needs more filler than there
    are retain samples). Lightning keeps a ``DistributedSampler`` it is given and calls
    :meth:`set_epoch`.

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
        forget: Sequence[int],
        retain: Sequence[int],
        layout: BatchLayout,
        *,
        num_replicas: int = 1,
        rank: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.forget_positions = torch.as_tensor(list(forget), dtype=torch.long)
        self.retain_positions = torch.as_tensor(list(retain), dtype=torch.long)
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

    def plan(self) -> list[list[int]]:
        """This device's batches for the current epoch, as lists of positions."""
        g = torch.Generator()
        g.manual_seed(self.seed + self.epoch)
        forget = self.forget_positions[torch.randperm(len(self.forget_positions), generator=g)]
        retain = self.retain_positions[torch.randperm(len(self.retain_positions), generator=g)]
        mine = forget[self.rank :: self.num_replicas].tolist()
        # retain fillers: each device takes its own contiguous share of the shuffled retain set
        need = [
            self.layout.samples - len(forget[r :: self.num_replicas])
            for r in range(self.num_replicas)
        ]
        start = sum(need[: self.rank])
        fill = [
            int(retain[(start + i) % len(retain)]) for i in range(need[self.rank])
        ] if need[self.rank] else []
        batches = []
        offset = 0
        for part in _spread(mine, self.layout.num_batches):
            take = self.layout.batch_size - len(part)
            batch = part + fill[offset : offset + take]
            offset += take
            order = torch.randperm(len(batch), generator=g).tolist()
            batches.append([batch[i] for i in order])
        return batches

    def __iter__(self) -> Iterator[int]:
        for batch in self.plan():
            yield from batch
