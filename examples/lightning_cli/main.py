"""Unlearning through LightningCLI: the usual ``fit`` command, callbacks from ``config.yaml``.

    python prepare.py                       # digits as PNGs, a forget list, a pretrained checkpoint
    python main.py fit --config config.yaml

lightly's modules are ``pytorch_lightning`` modules, so this uses ``pytorch_lightning.cli``;
``lightning.pytorch.cli.LightningCLI`` takes the same config for a ``lightning.pytorch`` module.
Needs ``pip install "lightly-unlearn[cli]"`` (jsonargparse).
"""

from pytorch_lightning.cli import LightningCLI


def cli_main(args=None):
    return LightningCLI(args=args, save_config_kwargs={"overwrite": True})


if __name__ == "__main__":
    cli_main()
