"""The user's module, written like lightly's SimCLR example (``import pytorch_lightning as pl``).

A small CNN instead of a ResNet-18 so that the recipe runs on a laptop CPU; unchanged otherwise.
"""

import pytorch_lightning as pl
import torch
from lightly.loss import NTXentLoss
from lightly.models.modules import SimCLRProjectionHead
from torch import nn


class SimCLR(pl.LightningModule):
    def __init__(self, lr: float = 0.006):
        super().__init__()
        self.save_hyperparameters()
        self.backbone = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        )
        self.projection_head = SimCLRProjectionHead(64, 128, 64)
        self.criterion = NTXentLoss()

    def forward(self, x):
        x = self.backbone(x).flatten(start_dim=1)
        return self.projection_head(x)

    def training_step(self, batch, batch_index):
        (x0, x1) = batch[0]
        loss = self.criterion(self.forward(x0), self.forward(x1))
        self.log("train_loss", loss, prog_bar=True, batch_size=len(x0))
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)
