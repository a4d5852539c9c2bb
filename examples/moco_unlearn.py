"""Unlearn samples from a MoCo v2 model written like lightly's MoCo example.

The module below is the user's existing code (lightly's ``examples/pytorch_lightning/moco.py``,
with a small CNN instead of a ResNet-18 so that it runs on a laptop CPU in under a minute).
Unlearning adds a ``ForgetRetainDataModule`` and an ``UnlearnCallback``; the module is untouched.
The callback re-initialises the memory bank when unlearning starts (it holds keys of forget
samples) and syncs the momentum encoder to the unlearned online weights at the end.

    python examples/moco_unlearn.py [--method ac] [--out moco_unlearn_out]
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import pytorch_lightning as pl
import torch
from digits import digits_as_images  # scikit-learn digits as (PIL image, label) items
from lightly.loss import NTXentLoss
from lightly.models.modules import MoCoProjectionHead
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.transforms import MoCoV2Transform
from lightly.utils.scheduler import cosine_schedule
from torch import nn

from lightly_unlearn import AuditCallback, ForgetRetainDataModule, UnlearnCallback


# ---- the user's existing module: unchanged -------------------------------------------------
class MoCo(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        )
        self.projection_head = MoCoProjectionHead(64, 128, 64)
        self.backbone_momentum = copy.deepcopy(self.backbone)
        self.projection_head_momentum = copy.deepcopy(self.projection_head)
        deactivate_requires_grad(self.backbone_momentum)
        deactivate_requires_grad(self.projection_head_momentum)
        self.criterion = NTXentLoss(temperature=0.2, memory_bank_size=(512, 64))

    def forward(self, x):
        query = self.backbone(x).flatten(start_dim=1)
        query = self.projection_head(query)
        return query

    def forward_momentum(self, x):
        key = self.backbone_momentum(x).flatten(start_dim=1)
        key = self.projection_head_momentum(key).detach()
        return key

    def training_step(self, batch, batch_idx):
        momentum = cosine_schedule(self.current_epoch, 10, 0.996, 1)
        update_momentum(self.backbone, self.backbone_momentum, m=momentum)
        update_momentum(self.projection_head, self.projection_head_momentum, m=momentum)
        x_query, x_key = batch[0]
        query = self.forward(x_query)
        key = self.forward_momentum(x_key)
        loss = self.criterion(query, key)
        self.log("train_loss", loss, prog_bar=True, batch_size=len(x_query))
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.06)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", default="ac", help="see `lightly-unlearn list`")
    parser.add_argument("--out", default="moco_unlearn_out")
    parser.add_argument("--pretrain-epochs", type=int, default=8)
    parser.add_argument("--unlearn-epochs", type=int, default=2)
    parser.add_argument("--samples", type=int, default=600,
                        help="training digits (every tenth is forgotten); fewer for a quick try")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    out = Path(args.out)

    train, test = digits_as_images(0, args.samples), digits_as_images(1400, 1797)
    transform = MoCoV2Transform(input_size=16, gaussian_blur=0.0)
    forget_ids = list(range(0, args.samples, 10))  # the deletion request: 10 % (60 of 600)
    datamodule = ForgetRetainDataModule(
        train, forget_ids, transform, batch_size=64, holdout=test, seed=0
    )

    # 1. the user's pretraining run (normally done long ago)
    trainer = pl.Trainer(max_epochs=args.pretrain_epochs, accelerator="cpu", default_root_dir=out)
    trainer.fit(MoCo(), datamodule=datamodule)
    pretrained = out / "pretrained.ckpt"
    trainer.save_checkpoint(pretrained)

    # 2. unlearning from the checkpoint: one callback more, same module
    model = MoCo.load_from_checkpoint(pretrained, weights_only=True)
    trainer = pl.Trainer(
        max_epochs=args.unlearn_epochs,
        accelerator="cpu",
        default_root_dir=out,
        callbacks=[
            UnlearnCallback(method=args.method),
            AuditCallback(audits=("emia", "linear_probe", "alignment_matrix"), num_samples=200, num_views=4),
        ],
    )
    trainer.fit(model, datamodule=datamodule)
    result = out / f"unlearned_{args.method}.ckpt"
    trainer.save_checkpoint(result)
    MoCo.load_from_checkpoint(result, weights_only=True)  # loads into the user's class
    print(f"\nUnlearned checkpoint: {result}")
    print(f"Audit report: {Path(trainer.log_dir) / 'audits' / 'report.md'}")


if __name__ == "__main__":
    main()
