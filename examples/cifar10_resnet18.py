"""CIFAR-10 / ResNet-18 MoCo unlearning, the paper's setting — for a GPU and the dataset on disk.

Not run in CI (it needs CIFAR-10 under ``--data`` and hours of pretraining on a GPU). The module is
lightly's MoCo v2 example; the unlearning run uses the reference recipe of the AC paper (arXiv:2406.03603) (10 epochs,
SGD lr 0.006, momentum 0.9, weight decay 5e-4, batch 512, constant lr, α = 1, β = 0 for a
10 % random forget set) and audits with ``AuditCallback`` (holdout = the CIFAR-10 test split).

    # 1. pretrain once (or bring your own checkpoint of this class)
    python examples/cifar10_resnet18.py pretrain --data ~/datasets --epochs 800 --out cifar_out
    # 2. unlearn 10 % of the training set with AC and with the baselines, then compare audits
    python examples/cifar10_resnet18.py unlearn --data ~/datasets --ckpt cifar_out/pretrained.ckpt \
        --method ac --alpha 1.0 --out cifar_out
    python examples/cifar10_resnet18.py unlearn ... --method retrain --epochs 800   # the gold standard
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import pytorch_lightning as pl
import torch
import torchvision
from lightly.loss import NTXentLoss
from lightly.models.modules import MoCoProjectionHead
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.transforms import MoCoV2Transform
from lightly.utils.scheduler import cosine_schedule
from torch import nn

from lightly_unlearn import AuditCallback, ForgetRetainDataModule, UnlearnCallback


class MoCo(pl.LightningModule):
    def __init__(self, lr: float = 0.06, momentum: float = 0.9, weight_decay: float = 5e-4):
        super().__init__()
        self.save_hyperparameters()
        resnet = torchvision.models.resnet18()
        resnet.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)  # CIFAR stem
        resnet.maxpool = nn.Identity()
        self.backbone = nn.Sequential(*list(resnet.children())[:-1])
        self.projection_head = MoCoProjectionHead(512, 512, 128)
        self.backbone_momentum = copy.deepcopy(self.backbone)
        self.projection_head_momentum = copy.deepcopy(self.projection_head)
        deactivate_requires_grad(self.backbone_momentum)
        deactivate_requires_grad(self.projection_head_momentum)
        self.criterion = NTXentLoss(temperature=0.1, memory_bank_size=(4096, 128))

    def forward(self, x):
        return self.projection_head(self.backbone(x).flatten(start_dim=1))

    def forward_momentum(self, x):
        return self.projection_head_momentum(self.backbone_momentum(x).flatten(start_dim=1)).detach()

    def training_step(self, batch, batch_idx):
        m = cosine_schedule(self.current_epoch, self.trainer.max_epochs, 0.99, 1)
        update_momentum(self.backbone, self.backbone_momentum, m=m)
        update_momentum(self.projection_head, self.projection_head_momentum, m=m)
        x_query, x_key = batch[0]
        loss = self.criterion(self.forward(x_query), self.forward_momentum(x_key))
        self.log("train_loss", loss, prog_bar=True, batch_size=len(x_query))
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=self.hparams.momentum,
                               weight_decay=self.hparams.weight_decay)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=["pretrain", "unlearn"])
    parser.add_argument("--data", required=True, help="folder holding cifar-10-batches-py (no download)")
    parser.add_argument("--out", default="cifar_out")
    parser.add_argument("--ckpt", help="pretrained checkpoint of MoCo (unlearn stage)")
    parser.add_argument("--method", default="ac")
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--beta", type=float, default=0.0)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--forget-fraction", type=float, default=0.1)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args()
    pl.seed_everything(0)

    train = torchvision.datasets.CIFAR10(args.data, train=True, download=False)
    test = torchvision.datasets.CIFAR10(args.data, train=False, download=False)
    forget = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))
    forget = sorted(forget[: int(args.forget_fraction * len(train))].tolist())
    dm = ForgetRetainDataModule(train, forget, MoCoV2Transform(input_size=32), batch_size=args.batch_size,
                                num_workers=args.workers, holdout=test)
    out = Path(args.out)
    if args.stage == "pretrain":
        trainer = pl.Trainer(max_epochs=args.epochs or 800, default_root_dir=out, precision="16-mixed")
        trainer.fit(MoCo(), datamodule=dm)
        trainer.save_checkpoint(out / "pretrained.ckpt")
        return

    hp = {"alpha": args.alpha, "beta": args.beta} if args.method == "ac" else {}
    if args.method in ("retrain", "rt"):
        model, epochs = MoCo(), args.epochs or 800  # the original recipe
    else:  # reference unlearning recipe: 10 epochs (5 for gradient ascent) at lr 0.006
        model = MoCo.load_from_checkpoint(args.ckpt, weights_only=True, lr=0.006)
        epochs = args.epochs or (5 if args.method in ("gradient_ascent", "ga") else 10)
    trainer = pl.Trainer(
        max_epochs=epochs, default_root_dir=out, precision="16-mixed",
        callbacks=[UnlearnCallback(method=args.method, **hp), AuditCallback(num_samples=10_000)],
    )
    trainer.fit(model, datamodule=dm)
    trainer.save_checkpoint(out / f"unlearned_{args.method}.ckpt")


if __name__ == "__main__":
    main()
