"""``lightly-unlearn audit``: the data owner's black-box check that their images were forgotten.

Embeds the owner's images with the model before and after unlearning under the same seeded
augmentations, and writes the alignment gap matrix (heat map), the forgetting score and a short
Markdown + JSON report (SPEC §4).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lightly_unlearn.errors import LightlyUnlearnError

if TYPE_CHECKING:  # torch is imported when the command runs, not for its --help
    from torch import Tensor, nn

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}

MODEL_HELP = """\
MODEL is one of:
  pkg.module:function            a Python callable mapping an image batch (B, 3, H, W) to
                                 embeddings (B, D): any black box you can query
  path/to/file.py:function       the same, from a Python file
  pkg.module:Class@path/to.ckpt  a Lightning checkpoint (or a plain state dict) loaded into
                                 Class(**hyper_parameters) with torch.load(weights_only=True);
                                 embeddings are its backbone features (--embedding head: its
                                 projection-head outputs)
IMAGES is a folder of image files (png, jpg, bmp, gif, webp, tif), read in sorted order.
"""


class AuditCLIError(LightlyUnlearnError):
    """Bad input to the audit command; the message says what is wrong and how to fix it."""


@dataclass
class Model:
    spec: str
    embed: Callable[[Tensor], Tensor]
    module: nn.Module | None


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "audit",
        help="data owner: show that your images were forgotten (alignment gap matrix)",
        description=__doc__.split("\n\n")[0] + "\n\n" + MODEL_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--before", required=True, metavar="MODEL", help="model before unlearning")
    parser.add_argument("--after", required=True, metavar="MODEL", help="model after unlearning")
    parser.add_argument("--data", required=True, metavar="IMAGES", help="your (forgotten) images")
    parser.add_argument(
        "--holdout",
        metavar="IMAGES",
        help="similar images the model never saw: a reference for 'forgotten' (optional)",
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--num-views", type=int, default=10, help="augmentations K (default 10)")
    parser.add_argument(
        "--image-size", type=int, default=None, help="crop size (default: first image's height)"
    )
    parser.add_argument(
        "--max-samples", type=int, default=256, help="images per folder in the matrix (default 256)"
    )
    parser.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default 64)")
    parser.add_argument("--seed", type=int, default=0, help="augmentation seed (default 0)")
    parser.add_argument(
        "--embedding",
        choices=("backbone", "head"),
        default="backbone",
        help="features of a Class@ckpt model: backbone (default) or projection-head outputs",
    )
    parser.add_argument(
        "--normalize",
        choices=("imagenet", "none"),
        default="imagenet",
        help="input normalisation the models expect (default: imagenet, lightly's default)",
    )
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


# -- models -----------------------------------------------------------------------------------
def _import(target: str, spec: str) -> Any:
    from lightly_unlearn.model_loading import ModelSpecError, import_object

    try:
        return import_object(target, spec)
    except ModelSpecError as err:
        raise AuditCLIError(f"{err}\n{MODEL_HELP}" if ":" not in target else str(err)) from err


def load_model(spec: str, embedding: str = "backbone", device: str = "cpu") -> Model:
    """Resolve a MODEL string (see ``MODEL_HELP``) to an embedding function."""
    from torch import nn

    from lightly_unlearn.adapters import ModuleContractError, backbone_embed_fn, head_embed_fn
    from lightly_unlearn.model_loading import ModelSpecError, build_from_checkpoint

    target, _, ckpt = spec.partition("@")
    obj = _import(target, spec)
    if not ckpt:
        if isinstance(obj, type):
            raise AuditCLIError(
                f"MODEL {spec!r} is a class; give its checkpoint as '{target}@path/to.ckpt', or "
                "point to a function mapping images to embeddings."
            )
        if not callable(obj):
            raise AuditCLIError(f"MODEL {spec!r} is not callable.")
        module = obj if isinstance(obj, nn.Module) else None
        if module is not None:
            module.to(device)
        return Model(spec, obj, module)
    try:
        module = build_from_checkpoint(obj, ckpt, model=target)
    except ModelSpecError as err:
        raise AuditCLIError(str(err)) from err
    module.to(device).eval()
    try:
        embed = backbone_embed_fn(module) if embedding == "backbone" else head_embed_fn(module)
    except ModuleContractError as err:
        raise AuditCLIError(str(err)) from err
    return Model(spec, embed, module)


# -- images -----------------------------------------------------------------------------------
def load_images(folder: str, what: str, max_samples: int) -> list[Any]:
    """RGB PIL images from ``folder`` (sorted, at most ``max_samples``); clear errors otherwise."""
    from PIL import Image, UnidentifiedImageError

    root = Path(folder)
    if not root.is_dir():
        raise AuditCLIError(f"--{what} {folder}: no such folder.")
    files = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if len(files) < 2:
        raise AuditCLIError(
            f"--{what} {folder}: found {len(files)} image file(s) ({', '.join(sorted(IMAGE_SUFFIXES))}); "
            "the alignment matrix needs at least 2."
        )
    images = []
    for path in files[:max_samples]:
        try:
            with Image.open(path) as image:
                images.append(image.convert("RGB"))
        except Image.DecompressionBombError as err:
            raise AuditCLIError(
                f"--{what}: {path} is refused by Pillow's decompression-bomb limit "
                f"(PIL.Image.MAX_IMAGE_PIXELS = {Image.MAX_IMAGE_PIXELS} pixels; {err}). "
                "Resize the image to the size the model sees, or remove it from the folder."
            ) from err
        except (UnidentifiedImageError, OSError) as err:
            raise AuditCLIError(f"--{what}: cannot read image {path}: {err}") from err
    return images


def transforms(size: int, normalize: str) -> tuple[Callable, Callable]:
    """(view transform, eval transform): SimCLR augmentations and a plain resize."""
    from lightly.transforms import SimCLRViewTransform
    from lightly.transforms.utils import IMAGENET_NORMALIZE
    from torchvision import transforms as T

    norm = IMAGENET_NORMALIZE if normalize == "imagenet" else None
    view = SimCLRViewTransform(input_size=size, normalize=norm)
    steps = [T.Resize((size, size)), T.ToTensor()]
    if norm:
        steps.append(T.Normalize(mean=norm["mean"], std=norm["std"]))
    return view, T.Compose(steps)


def image_names(folder: str, max_samples: int) -> list[str]:
    """File names of the images :func:`load_images` reads from ``folder``, in the same order."""
    root = Path(folder)
    files = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    return [p.name for p in files[:max_samples]]


# -- run --------------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> int:
    import errno

    try:
        return _run(args)
    except AuditCLIError as err:
        print(f"lightly-unlearn audit: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a full disk while writing: one line (partial files are removed)
        if err.errno not in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
            raise
        print(
            f"lightly-unlearn audit: error: cannot write to --out {args.out}: {err.strerror} "
            "(no partial file was left). Free space or choose another --out.",
            file=sys.stderr,
        )
        return 1


def _run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from lightly_unlearn.audits.alignment import (
        AlignmentMatrix,
        alignment_scores,
        cross_sample_cosine,
    )
    from lightly_unlearn.audits.emia import _auc, auc_standard_error
    from lightly_unlearn.audits.features import AuditInputs, extract_features
    from lightly_unlearn.audits.report import (
        atomic_write,
        gap_figure,
        markdown_report,
        save_figure,
        write_json,
    )
    from lightly_unlearn.audits.verdict import assess

    if args.num_views < 2:
        raise AuditCLIError(f"--num-views must be at least 2; got {args.num_views}.")
    if args.batch_size < 1:
        raise AuditCLIError(f"--batch-size must be at least 1; got {args.batch_size}.")
    from lightly_unlearn.paths import OutputPathError, check_output_path

    checkpoints = [s.partition("@")[2] or None for s in (args.before, args.after)]
    try:  # before any work: never inside --data/--holdout (it would be audited next time)
        out = check_output_path(
            args.out, inputs=[args.data, args.holdout, *checkpoints], kind="dir", what="--out"
        )
    except OutputPathError as err:
        raise AuditCLIError(str(err)) from err
    if args.max_samples < 2:
        raise AuditCLIError(f"--max-samples must be at least 2; got {args.max_samples}.")
    data = load_images(args.data, "data", args.max_samples)
    holdout = load_images(args.holdout, "holdout", args.max_samples) if args.holdout else None
    size = args.image_size or data[0].size[1]
    view_t, _ = transforms(size, args.normalize)
    models = {
        "before": load_model(args.before, args.embedding, args.device),
        "after": load_model(args.after, args.embedding, args.device),
    }
    splits = {"forget": data, **({"holdout": holdout} if holdout else {})}
    total = 2 * args.num_views * sum(len(v) for v in splits.values())
    audit = AlignmentMatrix(num_samples=args.max_samples)
    results, scores, views = {}, {}, {}
    with tqdm(total=total, unit="img", disable=args.no_progress, file=sys.stderr) as bar:
        for when, model in models.items():
            bar.set_description(f"embedding ({when})")
            feats = {}
            for split, images in splits.items():
                try:
                    feats[split] = extract_features(
                        model.embed,
                        images,
                        view_transform=view_t,
                        num_views=args.num_views,
                        seed=args.seed,
                        split=split,
                        batch_size=args.batch_size,
                        module=model.module,
                        device=args.device,
                        progress=bar.update,
                    )
                except ValueError as err:
                    raise AuditCLIError(f"--{when} {model.spec}: {err}") from err
                except RuntimeError as err:  # shape mismatch inside the user's model, etc.
                    raise AuditCLIError(
                        f"--{when} {model.spec} failed on {size}x{size} images: {err}. "
                        "Check --image-size and --embedding."
                    ) from err
            inputs = AuditInputs(retain=None, forget=feats["forget"], holdout=feats.get("holdout"))
            results[when] = audit(inputs, before=results.get("before"))
            scores[when] = {s: alignment_scores(f.views).numpy() for s, f in feats.items()}
            views[when] = {s: f.views for s, f in feats.items()}

    metrics = {when: dict(r.metrics) for when, r in results.items()}
    for when, s in scores.items():
        metrics[when]["alignment_data"] = float(s["forget"].mean())
        if "holdout" in s:
            metrics[when]["alignment_holdout"] = float(s["holdout"].mean())
            auc = metrics[when]["forget_holdout_auc"] = _auc(s["forget"], s["holdout"])
            metrics[when]["forget_holdout_auc_se"] = auc_standard_error(
                auc, len(s["forget"]), len(s["holdout"])
            )
            metrics[when]["alignment_level_gap"] = float(s["forget"].mean() - s["holdout"].mean())
            metrics[when]["cross_cosine_holdout"] = cross_sample_cosine(views[when]["holdout"])
    after = results["after"]
    fs = after.metrics["forgetting_score"]
    verdict = assess(metrics["before"], metrics["after"], [*after.warnings])
    names = image_names(args.data, args.max_samples)
    fig = gap_figure(
        after.arrays["gap_matrix"],
        f"Alignment gap matrix ({len(data)} images)",
        fs,
        labels=names,
        holdout_gap=after.arrays.get("holdout_gap_matrix"),
        holdout_labels=image_names(args.holdout, args.max_samples) if holdout else None,
        holdout_fs=after.metrics.get("holdout_drift_score"),
        verdict=verdict.line,
        warnings=verdict.warnings,
    )
    try:  # only now: a failed run leaves no empty --out behind
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise AuditCLIError(f"--out {out}: cannot create the output folder ({err}).") from err
    paths = [save_figure(fig, out / "gap_matrix.png")]
    payload = {
        "before_model": args.before,
        "after_model": args.after,
        "data": str(args.data),
        "holdout": args.holdout,
        "num_images": len(data),
        "num_holdout": len(holdout) if holdout else 0,
        "num_views": args.num_views,
        "image_size": size,
        "seed": args.seed,
        "embedding": args.embedding,
        "verdict": verdict.line,
        "warnings": verdict.warnings,
        "forgetting_score": fs,
        "holdout_drift_score": after.metrics.get("holdout_drift_score"),
        "forgetting_beyond_drift": after.metrics.get("forgetting_beyond_drift"),
        "forgetting_beyond_drift_se": after.metrics.get("forgetting_beyond_drift_se"),
        "image_names": names,
        "holdout_names": image_names(args.holdout, args.max_samples) if holdout else None,
        "metrics": metrics,
        "gap_matrix": after.arrays["gap_matrix"],
        "alignment_matrix_before": results["before"].arrays["matrix"],
        "alignment_matrix_after": after.arrays["matrix"],
        "alignment_scores": {w: {k: v.tolist() for k, v in s.items()} for w, s in scores.items()},
    }
    paths.append(write_json(out / "audit.json", payload))
    notes = [
        f"{len(data)} images, K = {args.num_views} seeded augmentations, "
        f"{args.embedding} embeddings, {size}x{size} px.",
    ]
    if holdout:
        notes.append(
            "forget_holdout_auc near 0.5 after unlearning means your images look like images the "
            "model never saw; above 0.5 they are still recognisable, below 0.5 over-forgotten."
        )
    report = markdown_report(
        metrics["before"], metrics["after"], title="Data owner audit", notes=notes, verdict=verdict
    )
    report += "\n![alignment gap matrix](gap_matrix.png)\n"
    paths.append(atomic_write(out / "report.md", report))
    print(f"forgetting score FS = {fs:+.4f}. {verdict.line}")
    for path in paths:
        print(f"wrote {path}")
    return 0
