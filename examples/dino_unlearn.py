"""Unlearn samples from a DINO model written like lightly's DINO example.

The module below is the user's existing code (lightly's ``examples/pytorch_lightning/dino.py``,
with a small CNN instead of a ResNet-18 so that it runs on a laptop CPU in under a minute): a
student (``student_backbone`` / ``student_head``) and a teacher (``teacher_backbone`` /
``teacher_head``) updated by EMA, ``DINOTransform``'s multi-crop views (2 global + 4 local crops)
and ``DINOLoss`` with teacher centering. Unlearning adds a ``ForgetRetainDataModule`` and an
``UnlearnCallback``; the module is untouched. The callback finds the teacher by lightly's
``student_*`` / ``teacher_*`` names (its fit-start line says so), keeps every crop in every
batch, unlearns through DINOLoss's own per-sample terms, and when training ends copies the
unlearned student into the teacher.

Data: scikit-learn's handwritten digits (real data that ships inside the package).

What this shows is the mechanics, not forgetting quality: 8 CPU epochs barely move this tiny
DINO's loss from ``ln(512)`` (DINO starts slowly), and its pooled ReLU features point the same
way (cosine ~0.997 between different images, though a linear probe reads 80 % test accuracy
from them), so the audit's collapse check fires and the forget set carries no membership signal
to remove. Measure forgetting on a DINO trained as you train it.

    python examples/dino_unlearn.py [--method ac] [--out dino_unlearn_out]
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import pytorch_lightning as pl
import torch
from digits import digits_as_images  # scikit-learn digits as (PIL image, label) items
from lightly.loss import DINOLoss
from lightly.models.modules import DINOProjectionHead
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.transforms.dino_transform import DINOTransform
from lightly.utils.scheduler import cosine_schedule
from torch import nn

from lightly_unlearn import AuditCallback, ForgetRetainDataModule, UnlearnCallback


# ---- the user's existing module: unchanged -------------------------------------------------
class DINO(pl.LightningModule):
    def __init__(self):
        super().__init__()
        backbone = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        )
        input_dim = 64

        self.student_backbone = backbone
        self.student_head = DINOProjectionHead(input_dim, 128, 32, 512, freeze_last_layer=1)
        self.teacher_backbone = copy.deepcopy(backbone)
        self.teacher_head = DINOProjectionHead(input_dim, 128, 32, 512)
        deactivate_requires_grad(self.teacher_backbone)
        deactivate_requires_grad(self.teacher_head)

        self.criterion = DINOLoss(output_dim=512, warmup_teacher_temp_epochs=5)

    def forward(self, x):
        y = self.student_backbone(x).flatten(start_dim=1)
        z = self.student_head(y)
        return z

    def forward_teacher(self, x):
        y = self.teacher_backbone(x).flatten(start_dim=1)
        z = self.teacher_head(y)
        return z

    def training_step(self, batch, batch_idx):
        momentum = cosine_schedule(self.current_epoch, 10, 0.996, 1)
        update_momentum(self.student_backbone, self.teacher_backbone, m=momentum)
        update_momentum(self.student_head, self.teacher_head, m=momentum)
        views = batch[0]
        views = [view.to(self.device) for view in views]
        global_views = views[:2]
        teacher_out = [self.forward_teacher(view) for view in global_views]
        student_out = [self.forward(view) for view in views]
        loss = self.criterion(teacher_out, student_out, epoch=self.current_epoch)
        self.log("train_loss", loss, prog_bar=True, batch_size=len(views[0]))
        return loss

    def on_after_backward(self):
        self.student_head.cancel_last_layer_gradients(current_epoch=self.current_epoch)

    def configure_optimizers(self):
        optim = torch.optim.Adam(self.parameters(), lr=0.001)
        return optim


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", default="ac", help="see `lightly-unlearn list`")
    parser.add_argument("--out", default="dino_unlearn_out")
    parser.add_argument("--pretrain-epochs", type=int, default=8)
    parser.add_argument("--unlearn-epochs", type=int, default=2)
    parser.add_argument("--samples", type=int, default=600,
                        help="training digits (every tenth is forgotten); fewer for a quick try")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    out = Path(args.out)

    train, test = digits_as_images(0, args.samples), digits_as_images(1400, 1797)
    # 2 global crops of 16 px and 4 local crops of 8 px: every one reaches the user's step
    transform = DINOTransform(
        global_crop_size=16, local_crop_size=8, n_local_views=4, cj_prob=0.4,
        gaussian_blur=(0.0, 0.0, 0.0), solarization_prob=0.0,
    )
    forget_ids = list(range(0, args.samples, 10))  # the deletion request: 10 % (60 of 600)
    datamodule = ForgetRetainDataModule(
        train, forget_ids, transform, batch_size=64, holdout=test, seed=0
    )

    # 1. the user's pretraining run (normally done long ago): the datamodule serves everything
    trainer = pl.Trainer(max_epochs=args.pretrain_epochs, accelerator="cpu", default_root_dir=out)
    trainer.fit(DINO(), datamodule=datamodule)
    pretrained = out / "pretrained.ckpt"
    trainer.save_checkpoint(pretrained)

    # 2. unlearning: reuse the checkpoint, add the callback, keep the training script
    model = DINO.load_from_checkpoint(pretrained, weights_only=True)
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
    unlearned = out / f"unlearned_{args.method}.ckpt"
    trainer.save_checkpoint(unlearned)
    in_sync = all(
        torch.equal(a, b)
        for student, teacher in ((model.student_backbone, model.teacher_backbone),
                                 (model.student_head, model.teacher_head))
        for a, b in zip(student.state_dict().values(), teacher.state_dict().values())
    )
    print(f"\nUnlearned checkpoint: {unlearned}")
    print(f"Teacher equals the unlearned student: {in_sync}")
    print(f"Audit report: {Path(trainer.log_dir) / 'audits' / 'report.md'}")
    DINO.load_from_checkpoint(unlearned, weights_only=True)  # loads into the user's class


if __name__ == "__main__":
    main()
