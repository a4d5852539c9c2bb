"""Progress display of work a callback does outside training steps (audits): a bar in
Lightning's style, and the training bar's clock moved past that work."""

from __future__ import annotations

import sys
from typing import Any


def work_bar(trainer: Any, desc: str, total: int, show: bool | None = None) -> Any:
    """A tqdm bar in Lightning's style counting ``total`` items on global rank 0, or ``None``
    when hidden (``show=None``: shown when the trainer shows its own progress bar)."""
    if show is None:
        show = getattr(trainer, "progress_bar_callback", None) is not None
    if not show or not getattr(trainer, "is_global_zero", True):
        return None
    from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm, TQDMProgressBar

    return Tqdm(desc=desc, total=total, unit="img", leave=False, dynamic_ncols=True,
                file=sys.stdout, smoothing=0, bar_format=TQDMProgressBar.BAR_FORMAT)  # fmt: skip


def pause_training_clock(trainer: Any, seconds: float) -> None:
    """Move the training progress bar's clock forward by ``seconds``, so the epoch's rate and
    elapsed time show training alone."""
    bar_cb = getattr(trainer, "progress_bar_callback", None)
    try:
        bar = getattr(bar_cb, "train_progress_bar", None)
    except Exception:  # Lightning raises when the bar does not exist (yet)
        return
    if bar is not None and hasattr(bar, "start_t"):
        bar.start_t += seconds
        if hasattr(bar, "last_print_t"):
            bar.last_print_t += seconds
