"""Unlearning a small CLIP (open_clip) with lightly-unlearn: forget 10 % of the pairs, then a class.

A tiny open_clip ViT (custom config through ``model_kwargs``; no download) is trained on
scikit-learn's digits with captions written from several templates ("a photo of the digit
seven", "handwritten 7", ...). Then, for (a) 10 % of the pairs chosen at random and (b) every
pair of one class, it compares Fine-tune and Alignment Calibration (AC) to Retrain (the gold
standard: train from scratch on the retain pairs) on the CLIP audits, and prints a table.

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 python examples/clip_unlearn.py [--quick] [--out DIR]

A few minutes on 2 CPU cores (``--quick``: well under a minute, numbers noisier).
"""

from __future__ import annotations

import argparse
import copy
import os
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import lightning.pytorch as L  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from lightly_unlearn import CLIPModule, ForgetRetainDataModule, UnlearnCallback  # noqa: E402
from lightly_unlearn.audits.clip_audits import (  # noqa: E402
    ClipAlignmentGap,
    ClipPairMIA,
    ClipRetrieval,
    ClipZeroShot,
    save_clip_gap_heatmap,
)
from lightly_unlearn.audits.clip_features import compute_clip_inputs  # noqa: E402
from lightly_unlearn.clip import (  # noqa: E402
    DIGIT_NAMES,
    DIGIT_TEMPLATES,
    CaptionDataset,
    forget_by_class,
)
from lightly_unlearn.clip.data import tiny_clip_kwargs  # noqa: E402

AUDITS = (ClipPairMIA(), ClipRetrieval(max_gallery=150), ClipZeroShot(), ClipAlignmentGap(num_samples=48))


def digits(train_size: int) -> tuple[list, list]:
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    order = np.random.default_rng(0).permutation(len(d.target))
    imgs = (d.images * (255 / 16)).astype(np.uint8)
    items = [(Image.fromarray(imgs[i]).convert("RGB"), int(d.target[i])) for i in order]
    return items[:train_size], items[train_size:]


def trainer(epochs: int, callbacks=()) -> L.Trainer:
    return L.Trainer(
        max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=list(callbacks),
    )


def audit(module: CLIPModule, dm: ForgetRetainDataModule, before=None) -> tuple[dict, dict]:
    inputs = compute_clip_inputs(
        module, forget=dm.forget, retain=dm.retain, holdout=dm.holdout,
        image_transform=module.preprocess_val, classnames=DIGIT_NAMES, templates=DIGIT_TEMPLATES,
        num_samples=300, seed=0,
    )
    results = {a.name: a(inputs, before=(before or {}).get(a.name)) for a in AUDITS}
    flat = {k: v for r in results.values() for k, v in r.metrics.items()}
    return flat, results


COLUMNS = [  # (metric key, header)
    ("zs_test", "ZS test"),
    ("zs_forget", "ZS forget"),
    ("zs_test_forget_classes", "ZS test(forgot cls)"),
    ("retrieval_forget_i2t_r1", "R@1 i2t forget"),
    ("retrieval_test_i2t_r1", "R@1 i2t test"),
    ("retrieval_forget_t2i_r5", "R@5 t2i forget"),
    ("clip_mia", "MIA eff."),
    ("clip_forget_holdout_auc", "F-vs-H AUC"),
    ("clip_forgetting_score", "FS"),
]
GAP_KEYS = ["zs_test", "zs_forget", "retrieval_forget_i2t_r1", "retrieval_test_i2t_r1", "clip_mia"]


def print_table(title: str, rows: dict[str, dict], seconds: dict[str, float]) -> None:
    cols = [(k, h) for k, h in COLUMNS if any(k in r for r in rows.values())]
    header = f"| {'method':<10} | " + " | ".join(h for _, h in cols) + " | avg gap to RT | time s |"
    print(f"\n{title}\n{header}\n|" + "|".join("-" * (len(p)) for p in header.split("|")[1:-1]) + "|")
    ref = rows["retrain"]
    for name, r in rows.items():
        cells = []
        for k, h in cols:
            v = r.get(k)
            fmt = "{:.3f}" if k in ("clip_forget_holdout_auc", "clip_forgetting_score") else "{:.1f}"
            cells.append((fmt.format(v) if v is not None else "-").rjust(len(h)))
        gap = np.mean([abs(r[k] - ref[k]) for k in GAP_KEYS])
        print(f"| {name:<10} | " + " | ".join(cells) + f" | {gap:13.1f} | {seconds.get(name, 0):6.1f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer samples and epochs (smoke run)")
    p.add_argument("--epochs", type=int, default=None, help="pretraining (and Retrain) epochs")
    p.add_argument("--unlearn-epochs", type=int, default=None)
    p.add_argument("--forget-class", type=int, default=7)
    p.add_argument("--alpha", type=float, default=1.0)
    p.add_argument("--beta", type=float, default=4.0)
    p.add_argument("--out", default="clip_unlearn_out", help="folder for the gap heat maps")
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    import logging

    logging.disable(logging.WARNING)  # Lightning's and open_clip's info/warning chatter
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    epochs = args.epochs or (10 if args.quick else 30)
    unlearn_epochs = args.unlearn_epochs or (2 if args.quick else 5)
    train_items, test_items = digits(600 if args.quick else 1000)
    test_items = test_items[: 200 if args.quick else 300]
    train = CaptionDataset(train_items, DIGIT_NAMES, DIGIT_TEMPLATES)
    test = CaptionDataset(test_items, DIGIT_NAMES, DIGIT_TEMPLATES)
    start = time.perf_counter()

    L.seed_everything(0, verbose=False)
    kwargs = tiny_clip_kwargs(embed_dim=32, width=32, layers=1, heads=2)
    original = CLIPModule(model_name="ViT-B-32", model_kwargs=kwargs, lr=3e-3, weight_decay=0.05)
    os.makedirs(args.out, exist_ok=True)

    def datamodule(forget) -> ForgetRetainDataModule:
        return ForgetRetainDataModule(
            train, forget, original.preprocess_train, batch_size=32, holdout=test, seed=0,
            tokenizer=original.tokenizer, eval_transform=original.preprocess_val,
        )

    n = len(train)
    scenarios = {
        "(a) forget 10 % of the pairs": torch.randperm(n, generator=torch.Generator().manual_seed(1))[: n // 10],
        f"(b) forget class {args.forget_class} ({DIGIT_NAMES[args.forget_class]})": forget_by_class(train, args.forget_class),
    }
    t0 = time.perf_counter()
    trainer(epochs).fit(original, datamodule=datamodule(list(scenarios.values())[0]))  # mode "all"
    pretrain_s = time.perf_counter() - t0
    print(f"pretrained {epochs} epochs on {n} pairs in {pretrain_s:.0f} s")

    for title, forget in scenarios.items():
        dm = datamodule(forget)
        before_flat, before = audit(original, dm)
        rows, seconds = {"original": before_flat}, {"original": pretrain_s}
        plans = {
            "retrain": (epochs, dict(method="retrain")),
            "finetune": (unlearn_epochs, dict(method="finetune")),
            "ac": (unlearn_epochs, dict(method="ac", alpha=args.alpha, beta=args.beta)),
        }
        for name, (ep, cb_kwargs) in plans.items():
            L.seed_everything(0, verbose=False)
            module = copy.deepcopy(original)
            t0 = time.perf_counter()
            trainer(ep, [UnlearnCallback(**cb_kwargs)]).fit(module, datamodule=dm)
            seconds[name] = time.perf_counter() - t0
            rows[name], results = audit(module, dm, before=before)
            slug = title.split(")")[0].strip("(")
            save_clip_gap_heatmap(
                results["clip_alignment_matrix"].arrays["gap_matrix"],
                os.path.join(args.out, f"gap_{slug}_{name}.png"),
                title=f"{name}: image × caption gap, forget pairs",
            )
        print_table(f"{title}: {len(forget)} forget pairs", rows, seconds)
    print(
        "\nZS = zero-shot accuracy (%), R@k = retrieval recall (%, galleries of equal size), MIA eff. ="
        " % of forget pairs judged non-members by the pair-alignment attack, F-vs-H AUC = forget vs"
        " holdout pair-alignment AUC (0.5 = indistinguishable), FS = forgetting score of the image ×"
        " caption gap matrix vs the original model. Avg gap = mean |metric - Retrain| over ZS test,"
        " ZS forget, R@1 i2t forget/test and MIA eff. Heat maps in "
        f"{args.out}/. Total {time.perf_counter() - start:.0f} s."
    )


if __name__ == "__main__":
    main()
