"""Unlearn samples from a BYOL model written like lightly's BYOL example.

The module below is the user's existing code (lightly's ``examples/pytorch_lightning/byol.py``,
with a small CNN instead of a ResNet-18 so that it runs on a laptop CPU in under a minute): momentum
encoders ``backbone_momentum`` / ``projection_head_momentum``, a ``NegativeCosineSimilarity``
criterion called twice per step, symmetrised. Unlearning adds a ``ForgetRetainDataModule`` and an
``UnlearnCallback``; the module is untouched. The callback unlearns through both criterion calls
and, when training ends, copies the unlearned online weights into the momentum encoders.

Data: scikit-learn's handwritten digits (real data that ships inside the package).

    python examples/byol_unlearn.py [--method ac] [--out byol_unlearn_out]
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import pytorch_lightning as pl
import torch
from digits import digits_as_images  # scikit-learn digits as (PIL image, label) items
from lightly.loss import NegativeCosineSimilarity
from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.transforms.byol_transform import (
    BYOLTransform,
    BYOLView1Transform,
    BYOLView2Transform,
)
from lightly.utils.scheduler import cosine_schedule
from torch import nn

from lightly_unlearn import AuditCallback, ForgetRetainDataModule, ReceiptCallback, UnlearnCallback


# ---- the user's existing module: unchanged -------------------------------------------------
class BYOL(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        )
        self.projection_head = BYOLProjectionHead(64, 256, 64)
        self.prediction_head = BYOLPredictionHead(64, 256, 64)

        self.backbone_momentum = copy.deepcopy(self.backbone)
        self.projection_head_momentum = copy.deepcopy(self.projection_head)

        deactivate_requires_grad(self.backbone_momentum)
        deactivate_requires_grad(self.projection_head_momentum)

        self.criterion = NegativeCosineSimilarity()

    def forward(self, x):
        y = self.backbone(x).flatten(start_dim=1)
        z = self.projection_head(y)
        p = self.prediction_head(z)
        return p

    def forward_momentum(self, x):
        y = self.backbone_momentum(x).flatten(start_dim=1)
        z = self.projection_head_momentum(y)
        z = z.detach()
        return z

    def training_step(self, batch, batch_idx):
        momentum = cosine_schedule(self.current_epoch, 10, 0.996, 1)
        update_momentum(self.backbone, self.backbone_momentum, m=momentum)
        update_momentum(self.projection_head, self.projection_head_momentum, m=momentum)
        (x0, x1) = batch[0]
        p0 = self.forward(x0)
        z0 = self.forward_momentum(x0)
        p1 = self.forward(x1)
        z1 = self.forward_momentum(x1)
        loss = 0.5 * (self.criterion(p0, z1) + self.criterion(p1, z0))
        self.log("train_loss_ssl", loss, batch_size=len(x0))
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.06)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", default="ac", help="see `lightly-unlearn list`")
    parser.add_argument("--out", default="byol_unlearn_out")
    parser.add_argument("--pretrain-epochs", type=int, default=8)
    parser.add_argument("--unlearn-epochs", type=int, default=2)
    parser.add_argument("--samples", type=int, default=600,
                        help="training digits (every tenth is forgotten); fewer for a quick try")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    out = Path(args.out)

    train, test = digits_as_images(0, args.samples), digits_as_images(1400, 1797)
    transform = BYOLTransform(
        view_1_transform=BYOLView1Transform(input_size=16, gaussian_blur=0.0, cj_prob=0.4),
        view_2_transform=BYOLView2Transform(input_size=16, gaussian_blur=0.0, cj_prob=0.4),
    )
    forget_ids = list(range(0, args.samples, 10))  # the deletion request: 10 % (60 of 600)
    datamodule = ForgetRetainDataModule(
        train, forget_ids, transform, batch_size=64, holdout=test, seed=0
    )

    # 1. the user's pretraining run (normally done long ago): the datamodule serves everything
    trainer = pl.Trainer(max_epochs=args.pretrain_epochs, accelerator="cpu", default_root_dir=out)
    trainer.fit(BYOL(), datamodule=datamodule)
    pretrained = out / "pretrained.ckpt"
    trainer.save_checkpoint(pretrained)

    # 2. unlearning: reuse the checkpoint, add the callback, keep the training script
    model = BYOL.load_from_checkpoint(pretrained, weights_only=True)
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
    unlearned = out / f"unlearned_{args.method}.ckpt"
    trainer.save_checkpoint(unlearned)
    receipt_path = receipt.write(trainer, unlearned)
    in_sync = all(
        torch.equal(a, b)
        for a, b in zip(model.backbone.state_dict().values(), model.backbone_momentum.state_dict().values())
    )
    print(f"\nUnlearned checkpoint: {unlearned}")
    print(f"Momentum encoder equals the unlearned online encoder: {in_sync}")
    print(f"Receipt: {receipt_path}  (check: lightly-unlearn verify-receipt {receipt_path} "
          f"--checkpoint {unlearned})")
    print(f"Audit report: {Path(trainer.log_dir) / 'audits' / 'report.md'}")
    BYOL.load_from_checkpoint(unlearned, weights_only=True)  # the user's class


if __name__ == "__main__":
    main()
