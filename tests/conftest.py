"""Shared fixtures: tiny real data (scikit-learn digits) and lightly-docs-style modules."""

from __future__ import annotations

import copy
import os

import numpy as np
import pytest
import torch
from torch import nn

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)


def load_benchmark(script: str):
    """A script of ``benchmarks/`` (not a package) loaded as a module, e.g. ``"ulira.py"``."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / script
    spec = importlib.util.spec_from_file_location(f"bench_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def _seeded_global_generators():
    """Every test starts from the same torch, NumPy and ``random`` states, so its outcome does
    not depend on which tests ran before it (lightly's GaussianBlur draws from NumPy's)."""
    import random

    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


def digits_dataset(n: int = 64, offset: int = 0):
    """``n`` real digits as ``(PIL RGB 8x8 image, label)`` items (a plain list is a map-style dataset)."""
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    imgs = (d.images[offset : offset + n] * (255 / 16)).astype(np.uint8)
    return [
        (Image.fromarray(img).convert("RGB"), int(t))
        for img, t in zip(imgs, d.target[offset : offset + n])
    ]


def tiny_transform():
    from lightly.transforms import SimCLRTransform

    return SimCLRTransform(input_size=8, gaussian_blur=0.0, random_gray_scale=0.0, cj_prob=0.0)


def make_simclr(namespace: str = "pl"):
    """A module written exactly like lightly's SimCLR example, scaled down."""
    from lightly.loss import NTXentLoss
    from lightly.models.modules import SimCLRProjectionHead

    if namespace == "pl":
        import pytorch_lightning as base
    else:
        import lightning.pytorch as base

    class SimCLR(base.LightningModule):
        def __init__(self, hidden: int = 32, batch_norm: bool = True):
            super().__init__()
            self.save_hyperparameters()
            self.backbone = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, hidden), nn.ReLU())
            self.projection_head = SimCLRProjectionHead(hidden, hidden, 16, batch_norm=batch_norm)
            self.criterion = NTXentLoss()

        def forward(self, x):
            x = self.backbone(x).flatten(start_dim=1)
            return self.projection_head(x)

        def training_step(self, batch, batch_index):
            (x0, x1) = batch[0]
            z0 = self.forward(x0)
            z1 = self.forward(x1)
            loss = self.criterion(z0, z1)
            self.log("train_loss", loss, batch_size=len(x0))
            return loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.06)

    return SimCLR


def make_moco(namespace: str = "pl"):
    """A module written exactly like lightly's MoCo example, scaled down."""
    from lightly.loss import NTXentLoss
    from lightly.models.modules import MoCoProjectionHead
    from lightly.models.utils import deactivate_requires_grad, update_momentum
    from lightly.utils.scheduler import cosine_schedule

    if namespace == "pl":
        import pytorch_lightning as base
    else:
        import lightning.pytorch as base

    class MoCo(base.LightningModule):
        def __init__(self):
            super().__init__()
            self.backbone = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 32), nn.ReLU())
            self.projection_head = MoCoProjectionHead(32, 32, 16)
            self.backbone_momentum = copy.deepcopy(self.backbone)
            self.projection_head_momentum = copy.deepcopy(self.projection_head)
            deactivate_requires_grad(self.backbone_momentum)
            deactivate_requires_grad(self.projection_head_momentum)
            self.criterion = NTXentLoss(memory_bank_size=(64, 16))

        def forward(self, x):
            query = self.backbone(x).flatten(start_dim=1)
            return self.projection_head(query)

        def forward_momentum(self, x):
            key = self.backbone_momentum(x).flatten(start_dim=1)
            return self.projection_head_momentum(key).detach()

        def training_step(self, batch, batch_idx):
            momentum = cosine_schedule(self.current_epoch, 10, 0.996, 1)
            update_momentum(self.backbone, self.backbone_momentum, m=momentum)
            update_momentum(self.projection_head, self.projection_head_momentum, m=momentum)
            x_query, x_key = batch[0]
            query = self.forward(x_query)
            key = self.forward_momentum(x_key)
            loss = self.criterion(query, key)
            return loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.06)

    return MoCo


def _base(namespace: str):
    if namespace == "pl":
        import pytorch_lightning as base
    else:
        import lightning.pytorch as base
    return base


def make_byol(namespace: str = "pl"):
    """A module written exactly like lightly's BYOL example, scaled down: momentum encoders
    ``<name>_momentum``, ``NegativeCosineSimilarity`` called twice, symmetrised."""
    from lightly.loss import NegativeCosineSimilarity
    from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead
    from lightly.models.utils import deactivate_requires_grad, update_momentum
    from lightly.utils.scheduler import cosine_schedule

    class BYOL(_base(namespace).LightningModule):
        def __init__(self):
            super().__init__()
            self.backbone = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 32), nn.ReLU())
            self.projection_head = BYOLProjectionHead(32, 32, 16)
            self.prediction_head = BYOLPredictionHead(16, 32, 16)
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
            return loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.06)

    return BYOL


def make_simsiam(namespace: str = "pl"):
    """A module written exactly like lightly's SimSiam example, scaled down: ``forward`` returns
    ``(z.detach(), p)``, ``NegativeCosineSimilarity`` called twice, symmetrised."""
    from lightly.loss import NegativeCosineSimilarity
    from lightly.models.modules import SimSiamPredictionHead, SimSiamProjectionHead

    class SimSiam(_base(namespace).LightningModule):
        def __init__(self):
            super().__init__()
            self.backbone = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 32), nn.ReLU())
            self.projection_head = SimSiamProjectionHead(32, 32, 16)
            self.prediction_head = SimSiamPredictionHead(16, 8, 16)
            self.criterion = NegativeCosineSimilarity()

        def forward(self, x):
            f = self.backbone(x).flatten(start_dim=1)
            z = self.projection_head(f)
            p = self.prediction_head(z)
            z = z.detach()
            return z, p

        def training_step(self, batch, batch_idx):
            (x0, x1) = batch[0]
            z0, p0 = self.forward(x0)
            z1, p1 = self.forward(x1)
            loss = 0.5 * (self.criterion(z0, p1) + self.criterion(z1, p0))
            return loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.06)

    return SimSiam


def make_dcl(namespace: str = "pl", weighted: bool = False):
    """A module written exactly like lightly's DCL example (SimCLR with ``DCLLoss``; ``DCLWLoss``
    with ``weighted=True``), scaled down."""
    from lightly.loss import DCLLoss, DCLWLoss
    from lightly.models.modules import SimCLRProjectionHead

    class DCL(_base(namespace).LightningModule):
        def __init__(self):
            super().__init__()
            self.backbone = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 32), nn.ReLU())
            self.projection_head = SimCLRProjectionHead(32, 32, 16)
            self.criterion = DCLWLoss() if weighted else DCLLoss()

        def forward(self, x):
            x = self.backbone(x).flatten(start_dim=1)
            z = self.projection_head(x)
            return z

        def training_step(self, batch, batch_index):
            (x0, x1) = batch[0]
            z0 = self.forward(x0)
            z1 = self.forward(x1)
            loss = self.criterion(z0, z1)
            return loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.06)

    return DCL


def dino_transform():
    """lightly's ``DINOTransform`` scaled to 8x8 digits: 2 global crops (8 px) + 2 local (4 px)."""
    from lightly.transforms import DINOTransform

    return DINOTransform(
        global_crop_size=8, local_crop_size=4, n_local_views=2, cj_prob=0.0,
        random_gray_scale=0.0, gaussian_blur=(0.0, 0.0, 0.0), solarization_prob=0.0,
    )


def make_dino(namespace: str = "pl"):
    """A module written exactly like lightly's DINO example, scaled down: ``student_*`` /
    ``teacher_*`` sub-modules, ``DINOLoss`` over 2 global + N local crops, teacher centering.
    The backbone pools globally, so it takes the 8 px global and 4 px local crops alike."""
    from lightly.loss import DINOLoss
    from lightly.models.modules import DINOProjectionHead
    from lightly.models.utils import deactivate_requires_grad, update_momentum
    from lightly.utils.scheduler import cosine_schedule

    class DINO(_base(namespace).LightningModule):
        def __init__(self):
            super().__init__()
            backbone = nn.Sequential(
                nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1)
            )
            input_dim = 16
            self.student_backbone = backbone
            self.student_head = DINOProjectionHead(input_dim, 32, 8, 64, freeze_last_layer=1)
            self.teacher_backbone = copy.deepcopy(backbone)
            self.teacher_head = DINOProjectionHead(input_dim, 32, 8, 64)
            deactivate_requires_grad(self.teacher_backbone)
            deactivate_requires_grad(self.teacher_head)
            self.criterion = DINOLoss(output_dim=64, warmup_teacher_temp_epochs=5)

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
            return loss

        def on_after_backward(self):
            self.student_head.cancel_last_layer_gradients(current_epoch=self.current_epoch)

        def configure_optimizers(self):
            optim = torch.optim.Adam(self.parameters(), lr=0.001)
            return optim

    return DINO


def make_conv_simclr(blocks=((3, 8, 1), (8, 16, 2)), head=(16, 16, 8), lr: float = 0.06):
    """lightly's SimCLR example with a conv-BN-ReLU backbone (BatchNorm everywhere): ``blocks``
    are (in, out, stride) of 3x3 convolutions, ``head`` lightly's SimCLRProjectionHead sizes; SGD
    at ``module.lr``."""
    import pytorch_lightning as pl
    from lightly.loss import NTXentLoss
    from lightly.models.modules import SimCLRProjectionHead

    class ConvSimCLR(pl.LightningModule):
        def __init__(self):
            super().__init__()
            layers = [m for i, o, s in blocks for m in
                      (nn.Conv2d(i, o, 3, stride=s, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU())]
            self.backbone = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
            self.projection_head = SimCLRProjectionHead(*head)
            self.criterion = NTXentLoss()
            self.lr = lr

        def forward(self, x):
            return self.projection_head(self.backbone(x))

        def training_step(self, batch, batch_index):
            (x0, x1) = batch[0]
            return self.criterion(self(x0), self(x1))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=self.lr)

    return ConvSimCLR()


def registered_methods() -> list[str]:
    """Every unlearning method the registry knows (built-in and installed plugins), so a new
    method is tested by every test that loops over methods."""
    from lightly_unlearn import registry

    return registry.available("method")


#: partial_reinit on the tiny CLIPModule: it has no projection head to find, so the sub-modules
#: to re-initialise are named (the last block of each tower), as a CLIP user would.
CLIP_PARTIAL_REINIT = "model.visual.transformer.resblocks.0,model.transformer.resblocks.0"


def method_hparams(method: str, clip: bool = False) -> dict:
    """Test-sized hyper-parameters: AC-like methods calibrate with a moderate beta = 1; on a
    CLIPModule (``clip=True``) partial_reinit names what to re-initialise."""
    from lightly_unlearn import registry

    defaults = registry.load("method", method).defaults
    hparams = {"beta": 1.0} if "beta" in defaults else {}
    if clip and "modules" in defaults:
        hparams["modules"] = CLIP_PARTIAL_REINIT
    return hparams


def trains_on_forget(method: str) -> bool:
    """Whether ``method``'s stream serves forget samples (``data`` is "forget" or "mixed")."""
    from lightly_unlearn import registry

    return registry.load("method", method)().needs_forget


#: The method × model test matrix's models: name -> factory(namespace) (lightly's examples).
MODEL_FACTORIES = {
    "simclr": make_simclr,
    "moco": make_moco,
    "byol": make_byol,
    "simsiam": make_simsiam,
    "dcl": make_dcl,
    "dino": make_dino,
}


def trainer_kwargs(tmp_path, **kw):
    base = dict(
        max_epochs=1,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
    )
    base.update(kw)
    return base


@pytest.fixture
def digits():
    return digits_dataset(64)


def forget_view_capture(forget, seen: dict):
    """A Callback (placed before ``UnlearnCallback``) that stores the forget samples' first view
    (``seen["v1"]``) and the extra own view, last (``seen["v3"]``), of each batch."""
    import pytorch_lightning as pl

    class Capture(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            is_forget = torch.isin(batch[2], torch.tensor(forget))
            seen["v1"] = batch[0][0][is_forget].clone()
            seen["v3"] = batch[0][-1][is_forget].clone()

    return Capture()


#: A user's model file for the ``unlearn`` CLI, written like lightly's examples (training would
#: go under ``if __name__ == "__main__":``): an MLP SimCLR, a class that does not fit its
#: checkpoint, and a BatchNorm CNN SimCLR.
CLI_MODEL_FILE = '''
import pytorch_lightning as pl
import torch
from lightly.loss import NTXentLoss
from lightly.models.modules import SimCLRProjectionHead
from torch import nn
from tiny_nets import make_backbone  # a neighbouring module: must be importable


class TinySimCLR(pl.LightningModule):
    def __init__(self, hidden: int = 32):
        super().__init__()
        self.save_hyperparameters()
        self.backbone = make_backbone(hidden)
        self.projection_head = SimCLRProjectionHead(hidden, hidden, 16)
        self.criterion = NTXentLoss()

    def forward(self, x):
        return self.projection_head(self.backbone(x).flatten(start_dim=1))

    def training_step(self, batch, batch_index):
        (x0, x1) = batch[0]
        loss = self.criterion(self.forward(x0), self.forward(x1))
        self.log("train_loss", loss, prog_bar=True, batch_size=len(x0))
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.06)


class Other(TinySimCLR):
    def __init__(self, hidden: int = 32):
        super().__init__(hidden)
        self.extra = torch.nn.Linear(2, 2)


class TinyBNSimCLR(TinySimCLR):
    """Conv-BatchNorm backbone, as lightly's ResNet examples (BatchNorm running statistics)."""

    def __init__(self, hidden: int = 32):
        super().__init__(hidden)
        self.backbone = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, hidden), nn.BatchNorm1d(hidden),
            nn.ReLU(),
        )


if __name__ == "__main__":
    trainer = pl.Trainer(max_epochs=10)
    trainer.fit(TinySimCLR())
'''

CLI_NETS_FILE = '''
from torch import nn


def make_backbone(hidden):
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, hidden), nn.ReLU())
'''


def write_cli_project(root, n_data: int = 64, n_holdout: int = 32, forget=range(0, 64, 8)) -> dict:
    """What a user of ``lightly-unlearn unlearn`` has: ``code/tiny_model.py`` (+ a neighbour),
    ``pretrained/pretrained.ckpt`` (TinySimCLR) and ``pretrained/pretrained_bn.ckpt``
    (TinyBNSimCLR), ``images/`` (digit PNGs), ``holdout/`` (other digits), ``forget.txt``."""
    import importlib.util
    import sys
    import textwrap
    from pathlib import Path

    from PIL import Image
    from sklearn.datasets import load_digits

    root = Path(root)
    code = root / "code"
    code.mkdir(parents=True)
    (code / "tiny_model.py").write_text(textwrap.dedent(CLI_MODEL_FILE))
    (code / "tiny_nets.py").write_text(textwrap.dedent(CLI_NETS_FILE))
    imgs = (load_digits().images[: n_data + n_holdout] * (255 / 16)).astype(np.uint8)
    data, holdout = root / "images", root / "holdout"
    data.mkdir()
    holdout.mkdir()
    for i, img in enumerate(imgs):
        folder = data if i < n_data else holdout
        Image.fromarray(img).convert("RGB").save(folder / f"img_{i:03d}.png")
    forget_file = root / "forget.txt"
    forget_file.write_text("# deletion request 17\n" + "\n".join(f"img_{i:03d}.png" for i in forget) + "\n")
    sys.path.insert(0, str(code))
    try:
        spec = importlib.util.spec_from_file_location("_cli_project_model", code / "tiny_model.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        (root / "pretrained").mkdir()
        checkpoints = {}
        for name, cls in (("pretrained.ckpt", module.TinySimCLR), ("pretrained_bn.ckpt", module.TinyBNSimCLR)):
            torch.manual_seed(0)
            checkpoints[name] = root / "pretrained" / name
            torch.save({"state_dict": cls(hidden=32).state_dict(), "hyper_parameters": {"hidden": 32}},
                       checkpoints[name])
    finally:
        sys.path.remove(str(code))
        sys.modules.pop("tiny_nets", None)
    return dict(code=code, data=data, holdout=holdout, forget=forget_file,
                ckpt=checkpoints["pretrained.ckpt"], ckpt_bn=checkpoints["pretrained_bn.ckpt"], tmp=root)


@pytest.fixture
def isolated_imports():
    """Undo what importing a user's model file does to ``sys.path`` and ``sys.modules``."""
    import sys

    path, modules = list(sys.path), set(sys.modules)
    yield
    sys.path[:] = path
    for name in set(sys.modules) - modules:
        if name in ("tiny_model", "tiny_nets") or name.startswith("user_"):
            del sys.modules[name]


def fake_distribution(folder, name: str, entry_points: str, modules: dict | None = None) -> None:
    """An installed distribution ``name`` in ``folder`` (put ``folder`` on ``sys.path``) that
    declares ``entry_points`` (``entry_points.txt`` text), with ``modules`` ``{file: source}``."""
    import textwrap
    from pathlib import Path

    folder = Path(folder)
    dist = folder / f"{name.replace('-', '_')}-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(entry_points)
    for file, source in (modules or {}).items():
        (folder / file).write_text(textwrap.dedent(source))
