"""Which samples of a batch are forget samples, and whether an epoch served every one of them.

A deletion request is honoured only if every forget sample is unlearned in every epoch. The
forget keys are kept sorted: a batch's membership is one ``searchsorted`` lookup
(``O(B log F)`` for ``B`` keys and ``F`` forget samples) and marks the matched positions as
seen, so the per-batch cost does not grow with the forget set; only the epoch-end count reads
all ``F`` marks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor

from lightly_unlearn.errors import ForgetCoverageError

if TYPE_CHECKING:
    import lightning.pytorch as pl


class ForgetCoverage:
    """Forget membership per batch and forget samples served per epoch (all ranks)."""

    def __init__(self) -> None:
        self.keys = torch.zeros(0, dtype=torch.long)  # sorted forget keys
        self.seen = torch.zeros(0, dtype=torch.int32)  # per sorted key: times served this epoch
        self.batches = 0

    def start(self, forget_keys: Tensor, device: torch.device | str) -> None:
        """Track ``forget_keys`` (sample keys, any order) on ``device``."""
        self.keys = torch.sort(torch.as_tensor(forget_keys, dtype=torch.long)).values.to(device)
        self.seen = torch.zeros(len(self.keys), dtype=torch.int32, device=device)
        self.batches = 0

    def start_epoch(self) -> None:
        self.seen.zero_()
        self.batches = 0

    def mask(self, keys: Any) -> Tensor:
        """``(B,)`` bool: which of a batch's sample ``keys`` are forget samples; marks them seen."""
        keys = torch.as_tensor(keys, dtype=torch.long, device=self.keys.device)
        self.batches += 1
        if len(self.keys) == 0:
            return torch.zeros(keys.shape, dtype=torch.bool, device=keys.device)
        position = torch.searchsorted(self.keys, keys).clamp_(max=len(self.keys) - 1)
        member = self.keys[position] == keys
        # a sum, not an assignment: a non-member key may share a member's position (and the sum
        # has a deterministic kernel on every device)
        self.seen.index_put_((position,), member.to(self.seen.dtype), accumulate=True)
        return member

    def check(self, trainer: pl.Trainer, pl_module: pl.LightningModule, method: str) -> None:
        """Log ``unlearn/forget_seen`` (distinct forget samples served this epoch, all ranks);
        raise ``ForgetCoverageError`` if a complete epoch missed some."""
        seen = (self.seen > 0).to(torch.int32)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(seen, op=torch.distributed.ReduceOp.MAX)
        count, expected = int(seen.sum()), len(self.keys)
        pl_module.log("unlearn/forget_seen", float(count), rank_zero_only=True)
        if count >= expected:
            return
        missing = self.keys[seen == 0][:5].tolist()
        message = (
            f"Epoch {trainer.current_epoch} of {method} served {count} of {expected} forget "
            f"samples (missing e.g. positions {missing}): they were not unlearned in this epoch."
        )
        loader_batches = trainer.num_training_batches
        complete = loader_batches != float("inf") and self.batches >= loader_batches
        if complete and getattr(trainer, "limit_train_batches", 1.0) in (1.0, None):
            raise ForgetCoverageError(
                message + " Serve the data through ForgetRetainDataModule's own "
                "train_dataloader (it covers every forget sample in every epoch); a custom "
                "loader or sampler must do the same."
            )
        rank_zero_warn(message + " (the epoch was cut short by limit_train_batches or max_steps)")
