"""Unlearn samples from a SimCLR model written like lightly's SimCLR example.

The module below is the user's existing code (lightly's ``examples/pytorch_lightning/simclr.py``,
with a small CNN instead of a ResNet-18 so that it runs on a laptop CPU in under a minute).
Unlearning adds a ``ForgetRetainDataModule`` and an ``UnlearnCallback``; the module is untouched.

Data: scikit-learn's handwritten digits (real data that ships inside the package).

    python examples/simclr_unlearn.py [--method ac] [--out simclr_unlearn_out]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytorch_lightning as pl
import torch
from digits import digits_as_images  # scikit-learn digits as (PIL image, label) items
from lightly.loss import NTXentLoss
from lightly.models.modules import SimCLRProjectionHead
from lightly.transforms import SimCLRTransform
from torch import nn

from lightly_unlearn import AuditCallback, ForgetRetainDataModule, ReceiptCallback, UnlearnCallback


# ---- the user's existing module: unchanged -------------------------------------------------
class SimCLR(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        )
        self.projection_head = SimCLRProjectionHead(64, 128, 64)
        self.criterion = NTXentLoss()

    def forward(self, x):
        x = self.backbone(x).flatten(start_dim=1)
        z = self.projection_head(x)
        return z

    def training_step(self, batch, batch_index):
        (x0, x1) = batch[0]
        z0 = self.forward(x0)
        z1 = self.forward(x1)
        loss = self.criterion(z0, z1)
        self.log("train_loss", loss, prog_bar=True, batch_size=len(x0))
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.06)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", default="ac", help="see `lightly-unlearn list`")
    parser.add_argument("--out", default="simclr_unlearn_out")
    parser.add_argument("--pretrain-epochs", type=int, default=8)
    parser.add_argument("--unlearn-epochs", type=int, default=2)
    parser.add_argument("--samples", type=int, default=600,
                        help="training digits (every tenth is forgotten); fewer for a quick try")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    out = Path(args.out)

    train, test = digits_as_images(0, args.samples), digits_as_images(1400, 1797)
    transform = SimCLRTransform(input_size=16, gaussian_blur=0.0, cj_prob=0.4)
    forget_ids = list(range(0, args.samples, 10))  # the deletion request: 10 % (60 of 600)
    datamodule = ForgetRetainDataModule(
        train, forget_ids, transform, batch_size=64, holdout=test, seed=0
    )

    # 1. the user's pretraining run (normally done long ago): the datamodule serves everything
    trainer = pl.Trainer(max_epochs=args.pretrain_epochs, accelerator="cpu", default_root_dir=out)
    trainer.fit(SimCLR(), datamodule=datamodule)
    pretrained = out / "pretrained.ckpt"
    trainer.save_checkpoint(pretrained)

    # 2. unlearning: reuse the checkpoint, add the callback, keep the training script
    model = SimCLR.load_from_checkpoint(pretrained, weights_only=True)
    receipt = ReceiptCallback(input_checkpoint=pretrained)  # evidence of what was removed
    trainer = pl.Trainer(
        max_epochs=args.unlearn_epochs,
        accelerator="cpu",
        default_root_dir=out,
        callbacks=[
            UnlearnCallback(method=args.method),
            AuditCallback(audits=("emia", "linear_probe", "alignment_matrix"), num_samples=200, num_views=4),
            receipt,
        ],
    )
    trainer.fit(model, datamodule=datamodule)
    trainer.save_checkpoint(out / f"unlearned_{args.method}.ckpt")
    receipt_path = receipt.write(trainer, out / f"unlearned_{args.method}.ckpt")
    print(f"\nUnlearned checkpoint: {out / f'unlearned_{args.method}.ckpt'}")
    print(f"Receipt: {receipt_path}  (check: lightly-unlearn verify-receipt {receipt_path} "
          f"--checkpoint {out / f'unlearned_{args.method}.ckpt'})")
    print(f"Audit report: {Path(trainer.log_dir) / 'audits' / 'report.md'}")
    SimCLR.load_from_checkpoint(out / f"unlearned_{args.method}.ckpt", weights_only=True)  # the user's class


if __name__ == "__main__":
    main()
