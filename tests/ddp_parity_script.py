"""Run by tests/test_ddp.py: unlearning + audits, 1 process or Lightning DDP (gloo, CPU).

``python ddp_parity_script.py OUT DEVICES`` runs AC and NegGrad on the same tiny setup and writes
``OUT/probe_<method>.pt`` (global rank 0 only) with per-step global losses, final weights, audit
numbers, the forget masks seen per key, the keys each rank trained on, and which rank replaced
which file. With DEVICES=2 it also checks per-row NT-Xent terms with ``gather_distributed``
against the single-process rows, and the loader's behaviour on an odd-sized dataset.

The setup makes the two runs comparable step by step: the global batch is the whole training
set (16 samples: 1 x 16 or 2 x 8), the training views are deterministic (identity and
horizontal flip; random augmentations would be drawn from different RNG streams), the projection
head has no BatchNorm (per-device batch statistics differ from full-batch ones), the criterion
gathers negatives across devices, and AC's forget set has two samples so each one's partner is
the other.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).parent))

import lightning.pytorch as L  # noqa: E402
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from conftest import digits_dataset, make_simclr  # noqa: E402

N_TRAIN, N_HOLDOUT, FORGET, EPOCHS = 16, 9, [3, 10], 3
CLIP_FORGET = [1, 3, 5, 8, 10, 13]  # retrieval audits rank within galleries of at least 5 pairs


def transforms():
    import torchvision.transforms as T
    from lightly.transforms import SimCLRViewTransform
    from lightly.transforms.multi_view_transform import MultiViewTransform

    view0 = T.ToTensor()
    view1 = T.Compose([T.RandomHorizontalFlip(p=1.0), T.ToTensor()])
    audit_view = SimCLRViewTransform(
        input_size=8, gaussian_blur=0.0, random_gray_scale=0.0, cj_prob=0.0, normalize=None
    )
    return MultiViewTransform([view0, view1]), audit_view


def make_model():
    from lightly.loss import NTXentLoss

    torch.manual_seed(0)
    model = make_simclr("L")(batch_norm=False)
    model.criterion = NTXentLoss(gather_distributed=True)  # in-batch negatives from all devices
    return model


def _gather_objects(obj):
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


class Probe(L.Callback):
    """Records what each rank saw; everything is gathered to rank 0."""

    def __init__(self, unlearn):
        self.unlearn = unlearn
        self.steps, self.batches, self.replaced, self.rows = [], [], [], None

    def setup(self, trainer, pl_module, stage):
        real = os.replace
        rank = trainer.global_rank

        def spy(src, dst, *a, **k):
            self.replaced.append((rank, str(dst)))
            return real(src, dst, *a, **k)

        os.replace = spy
        self._real_replace = real

    def teardown(self, trainer, pl_module, stage):
        os.replace = self._real_replace

    def on_train_start(self, trainer, pl_module):
        if trainer.world_size > 1:
            self.rows = check_rows(trainer.global_rank, trainer.world_size)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        ctx = self.unlearn._objective.step  # set by UnlearnCallback (listed before this probe)
        self.batches.append(
            {
                "epoch": trainer.current_epoch,
                "keys": [int(k) for k in batch[2]],
                "forget": [bool(f) for f in ctx.forget.tolist()],
            }
        )

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.steps.append(float(outputs["loss"].detach()))


def check_rows(rank: int, world: int) -> dict:
    """Per-row terms: gathered NT-Xent on a shard vs single-process NT-Xent on the full batch."""
    from lightly.loss import NTXentLoss

    from lightly_unlearn.losses.rows import ntxent_row_terms

    g = torch.Generator().manual_seed(1)
    n = 4 * world
    z0, z1 = torch.randn(n, 8, generator=g), torch.randn(n, 8, generator=g)
    sl = slice(rank * 4, rank * 4 + 4)
    ref = ntxent_row_terms(NTXentLoss(), z0, z1).loss.view(2, n)[:, sl]
    gathered = ntxent_row_terms(NTXentLoss(gather_distributed=True), z0[sl], z1[sl])
    local = ntxent_row_terms(NTXentLoss(), z0[sl], z1[sl])
    return {
        "gathered_vs_full": float((gathered.loss.view(2, 4) - ref).abs().max()),
        "local_only_vs_full": float((local.loss.view(2, 4) - ref).abs().max()),
    }


def run(out: Path, devices: int, method: str) -> None:
    from lightning.pytorch.callbacks import ModelCheckpoint

    from lightly_unlearn import AuditCallback, ForgetRetainDataModule, UnlearnCallback
    from lightly_unlearn.audits.runner import flat_metrics
    from lightly_unlearn.callbacks.receipt import ReceiptCallback

    train_t, audit_view = transforms()
    dm = ForgetRetainDataModule(
        digits_dataset(N_TRAIN),
        FORGET,
        train_t,
        batch_size=N_TRAIN // devices,
        holdout=digits_dataset(N_HOLDOUT, offset=200),
        seed=0,
    )
    dm.view_transform = audit_view  # audits draw seeded random augmentations per sample key
    hp = {"alpha": 1.0, "beta": 1.0} if method == "ac" else {}
    unlearn = UnlearnCallback(method, **hp)
    audit = AuditCallback(
        audits=("emia", "linear_probe", "cmia", "alignment_matrix"), num_views=3, batch_size=8
    )
    probe = Probe(unlearn)
    root = out / f"{method}_{devices}"
    trainer = L.Trainer(
        max_epochs=EPOCHS,
        accelerator="cpu",
        devices=devices,
        strategy="ddp" if devices > 1 else "auto",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(root),
        callbacks=[
            unlearn,
            audit,
            probe,
            ReceiptCallback(),
            ModelCheckpoint(dirpath=str(root / "ckpt")),
        ],
    )
    model = make_model()
    trainer.fit(model, datamodule=dm)

    steps = torch.tensor(probe.steps)
    if devices > 1:  # each rank returns its share of the global objective: the mean is the loss
        steps = trainer.strategy.all_gather(steps).mean(0)
    batches = _gather_objects(probe.batches)
    replaced = _gather_objects(probe.replaced)
    rows = _gather_objects(probe.rows)
    odd = odd_dataset_keys(devices)
    if trainer.is_global_zero:
        torch.save(
            {
                "steps": steps.tolist(),
                "weights": {k: v.detach().clone() for k, v in model.state_dict().items()},
                "before": flat_metrics(audit.before),
                "after": flat_metrics(audit.after),
                "batches": batches,
                "replaced": replaced,
                "rows": rows,
                "odd": odd,
                "root": str(root),
            },
            out / f"probe_{method}_{devices}.pt",
        )


def run_clip(out: Path, devices: int) -> None:
    """The CLIP audits' features at fit start (before any step), 1 process or 2: each rank must
    embed only its shard, and the gathered features and audit numbers equal one process's."""
    from lightly_unlearn import AuditCallback, CLIPModule, ForgetRetainDataModule
    from lightly_unlearn.audits import clip_features
    from lightly_unlearn.audits import inputs as audit_inputs
    from lightly_unlearn.audits.runner import flat_metrics
    from lightly_unlearn.clip import DIGIT_NAMES, DIGIT_TEMPLATES, CaptionDataset
    from lightly_unlearn.clip.data import tiny_clip_kwargs

    torch.manual_seed(0)
    module = CLIPModule(model_name="ViT-B-32", model_kwargs=tiny_clip_kwargs(width=32, embed_dim=16))
    pairs = CaptionDataset(digits_dataset(N_TRAIN), DIGIT_NAMES, DIGIT_TEMPLATES)
    holdout = CaptionDataset(digits_dataset(N_HOLDOUT, offset=200), DIGIT_NAMES, DIGIT_TEMPLATES)
    dm = ForgetRetainDataModule(pairs, CLIP_FORGET, module.preprocess_val, batch_size=N_TRAIN // devices,
                                holdout=holdout, tokenizer=module.tokenizer,
                                eval_transform=module.preprocess_val)
    embedded, computed = [], []
    embed, compute = clip_features.embed_pairs, audit_inputs.compute_clip_inputs

    def counting_embed(*args, **kwargs):
        embedded.append(len(args[3]))  # keys
        return embed(*args, **kwargs)

    def keeping_compute(*args, **kwargs):
        computed.append(compute(*args, **kwargs))
        return computed[-1]

    clip_features.embed_pairs, audit_inputs.compute_clip_inputs = counting_embed, keeping_compute
    audit = AuditCallback(audits=("clip_mia", "clip_retrieval", "clip_zero_shot", "clip_alignment_matrix"),
                          classnames=DIGIT_NAMES, templates=DIGIT_TEMPLATES[:2], batch_size=4,
                          save_files=False, verbose=False, progress=False)
    trainer = L.Trainer(max_steps=1, accelerator="cpu", devices=devices,
                        strategy="ddp" if devices > 1 else "auto", logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=str(out / f"clip_{devices}"),
                        callbacks=[audit])
    try:
        trainer.fit(module, datamodule=dm)
    finally:
        clip_features.embed_pairs, audit_inputs.compute_clip_inputs = embed, compute
    feats = computed[0].cache[clip_features.CLIP_CACHE_KEY]  # the "before" features
    per_rank = _gather_objects(embedded[:3])  # forget, retain, holdout of the "before" audit
    if trainer.is_global_zero:
        torch.save(
            {
                "embedded": per_rank,
                "before": flat_metrics(audit.before),
                "features": {name: vars(split) for name, split in feats.splits().items()},
            },
            out / f"probe_clip_{devices}.pt",
        )


def odd_dataset_keys(devices: int) -> list | None:
    """Keys each rank would train on in one epoch of a 17-sample dataset."""
    if devices < 2:
        return None
    from lightly_unlearn import ForgetRetainDataModule

    train_t, _ = transforms()
    dm = ForgetRetainDataModule(digits_dataset(17), [0, 1], train_t, batch_size=4)
    dm.configure("mixed")
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(0)
    keys = [int(k) for batch in loader for k in batch[2]]
    return _gather_objects(keys)


if __name__ == "__main__":
    out, devices = Path(sys.argv[1]), int(sys.argv[2])
    for method in sys.argv[3:] or ["ac", "neggrad"]:
        run_clip(out, devices) if method == "clip" else run(out, devices, method)
    # Lightning keeps the process group after fit; left to interpreter exit, gloo's threads
    # sometimes abort the process ("terminate called without an active exception", rc -6)
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
