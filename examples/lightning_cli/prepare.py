"""Inputs for the LightningCLI recipe: scikit-learn digits as PNG files, a forget list, and a
pretrained checkpoint of ``model.SimCLR`` (stands in for the checkpoint you already have).

    python prepare.py [--out cli_data] [--images 600] [--pretrain-epochs 8]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from PIL import Image
from sklearn.datasets import load_digits


def prepare(out: str = "cli_data", images: int = 600, holdout: int = 200,
            pretrain_epochs: int = 8) -> Path:
    from model import SimCLR

    from lightly_unlearn.data.datamodule import ForgetRetainDataModule
    from lightly_unlearn.image_folder import ImageFolder, make_transform

    root = Path(out)
    digits = load_digits()
    pixels = (digits.images * (255 / 16)).astype(np.uint8)
    for folder, start, stop in (("images", 0, images), ("holdout", images, images + holdout)):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i in range(start, stop):
            Image.fromarray(pixels[i]).convert("RGB").save(root / folder / f"digit_{i:04d}.png")
    names = [f"digit_{i:04d}.png" for i in range(0, images, 10)]  # the deletion request: 10 %
    (root / "forget.txt").write_text("# images to forget, relative to images/\n" + "\n".join(names) + "\n")
    torch.manual_seed(0)
    model = SimCLR()
    dataset = ImageFolder(root / "images")
    dm = ForgetRetainDataModule(dataset, [0], make_transform("simclr", 16), batch_size=64)
    trainer = pl.Trainer(max_epochs=pretrain_epochs, accelerator="cpu", devices=1, logger=False,
                         enable_checkpointing=False, default_root_dir=root)
    if pretrain_epochs > 0:
        trainer.fit(model, datamodule=dm)  # the datamodule serves every image by default
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)},
               root / "pretrained.ckpt")
    return root


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="cli_data", help="output folder (default cli_data)")
    parser.add_argument("--images", type=int, default=600, help="training images (default 600)")
    parser.add_argument("--pretrain-epochs", type=int, default=8, help="pretraining epochs (default 8)")
    args = parser.parse_args()
    print(f"wrote {prepare(args.out, args.images, pretrain_epochs=args.pretrain_epochs)}")
