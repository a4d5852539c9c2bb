"""The demo's contrastive models: lightly-style modules, exactly as a lightly user writes them.

They follow lightly's SimCLR / MoCo examples (``backbone``, ``projection_head``, ``criterion``,
``training_step`` on ``batch[0]``) with a 2-layer MLP backbone for 8x8 digits, so the demo
exercises the same code path as a user's module: nothing here knows about unlearning.
"""

from __future__ import annotations

import copy

import pytorch_lightning as pl
import torch
from lightly.loss import NTXentLoss
from lightly.models.modules import MoCoProjectionHead, SimCLRProjectionHead
from lightly.models.utils import deactivate_requires_grad, update_momentum
from torch import nn


def mlp_backbone(width: int, pixels: int = 64) -> nn.Sequential:
    return nn.Sequential(
        nn.Flatten(), nn.Linear(pixels, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU()
    )


class DigitsSimCLR(pl.LightningModule):
    """SimCLR on 8x8 digits: MLP backbone, lightly projection head and ``NTXentLoss``."""

    def __init__(self, width: int = 256, out_dim: int = 128, temperature: float = 0.2, lr: float = 2e-3):
        super().__init__()
        self.save_hyperparameters()
        self.backbone, features = self.make_backbone(width)
        self.projection_head = SimCLRProjectionHead(features, width, out_dim)
        self.criterion = NTXentLoss(temperature=temperature)

    @staticmethod
    def make_backbone(width: int) -> tuple[nn.Module, int]:
        """(backbone, its feature dimension)."""
        return mlp_backbone(width), width

    def forward(self, x):
        return self.projection_head(self.backbone(x).flatten(start_dim=1))

    def training_step(self, batch, batch_index):
        (x0, x1) = batch[0]
        loss = self.criterion(self.forward(x0), self.forward(x1))
        self.log("train_loss", loss, batch_size=len(x0))
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


class DigitsMoCo(pl.LightningModule):
    """MoCo v2 on 8x8 digits: momentum encoder and a memory bank of keys."""

    def __init__(self, width: int = 256, out_dim: int = 128, temperature: float = 0.2,
                 lr: float = 2e-3, bank_size: int = 512, momentum: float = 0.99):
        super().__init__()
        self.save_hyperparameters()
        self.backbone, features = self.make_backbone(width)
        self.projection_head = MoCoProjectionHead(features, width, out_dim)
        self.backbone_momentum = copy.deepcopy(self.backbone)
        self.projection_head_momentum = copy.deepcopy(self.projection_head)
        deactivate_requires_grad(self.backbone_momentum)
        deactivate_requires_grad(self.projection_head_momentum)
        self.criterion = NTXentLoss(temperature=temperature, memory_bank_size=(bank_size, out_dim))

    make_backbone = staticmethod(DigitsSimCLR.make_backbone)

    def forward(self, x):
        return self.projection_head(self.backbone(x).flatten(start_dim=1))

    def forward_momentum(self, x):
        return self.projection_head_momentum(self.backbone_momentum(x).flatten(start_dim=1)).detach()

    def training_step(self, batch, batch_index):
        m = self.hparams.momentum
        update_momentum(self.backbone, self.backbone_momentum, m=m)
        update_momentum(self.projection_head, self.projection_head_momentum, m=m)
        x_query, x_key = batch[0]
        loss = self.criterion(self.forward(x_query), self.forward_momentum(x_key))
        self.log("train_loss", loss, batch_size=len(x_query))
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


MODELS = {"simclr": DigitsSimCLR, "moco": DigitsMoCo}


def conv_backbone(channels: tuple[int, ...] = (32, 64, 128, 128),
                  strides: tuple[int, ...] = (1, 2, 2, 1)) -> nn.Sequential:
    """Small BatchNorm CNN: 3x3 conv-BN-ReLU blocks, then global average pooling."""
    layers: list[nn.Module] = []
    c_in = 3
    for c_out, stride in zip(channels, strides):
        layers += [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
                   nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
        c_in = c_out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers)


def _conv_backbone(width: int) -> tuple[nn.Module, int]:
    return conv_backbone(), 128


def _sgd(module: pl.LightningModule) -> torch.optim.Optimizer:
    return torch.optim.SGD(module.parameters(), lr=module.hparams.lr, momentum=0.9, weight_decay=5e-4)


class ConvSimCLR(DigitsSimCLR):
    """SimCLR as in lightly's example, with a small BatchNorm CNN and SGD (momentum 0.9, wd 5e-4)."""

    def __init__(self, width: int = 256, out_dim: int = 128, temperature: float = 0.2, lr: float = 0.06):
        super().__init__(width, out_dim, temperature, lr)

    make_backbone = staticmethod(_conv_backbone)
    configure_optimizers = _sgd


class ConvMoCo(DigitsMoCo):
    """MoCo v2 as in lightly's example, with the small BatchNorm CNN and SGD."""

    def __init__(self, width: int = 256, out_dim: int = 128, temperature: float = 0.2,
                 lr: float = 0.06, bank_size: int = 256, momentum: float = 0.99):
        super().__init__(width, out_dim, temperature, lr, bank_size, momentum)

    make_backbone = staticmethod(_conv_backbone)
    configure_optimizers = _sgd


CONV_MODELS = {"simclr": ConvSimCLR, "moco": ConvMoCo}
