"""Same inputs, same seed, same results: what a run seeds and which kernels it selects.

``lightly-unlearn unlearn`` and ``demo`` call :func:`make_reproducible` before they build or
train anything, and give the Trainer ``deterministic="warn"``. In Python, the same is
``seed_everything(seed, workers=True)`` of your module's Lightning namespace plus
``Trainer(deterministic=True)`` (or ``"warn"``) and a fixed ``ForgetRetainDataModule(seed=...)``;
``docs/reproducibility.md`` lists every generator involved.
"""

from __future__ import annotations

import os
from typing import Any

from lightly_unlearn.namespaces import PYTORCH_LIGHTNING, namespace_of

__all__ = ["make_reproducible"]


def make_reproducible(seed: int, like: Any = None) -> None:
    """Seed Python's, NumPy's and torch's generators (and DataLoader workers) and select
    deterministic kernels where torch has them.

    Args:
        seed: The run's seed.
        like: A LightningModule (or its class) whose namespace's ``seed_everything`` is used
            (lightly's modules use ``pytorch_lightning``); default ``lightning.pytorch``. Both
            set the environment variables their own Trainer reads (``PL_GLOBAL_SEED``,
            ``PL_SEED_WORKERS``).
    """
    import torch

    if like is not None and namespace_of(like) == PYTORCH_LIGHTNING:
        from pytorch_lightning import seed_everything
    else:
        from lightning.pytorch import seed_everything
    # read by cuBLAS when its first handle is made: set before any CUDA work
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    seed_everything(seed, workers=True, verbose=False)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
