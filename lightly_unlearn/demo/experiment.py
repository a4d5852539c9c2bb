"""One unlearning experiment (the demo and the benchmark): pretrain, Retrain, every method, audits.

Everything goes through the public API a user has — a lightly-style module, a
``ForgetRetainDataModule``, ``UnlearnCallback`` and the audit functions — so the demo and the
benchmark measure the library, not a re-implementation.

The setting (chosen in ``benchmarks/membership_signal.py``, where the figures are): 200 training
digits of which 20 are forgotten, 800 never-seen holdout digits; a 2-layer MLP SimCLR, τ = 0.2, Adam
2e-3, one full batch of 180 per epoch, 300 epochs; weak augmentations. Small data and a long
schedule make the pretrained model *leak membership*, which is what unlearning must remove.

Audit features: membership is read from **projection-head** alignment scores (K = 10 seeded
views); the backbone of this small model generalises and leaks little (members-vs-holdout AUC
0.58-0.60), so the audits' backbone default would rank methods on noise here. The linear probe and
CMIA read the backbone's clean features, as in the reference.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import Subset

from lightly_unlearn.adapters import backbone_embed_fn, head_embed_fn
from lightly_unlearn.attacks.relearn import relearn
from lightly_unlearn.audits.base import AuditResult
from lightly_unlearn.audits.features import AuditInputs, SplitFeatures, preserved_rng
from lightly_unlearn.audits.membership import compare_aucs
from lightly_unlearn.audits.runner import compute_inputs, flat_metrics, resolve_audits, run_audits
from lightly_unlearn.audits.verdict import relearn_warnings
from lightly_unlearn.callbacks.holdout_stopping import HoldoutAlignmentStopping
from lightly_unlearn.callbacks.unlearn import UnlearnCallback
from lightly_unlearn.data.datamodule import ForgetRetainDataModule
from lightly_unlearn.demo.data import DigitsViewTransform, load_digits_dataset, load_digits_images
from lightly_unlearn.demo.model import CONV_MODELS, MODELS
from lightly_unlearn.io import atomic_torch_save

#: The weak augmentation of the chosen setting (strong crops hide membership on 8x8 digits).
AUGMENTATION = {"scale": (0.8, 1.0), "shift": 0.05, "noise": 0.02, "jitter": 0.1}

#: lightly's transform arguments in the CNN setting (``SimCLRTransform`` / ``MoCoV2Transform`` at
#: ``image_size`` px): weak enough that the pretrained model leaks membership.
CNN_AUGMENTATION = {"min_scale": 0.5, "gaussian_blur": 0.0, "cj_prob": 0.5, "random_gray_scale": 0.0}

#: Methods run from the pretrained weights: hyper-parameters and epochs as a fraction of the
#: pretraining epochs. Set from the sweep in ``benchmarks/unlearning.py`` (docs/benchmarks/).
DEFAULT_METHODS: dict[str, tuple[dict[str, Any], float]] = {
    "finetune": ({}, 0.1),  # 30 epochs
    "gradient_ascent": ({}, 0.02),  # 6 epochs
    "neggrad": ({"lam": 1.0}, 0.05),  # 15 epochs
    "l1_sparse": ({"lam": 5e-5}, 0.02),  # 6 epochs
    "ac": ({"alpha": 1.0, "beta": 4.0}, 0.05),  # 15 epochs
    # removes rather than hides: its relearned AUC stays near Retrain's (docs/benchmarks/relearning.md)
    "partial_reinit": ({"stages": 1}, 0.1),  # 30 epochs
}

#: The calibrated mode: AC run for at most 10 % of the pretraining epochs, stopped by
#: ``HoldoutAlignmentStopping`` once the forget samples align like never-seen samples.
CALIBRATED_METHODS: dict[str, tuple[dict[str, Any], float]] = {
    "ac": ({"alpha": 1.0, "beta": 4.0}, 0.1),
}

#: Never-seen samples the relearning test scores: its AUC's error is set by the small forget set
#: (20 samples: standard error 0.066 against 400 holdout samples, 0.065 against 800), so 400
#: halve the test's audits at no cost in precision, and still resolve TPR at 1 % FPR.
RELEARN_HOLDOUT = 400

#: Columns of the Avg. Gap to Retrain (the paper's headline comparison).
GAP_METRICS = ("ra", "ta", "ua", "emia", "cmia")


class Identity:
    """The digits are already tensors: the clean (evaluation) transform is the identity."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x


@dataclass
class Setting:
    """What is trained and audited. Defaults: the demo's embedded setting."""

    model: str = "simclr"
    n_train: int = 200
    forget: str = "random"  # "random" or "class:<digit>"
    forget_fraction: float = 0.1
    n_holdout: int = 800
    width: int = 256
    temperature: float = 0.2
    lr: float = 2e-3
    batch_size: int = 180
    pretrain_epochs: int = 300
    num_views: int = 10
    seed: int = 0
    #: "mlp": 8x8 digit tensors, MLP, Adam, one full batch per epoch (the demo).
    #: "cnn": digits as ``image_size`` px RGB images through lightly's transforms, a BatchNorm CNN,
    #: SGD, several steps per epoch (where users train; see :func:`cnn_setting`).
    arch: str = "mlp"
    image_size: int = 16
    #: Learning rate of the unlearning runs (None: the pretraining ``lr``); Retrain always uses ``lr``.
    unlearn_lr: float | None = None


def cnn_setting(**overrides: Any) -> Setting:
    """The BatchNorm CNN setting: 200 digits at 16 px RGB (20 forgotten), 400 holdout; four conv-BN
    blocks (32-64-128-128) with lightly's projection head, NT-Xent τ = 0.2, SGD lr 0.06 (momentum
    0.9, weight decay 5e-4), batch 50 (3-4 steps per epoch), 300 epochs. Unlearning uses the same
    SGD at 10x lower lr (0.006), as recommended to users."""
    base = dict(arch="cnn", n_holdout=400, lr=0.06, unlearn_lr=0.006, batch_size=50, pretrain_epochs=300)
    return Setting(**{**base, **overrides})


@dataclass
class Run:
    """One row of the results table."""

    name: str
    hyperparameters: dict[str, Any]
    epochs: int
    seconds: float
    steps: int
    metrics: dict[str, float] = field(default_factory=dict)
    gap_matrix: np.ndarray | None = None
    #: per-sample alignment scores of the relearning test (``forget_after``, ``holdout_after``, ...)
    relearn_scores: dict[str, np.ndarray] | None = None


def run_state(run: Run) -> dict[str, Any]:
    """``run`` as plain data (dicts, numbers, tensors) for a ``weights_only`` cache file."""
    state = asdict(run)
    state["gap_matrix"] = None if run.gap_matrix is None else torch.as_tensor(run.gap_matrix)
    if run.relearn_scores is not None:
        state["relearn_scores"] = {k: torch.as_tensor(v) for k, v in run.relearn_scores.items()}
    return state


def run_from_state(state: Mapping[str, Any]) -> Run:
    gap, scores = state.get("gap_matrix"), state.get("relearn_scores")
    return Run(**{**state, "gap_matrix": None if gap is None else np.asarray(gap),
                  "relearn_scores": None if scores is None else {k: np.asarray(v) for k, v in scores.items()}})


def read_cache(path: str | Path) -> Any:
    """A cache file's content, loaded with ``weights_only=True``: plain tensors, dicts, lists and
    numbers. Cache folders are shared and their file names predictable, so a file planted there
    is read as data and never runs code; one that is not plain data is refused."""
    from lightly_unlearn.io import load_checkpoint

    try:
        return load_checkpoint(path)
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RuntimeError(
            f"cache file {path} is not plain data (torch.load(weights_only=True) refused it: "
            f"{first[:200]}); it was not written by this version of lightly-unlearn. Delete it, or "
            "choose another cache folder."
        ) from None


def _quiet_lightning() -> None:
    """The demo trains dozens of tiny models: keep Lightning's per-fit banners out of the way."""
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    for name in ("lightning.pytorch", "pytorch_lightning", "lightning.fabric", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)


def split(setting: Setting) -> tuple[Subset, Subset, list[int]]:
    """Seeded train / holdout subsets of the digits and the forget positions in ``train``."""
    data = load_digits_dataset() if setting.arch == "mlp" else load_digits_images(setting.image_size)
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(setting.seed))
    if setting.n_train + setting.n_holdout > len(data):
        raise ValueError(f"n_train + n_holdout must be at most {len(data)}.")
    train = Subset(data, order[: setting.n_train].tolist())
    holdout = Subset(data, order[setting.n_train : setting.n_train + setting.n_holdout].tolist())
    if setting.forget == "random":
        n_forget = max(2, round(setting.forget_fraction * setting.n_train))
        gen = torch.Generator().manual_seed(setting.seed + 1)
        forget = sorted(torch.randperm(setting.n_train, generator=gen)[:n_forget].tolist())
    elif setting.forget.startswith("class:"):
        digit = int(setting.forget.split(":", 1)[1])
        forget = [i for i in range(len(train)) if train[i][1] == digit]
    else:
        raise ValueError(f"forget must be 'random' or 'class:<digit>'; got {setting.forget!r}.")
    return train, holdout, forget


class Experiment:
    """Pretrain once, then Retrain and each method from the pretrained weights, audited alike.

    ``relearn_epochs > 0`` adds the relearning test to every row (the original, Retrain and every
    method alike): a copy trains that many epochs on the retain set at ``relearn_lr`` (default:
    the unlearning lr, the same for every row) and its forget-vs-holdout AUC is measured on the
    projection-head alignment scores, as the other membership numbers here.
    """

    def __init__(self, setting: Setting, progress: Callable[[str], Any] = print,
                 cache_dir: str | Path | None = None, relearn_epochs: int = 0,
                 relearn_lr: float | None = None) -> None:
        _quiet_lightning()
        if setting.arch not in ("mlp", "cnn"):
            raise ValueError(f"Setting.arch must be 'mlp' or 'cnn'; got {setting.arch!r}.")
        self.setting = setting
        self.progress = progress
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.relearn_epochs = int(relearn_epochs)
        self.relearn_lr = float(relearn_lr or setting.unlearn_lr or setting.lr)
        self.train, self.holdout, self.forget = split(setting)
        self.eval_transform: Callable = Identity()
        if setting.arch == "mlp":
            self.transform: Callable = DigitsViewTransform(**AUGMENTATION)
        else:
            import torchvision.transforms as T
            from lightly.transforms import MoCoV2Transform, SimCLRTransform
            from lightly.transforms.utils import IMAGENET_NORMALIZE

            cls = MoCoV2Transform if setting.model == "moco" else SimCLRTransform
            self.transform = cls(input_size=setting.image_size, **CNN_AUGMENTATION)
            self.eval_transform = T.Compose([T.ToTensor(), T.Normalize(**IMAGENET_NORMALIZE)])
        self.n_retain = len(self.train) - len(self.forget)
        self.audits = resolve_audits(("emia", "linear_probe", "cmia", "alignment_matrix"))
        self.original: Run | None = None
        self._pretrained_state: dict[str, torch.Tensor] | None = None
        self._before: dict[str, AuditResult] | None = None

    # -- building blocks ---------------------------------------------------------------------------
    def datamodule(self, batch_size: int | None = None) -> ForgetRetainDataModule:
        bs = batch_size or min(self.setting.batch_size, self.n_retain)
        return ForgetRetainDataModule(
            self.train, self.forget, self.transform, batch_size=bs, holdout=self.holdout,
            seed=self.setting.seed, eval_transform=self.eval_transform,
        )

    def new_model(self, lr: float | None = None) -> pl.LightningModule:
        s = self.setting
        models = MODELS if s.arch == "mlp" else CONV_MODELS
        return models[s.model](width=s.width, temperature=s.temperature, lr=lr or s.lr)

    def _cache_path(self, what: str) -> Path | None:
        """Where the pretrained model / Retrain row of this exact setting is kept between runs."""
        if self.cache_dir is None:
            return None
        key = hashlib.sha1(json.dumps(setting_dict(self.setting), sort_keys=True).encode()).hexdigest()[:12]
        return self.cache_dir / f"{self.setting.arch}_{self.setting.model}_seed{self.setting.seed}_{key}_{what}.pt"

    def _load(self, what: str) -> Any:
        path = self._cache_path(what)
        return read_cache(path) if path is not None and path.is_file() else None

    def _save(self, what: str, obj: Any) -> None:
        path = self._cache_path(what)
        if path is not None:
            atomic_torch_save(obj, path)  # plain data, read back by read_cache

    def fit(self, model: pl.LightningModule, dm: ForgetRetainDataModule, epochs: int,
            callbacks: list) -> tuple[int, float, int]:
        """Train; returns the epochs actually run, wall seconds and optimizer steps."""
        trainer = pl.Trainer(
            max_epochs=epochs, accelerator="cpu", devices=1, logger=False,
            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
            callbacks=callbacks,
        )
        start = time.perf_counter()
        trainer.fit(model, datamodule=dm)
        return int(trainer.current_epoch), time.perf_counter() - start, int(trainer.global_step)

    def audit(self, model: pl.LightningModule) -> dict[str, AuditResult]:
        """Backbone clean features (probe, CMIA) and head views (EMIA, alignment matrix)."""
        dm, s = self.datamodule(), self.setting
        common = dict(
            forget=dm.forget, retain=dm.retain, holdout=dm.holdout, eval_transform=dm.eval_transform,
            view_transform=dm.view_transform, num_views=s.num_views, seed=s.seed, module=model,
        )
        clean = compute_inputs(backbone_embed_fn(model), frozenset({"clean", "retain", "labels"}), **common)
        views = compute_inputs(head_embed_fn(model), frozenset({"views", "retain"}), **common)

        def merge(a: SplitFeatures | None, b: SplitFeatures | None) -> SplitFeatures | None:
            if a is None or b is None:
                return a or b
            assert torch.equal(a.keys, b.keys)  # same seeded sample
            return SplitFeatures(a.keys, a.targets, clean=a.clean, views=b.views)

        inputs = AuditInputs(
            retain=merge(clean.retain, views.retain),
            forget=merge(clean.forget, views.forget),
            holdout=merge(clean.holdout, views.holdout),
        )
        return run_audits(self.audits, inputs, before=self._before)

    def with_relearn(self, run: Run, state: Mapping[str, torch.Tensor], lr: float | None = None) -> Run:
        """``run`` with the relearning test of the model holding ``state`` (built with ``lr``), as
        this experiment asks (none: no ``relearn_*`` numbers); a cached run keeps its test when
        it was made with the same epochs, lr and holdout sample."""
        kept = {k: v for k, v in run.metrics.items() if not k.startswith("relearn_")}
        done = tuple(run.metrics.get(f"relearn_{k}") for k in ("epochs", "lr", "holdout_samples"))
        if not self.relearn_epochs:
            run.metrics, run.relearn_scores = kept, None
            return run
        wanted = (self.relearn_epochs, self.relearn_lr, min(RELEARN_HOLDOUT, len(self.holdout)))
        if run.relearn_scores is not None and done == wanted:
            return run
        with preserved_rng():  # a memory bank is not in the state: drawn alike with or without a cache
            torch.manual_seed(self.setting.seed + 2000)
            model = self.new_model(lr)
        model.load_state_dict(state)
        result = relearn(model, self.datamodule(), self.relearn_epochs, lr=self.relearn_lr,
                         seed=self.setting.seed, embed="head", num_views=self.setting.num_views,
                         num_samples=RELEARN_HOLDOUT)
        run.metrics, run.relearn_scores = kept | result.metrics, dict(result.scores)
        return run

    def _row(self, name: str, hp: Mapping[str, Any], epochs: int, seconds: float, steps: int,
             results: Mapping[str, AuditResult]) -> Run:
        am = results.get("alignment_matrix")
        gap = None if am is None else am.arrays.get("gap_matrix")
        return Run(name, dict(hp), epochs, seconds, steps, flat_metrics(results), gap)

    def _save_pretrained(self) -> None:
        self._save("pretrained", {
            "state": self._pretrained_state,
            "before": {k: v.to_state() for k, v in self._before.items()},
            "original": run_state(self.original),
        })  # fmt: skip

    # -- the protocol ----------------------------------------------------------------------------------
    def pretrain(self) -> Run:
        s = self.setting
        cached = self._load("pretrained")
        if cached is not None:
            self._pretrained_state = cached["state"]
            self._before = {k: AuditResult.from_state(v) for k, v in cached["before"].items()}
            self.original = run_from_state(cached["original"])
            self.progress(f"original   pretrained (cached: {self._cache_path('pretrained')})")
            known = dict(self.original.metrics)
            self.original = self.with_relearn(self.original, self._pretrained_state)
            if self.original.metrics != known:  # a relearning test this cache did not hold yet
                self._save_pretrained()
            return self.original
        torch.manual_seed(s.seed)
        model = self.new_model()
        _, seconds, steps = self.fit(model, self.datamodule(), s.pretrain_epochs, [])
        self._pretrained_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        results = self.audit(model)
        self._before = results
        self.original = self._row("original", {}, s.pretrain_epochs, seconds, steps, results)
        self.original = self.with_relearn(self.original, self._pretrained_state)
        self._save_pretrained()
        self.progress(f"original   pretrained {s.pretrain_epochs} epochs in {seconds:5.1f} s")
        return self.original

    def unlearn(self, method: str, hyperparameters: Mapping[str, Any] | None = None,
                epochs: int | None = None, calibrated: bool = False, check_every: int = 1,
                label: str | None = None) -> Run:
        """Run ``method`` from the pretrained weights (Retrain: from scratch, same recipe).

        ``calibrated``: at most ``epochs``, stopped by :class:`HoldoutAlignmentStopping`, which
        checks every ``check_every`` epochs. ``label`` names the row (default: the method's
        name, with ``+stop`` when calibrated).
        """
        if self._pretrained_state is None:
            self.pretrain()
        s = self.setting
        hp = dict(hyperparameters or {})
        callback = UnlearnCallback(method, **hp)
        name = label or callback.method.name + ("+stop" if calibrated else "")
        retrain = callback.method.name == "retrain"
        cached = self._load("retrain") if retrain else None
        if cached is not None and "state" in cached:  # the row and Retrain's weights
            run = run_from_state(cached["run"])
            known = dict(run.metrics)
            run = self.with_relearn(run, cached["state"], s.lr)
            if run.metrics != known:
                self._save("retrain", {"run": run_state(run), "state": cached["state"]})
            return run
        stopping = HoldoutAlignmentStopping(check_every_n_epochs=check_every)
        callbacks: list = [callback] + ([stopping] if calibrated else [])
        epochs = epochs if epochs is not None else s.pretrain_epochs
        batch = min(s.batch_size, len(self.forget)) if callback.method.data == "forget" else None
        torch.manual_seed(s.seed + 1000)
        model = self.new_model(s.lr if retrain else s.unlearn_lr)
        model.load_state_dict(self._pretrained_state)
        trained, seconds, steps = self.fit(model, self.datamodule(batch), epochs, callbacks)
        run = self._row(name, hp, trained, seconds, steps, self.audit(model))
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        run = self.with_relearn(run, state, s.lr if retrain else s.unlearn_lr)
        if retrain:
            self._save("retrain", {"run": run_state(run), "state": state})
        self.progress(f"{name:<16} {trained:4d} epochs in {seconds:5.1f} s")
        return run


def gaps(run: Run, retrain: Run) -> dict[str, float]:
    """Avg. Gap to Retrain over RA/TA/UA/EMIA/CMIA, the indistinguishability gap, the gap of TPR
    at 1 % FPR (points), and, after the relearning test, ``relearn_gap`` (``|relearned AUC -
    Retrain's relearned AUC| * 100``) with the paired difference to Retrain's relearned AUC
    (:func:`relearn_versus_retrain`)."""
    m, r = run.metrics, retrain.metrics
    per = {k: abs(m[k] - r[k]) for k in GAP_METRICS if k in m and k in r}
    out = {
        "avg_gap": float(np.mean(list(per.values()))) if per else float("nan"),
        "indist_gap": abs(m["forget_holdout_auc"] - r["forget_holdout_auc"]) * 100,
        **{f"gap_{k}": v for k, v in per.items()},
    }
    tpr = "forget_holdout_tpr_at_1pct_fpr"
    if tpr in m and tpr in r:
        out["tpr_gap"] = abs(m[tpr] - r[tpr])
    if "relearn_forget_holdout_auc" in m and "relearn_forget_holdout_auc" in r:
        out["relearn_gap"] = abs(m["relearn_forget_holdout_auc"] - r["relearn_forget_holdout_auc"]) * 100
        out.update(relearn_versus_retrain(run, retrain))
    return out


def relearn_versus_retrain(run: Run, retrain: Run, n_resamples: int = 2000) -> dict[str, float]:
    """The relearned AUC minus Retrain's relearned AUC, with a paired 95 % bootstrap interval over
    the same forget and holdout samples (both models are audited on the same seeded samples and
    views), and ``relearned_beyond_retrain``: 1 when the run's relearning test raised
    ``relearned`` *and* that interval lies above 0 (membership came back beyond what a model
    that never saw the forget set shows under the same test), else 0."""
    a, b = run.relearn_scores, retrain.relearn_scores
    if a is None or b is None:
        return {}
    c = compare_aucs(a["forget_after"], a["holdout_after"], b["forget_after"], b["holdout_after"],
                     n_resamples=n_resamples, seed=0)  # fmt: skip
    came_back = relearn_warnings(run.metrics) != [] and c.difference_ci[0] > 0
    return {"relearn_vs_retrain": c.difference, "relearn_vs_retrain_ci_low": c.difference_ci[0],
            "relearn_vs_retrain_ci_high": c.difference_ci[1],
            "relearned_beyond_retrain": float(came_back)}  # fmt: skip


def summarise(runs: list[Run]) -> list[dict[str, Any]]:
    """Table rows: metrics, gaps to Retrain and cost relative to Retrain."""
    retrain = next(r for r in runs if r.name == "retrain")
    rows = []
    for run in runs:
        row = {"method": run.name, "hyperparameters": run.hyperparameters, "epochs": run.epochs,
               **run.metrics, **gaps(run, retrain),
               "seconds": run.seconds, "steps": run.steps,
               "time_vs_retrain": run.seconds / retrain.seconds,
               "steps_vs_retrain": run.steps / max(retrain.steps, 1)}
        rows.append(row)
    return rows


def setting_dict(setting: Setting) -> dict[str, Any]:
    return asdict(setting) | {"augmentation": AUGMENTATION if setting.arch == "mlp" else CNN_AUGMENTATION}
