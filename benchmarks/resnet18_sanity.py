"""Does unlearning keep lightly's own ResNet-18 examples intact? (AC's default must never collapse.)

lightly's SimCLR and MoCo example modules, unchanged in style (torchvision ResNet-18 backbone with
BatchNorm, lightly projection heads, SGD lr 0.06, ``import pytorch_lightning as pl``), pretrained
briefly on 400 scikit-learn digits at 32 px RGB (32 forgotten, batch 64, lightly's transforms).
Then 1-2 epochs of fine-tune and of AC at several β (the default included), at two unlearning
learning rates (the pretraining lr 0.06 and 10x lower, 0.006). Per run it reports:

* the mean cosine between *different* samples' clean embeddings (backbone and head) and the
  head outputs' std: a collapsed encoder maps every image the same way (cosine near 1);
* RA / TA (linear probe on backbone features) and their difference to fine-tune's at the same lr;
* the audits' ``collapse`` warning (``lightly_unlearn.audits.verdict``) and the forget-vs-holdout AUC.

    OMP_NUM_THREADS=1 python benchmarks/resnet18_sanity.py --out benchmarks/results/resnet18_sanity.json
    python benchmarks/resnet18_sanity.py --quick     # smoke run
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from typing import Any

import pytorch_lightning as pl
import torch
import torchvision
from lightly.loss import NTXentLoss
from lightly.models.modules import MoCoProjectionHead, SimCLRProjectionHead
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.transforms import MoCoV2Transform, SimCLRTransform
from lightly.utils.scheduler import cosine_schedule
from torch import nn

from lightly_unlearn.audits.verdict import assess
from lightly_unlearn.demo.experiment import Experiment, Run, cnn_setting
from lightly_unlearn.io import atomic_write_json


class SimCLR(pl.LightningModule):
    """lightly's SimCLR example (ResNet-18), the lr an argument for the sensitivity runs."""

    def __init__(self, lr: float = 0.06):
        super().__init__()
        self.lr = lr
        resnet = torchvision.models.resnet18()
        self.backbone = nn.Sequential(*list(resnet.children())[:-1])
        self.projection_head = SimCLRProjectionHead(512, 2048, 2048)
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
        return loss

    def configure_optimizers(self):
        optim = torch.optim.SGD(self.parameters(), lr=self.lr)
        return optim


class MoCo(pl.LightningModule):
    """lightly's MoCo example (ResNet-18, momentum encoder, memory bank)."""

    def __init__(self, lr: float = 0.06):
        super().__init__()
        self.lr = lr
        resnet = torchvision.models.resnet18()
        self.backbone = nn.Sequential(*list(resnet.children())[:-1])
        self.projection_head = MoCoProjectionHead(512, 512, 128)

        self.backbone_momentum = copy.deepcopy(self.backbone)
        self.projection_head_momentum = copy.deepcopy(self.projection_head)

        deactivate_requires_grad(self.backbone_momentum)
        deactivate_requires_grad(self.projection_head_momentum)

        self.criterion = NTXentLoss(memory_bank_size=(4096, 128))

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
        return loss

    def configure_optimizers(self):
        optim = torch.optim.SGD(self.parameters(), lr=self.lr)
        return optim


EXAMPLES = {"simclr": (SimCLR, SimCLRTransform), "moco": (MoCo, MoCoV2Transform)}


class ExampleExperiment(Experiment):
    """The benchmark's protocol and audits around lightly's unchanged example modules."""

    def new_model(self, lr: float | None = None) -> pl.LightningModule:
        return EXAMPLES[self.setting.model][0](lr=lr or self.setting.lr)


@torch.no_grad()
def embedding_stats(model: nn.Module, exp: Experiment, n: int = 256) -> dict[str, float]:
    """Mean cosine between different samples' clean embeddings (backbone, head) and head std."""
    model.eval()
    x = torch.stack([exp.eval_transform(exp.holdout[i][0]) for i in range(min(n, len(exp.holdout)))])
    h = model.backbone(x).flatten(start_dim=1)
    z = model.projection_head(h)

    def mean_cos(e: torch.Tensor) -> float:
        u = nn.functional.normalize(e, dim=1)
        s = u.sum(0)
        return float(((s @ s) - len(u)) / (len(u) * (len(u) - 1)))

    return {"cos_backbone": mean_cos(h), "cos_head": mean_cos(z), "head_std": float(z.std(dim=0).mean())}


def record(run: Run, lr: float | None, model: nn.Module, exp: Experiment,
           before: Any) -> dict[str, Any]:
    """One table row: embedding statistics, RA/TA, the audits' collapse warning."""
    verdict = assess(before, run.metrics)
    row = {"model": exp.setting.model, "method": run.name, "hyperparameters": run.hyperparameters,
           "lr": lr, "epochs": run.epochs, "seconds": run.seconds, "steps": run.steps,
           **embedding_stats(model, exp), "ra": run.metrics.get("ra"), "ta": run.metrics.get("ta"),
           "forget_holdout_auc": run.metrics.get("forget_holdout_auc"),
           "cross_cosine_holdout": run.metrics.get("cross_cosine_holdout"),
           "collapse": "collapse" in verdict.codes, "warnings": verdict.codes}
    print(f"  {row['method']:<9} {str(row['hyperparameters']):<16} lr {lr}  "
          f"cos bb {row['cos_backbone']:.2f} head {row['cos_head']:.2f} std {row['head_std']:.2f}  "
          f"RA {row['ra']:.1f} TA {row['ta']:.1f}  collapse {row['collapse']}", flush=True)
    return row


#: (key, header, format) of the table columns.
COLUMNS = (
    ("cos_backbone", "mean cos backbone", "{:.2f}"), ("cos_head", "mean cos head", "{:.2f}"),
    ("head_std", "head std", "{:.2f}"), ("ra", "RA", "{:.1f}"), ("ta", "TA", "{:.1f}"),
    ("ta_vs_finetune", "TA − fine-tune", "{:+.1f}"), ("forget_holdout_auc", "F-vs-H AUC", "{:.2f}"),
)


def markdown(payload: dict[str, Any]) -> str:
    """The result table: one row per run; ``collapse`` is the audits' warning. A method without
    hyper-parameters ran with its defaults of the version that wrote the file."""
    head = ["model", "run", "unlearning lr", *(h for _, h, _ in COLUMNS), "collapse warning"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in payload["rows"]:
        hp = " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                      for k, v in r["hyperparameters"].items()) or "defaults"
        run = r["method"] if r["method"] in ("original", "finetune") else f"{r['method']} {hp}"
        cells = [fmt.format(r[k]) if r.get(k) is not None else "–" for k, _, fmt in COLUMNS]
        lr = "–" if r["lr"] is None else f"{r['lr']:g}"
        lines.append("| " + " | ".join([r["model"], run, lr, *cells, "yes" if r["collapse"] else "no"]) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["simclr", "moco"], choices=sorted(EXAMPLES))
    p.add_argument("--pretrain-epochs", type=int, default=10)
    p.add_argument("--epochs", type=int, nargs="+", default=[2], help="unlearning epochs")
    p.add_argument("--lrs", type=float, nargs="+", default=[0.06, 0.006], help="unlearning learning rates")
    p.add_argument("--betas", type=float, nargs="*", default=[0.0, 1.0],
                   help="AC's β values besides AC with its defaults (always run)")
    p.add_argument("--extra-encoders", nargs="*", default=[], choices=["online", "momentum"],
                   help="also AC (default β) with its extra view through this encoder")
    p.add_argument("--ac-options", nargs="*", default=[], metavar="K=V[,K=V]",
                   help="also AC with these string options, e.g. extra_encoder=online")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache", default=None, help="folder for the pretrained model (reused by later runs)")
    p.add_argument("--quick", action="store_true", help="100 digits, 1 pretraining epoch, 1 lr, 1 β")
    p.add_argument("--out", default="benchmarks/results/resnet18_sanity.json")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    sizes = dict(n_train=400, n_holdout=400, forget_fraction=0.08, pretrain_epochs=args.pretrain_epochs)
    if args.quick:
        sizes = dict(n_train=100, n_holdout=64, forget_fraction=0.16, pretrain_epochs=1)
        args.models, args.lrs, args.betas, args.epochs = args.models[:1], args.lrs[:1], args.betas[:1], [1]
        args.extra_encoders = args.extra_encoders[:1]

    rows: list[dict[str, Any]] = []
    start = time.perf_counter()
    for model_name in args.models:
        setting = cnn_setting(model=model_name, image_size=32, batch_size=64, lr=0.06, num_views=4,
                              seed=args.seed, **sizes)
        exp = ExampleExperiment(setting, progress=lambda line: print("  " + line, flush=True), cache_dir=args.cache)
        exp.transform = EXAMPLES[model_name][1](input_size=32, gaussian_blur=0.0)
        models: list[nn.Module] = []
        fit = exp.fit

        def keep(model, dm, epochs, callbacks, _fit=fit, _models=models):
            _models.append(model)
            return _fit(model, dm, epochs, callbacks)

        exp.fit = keep  # type: ignore[method-assign]
        print(f"== {model_name}: pretraining ResNet-18 {setting.pretrain_epochs} epochs", flush=True)
        original = exp.pretrain()
        before = exp._before
        if not models:  # loaded from --cache: nothing was fitted
            models.append(exp.new_model())
            models[-1].load_state_dict(exp._pretrained_state)
        configs: list[tuple[str, dict[str, Any]]] = [("finetune", {}), ("ac", {})]
        configs += [("ac", {"beta": b}) for b in args.betas]
        configs += [("ac", {"extra_encoder": e}) for e in args.extra_encoders]
        configs += [("ac", dict(kv.split("=", 1) for kv in opts.split(","))) for opts in args.ac_options]

        rows.append(record(original, None, models[-1], exp, before))
        for lr in args.lrs:
            exp.setting.unlearn_lr = lr
            for epochs in args.epochs:
                base = None
                for method, hp in configs:
                    run = exp.unlearn(method, hp, epochs)
                    row = record(run, lr, models[-1], exp, before)
                    if method == "finetune":
                        base = row
                    row["ra_vs_finetune"] = row["ra"] - base["ra"]
                    row["ta_vs_finetune"] = row["ta"] - base["ta"]
                    rows.append(row)
    payload = {"rows": rows, "seconds": time.perf_counter() - start, "command": " ".join(sys.argv),
               "setting": {"n_train": sizes["n_train"], "n_holdout": sizes["n_holdout"],
                           "forget": round(sizes["forget_fraction"] * sizes["n_train"]),
                           "image_size": 32, "batch_size": 64, "pretrain_lr": 0.06,
                           "pretrain_epochs": sizes["pretrain_epochs"], "seed": args.seed}}
    atomic_write_json(args.out, payload)
    print(f"Wrote {args.out} ({payload['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
