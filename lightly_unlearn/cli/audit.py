"""``lightly-unlearn audit``: the data owner's black-box check that their images were forgotten.

Embeds the owner's images with the model before and after unlearning under the same seeded
augmentations, and writes the alignment gap matrix (heat map), the forgetting score and a short
Markdown + JSON report. The alignment gap matrix is the black-box audit of Alignment
Calibration (Wang et al., arXiv:2406.03603); docs/audits.md explains it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lightly_unlearn.errors import AuditCLIError

if TYPE_CHECKING:  # torch is imported when the command runs, not for its --help
    from torch import nn

    from lightly_unlearn.roles import EmbedFn

MODEL_HELP = """\
MODEL is one of:
  pkg.module:function            a Python callable mapping an image batch (B, 3, H, W) to
                                 embeddings (B, D): any black box you can query
  path/to/file.py:function       the same, from a Python file
  pkg.module:Class@path/to.ckpt  a Lightning checkpoint (or a plain state dict) loaded into
                                 Class(**hyper_parameters) with torch.load(weights_only=True);
                                 embeddings are its backbone features (--embedding head: its
                                 projection-head outputs)
IMAGES is a folder of image files (png, jpg, bmp, gif, webp, tif), subfolders included, read
in sorted order (as `lightly-unlearn unlearn` reads them).
--out is a new (or empty) folder: reports are written into DIR.partial-XXXX beside it and
renamed to DIR when complete; a folder holding earlier reports is refused.
"""


@dataclass
class Model:
    spec: str
    embed: EmbedFn
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
    from lightly_unlearn.errors import ModelSpecError
    from lightly_unlearn.model_loading import import_object

    try:
        return import_object(target, spec)
    except ModelSpecError as err:
        raise AuditCLIError(f"{err}\n{MODEL_HELP}" if ":" not in target else str(err)) from err


def load_model(spec: str, embedding: str = "backbone", device: str = "cpu") -> Model:
    """Resolve a MODEL string (see ``MODEL_HELP``) to an embedding function."""
    from torch import nn

    from lightly_unlearn.audits.features import resolve_embed_fn
    from lightly_unlearn.errors import ModelSpecError, ModuleContractError
    from lightly_unlearn.model_loading import build_from_checkpoint

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
        embed = resolve_embed_fn(embedding, module)
    except ModuleContractError as err:
        raise AuditCLIError(str(err)) from err
    return Model(spec, embed, module)


# -- images -----------------------------------------------------------------------------------
def image_names(folder: str, max_samples: int, what: str = "data") -> list[str]:
    """The images of ``folder`` :func:`load_images` reads, relative to it, in order: the same
    reader as ``unlearn`` (subfolders included, sorted, hidden files skipped)."""
    from lightly_unlearn.image_folder import image_files

    try:
        names = image_files(folder, f"--{what}")
    except FileNotFoundError as err:
        raise AuditCLIError(str(err)) from err
    if len(names) < 2:
        raise AuditCLIError(
            f"--{what} {folder}: found {len(names)} image file(s); the alignment matrix needs at "
            "least 2."
        )
    return names[:max_samples]


def load_images(folder: str, what: str, max_samples: int) -> list[Any]:
    """RGB PIL images from ``folder`` (see :func:`image_names`), each decoded fully; clear errors
    otherwise."""
    from PIL import Image

    from lightly_unlearn.image_folder import check_images

    names = image_names(folder, max_samples, what)
    try:
        check_images(folder, names, f"--{what}")
    except ValueError as err:
        raise AuditCLIError(str(err)) from err
    images = []
    for name in names:
        with Image.open(Path(folder) / name) as image:
            images.append(image.convert("RGB"))
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


def _check_args(args: argparse.Namespace) -> Path:
    """Refuse bad numbers and an unsafe ``--out`` before any work; returns ``--out``."""
    from lightly_unlearn.errors import OutputPathError
    from lightly_unlearn.paths import check_output_path

    for flag, value, least in (("--num-views", args.num_views, 2),
                               ("--batch-size", args.batch_size, 1)):  # fmt: skip
        if value < least:
            raise AuditCLIError(f"{flag} must be at least {least}; got {value}.")
    checkpoints = [s.partition("@")[2] or None for s in (args.before, args.after)]
    try:  # before any work: never inside --data/--holdout (it would be audited next time)
        out = check_output_path(
            args.out, inputs=[args.data, args.holdout, *checkpoints], kind="dir", what="--out"
        )
    except OutputPathError as err:
        raise AuditCLIError(str(err)) from err
    if args.max_samples < 2:
        raise AuditCLIError(f"--max-samples must be at least 2; got {args.max_samples}.")
    from lightly_unlearn.image_folder import check_holdout_apart, check_image_size
    from lightly_unlearn.output_folder import OutputFolder

    try:
        OutputFolder(out).check_free()  # a folder of earlier reports is never overwritten
        if args.holdout:
            check_holdout_apart(args.data, args.holdout)
        if args.image_size is not None:
            check_image_size(args.image_size, args.batch_size, views=1)
    except ValueError as err:
        raise AuditCLIError(str(err)) from err
    _check_device(args.device)
    return out


def _check_device(device: str) -> None:
    """A device string torch cannot parse, or a GPU this machine lacks, before any work."""
    import torch

    try:
        kind = torch.device(device).type
    except (RuntimeError, ValueError) as err:
        raise AuditCLIError(f"--device {device!r}: {err} (e.g. cpu, cuda, cuda:1).") from err
    if kind == "cuda" and not torch.cuda.is_available():
        raise AuditCLIError(f"--device {device}: no CUDA device is available here; use --device cpu.")
    if kind == "cuda" and torch.device(device).index is not None and (
            torch.device(device).index >= torch.cuda.device_count()):
        raise AuditCLIError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s).")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise AuditCLIError(f"--device {device}: Apple's MPS is not available here; use --device cpu.")


def _embed_views(args: argparse.Namespace, when: str, model: Model, splits: dict, size: int,
                 view_t: Callable, bar: Any) -> dict:  # fmt: skip
    """``{split: SplitFeatures}`` of ``K`` seeded views per image; user-model errors explained."""
    from lightly_unlearn.audits.features import extract_features

    feats = {}
    for split, images in splits.items():
        try:
            feats[split] = extract_features(
                model.embed, images, view_transform=view_t, num_views=args.num_views,
                seed=args.seed, split=split, batch_size=args.batch_size, module=model.module,
                device=args.device, progress=bar.update,
            )
        except ValueError as err:
            raise AuditCLIError(f"--{when} {model.spec}: {err}") from err
        except RuntimeError as err:  # shape mismatch inside the user's model, etc.
            raise AuditCLIError(
                f"--{when} {model.spec} failed on {size}x{size} images: {err}. "
                "Check --image-size and --embedding."
            ) from err
    return feats


def _owner_metrics(result: Any, feats: dict) -> tuple[dict[str, float], dict[str, Any]]:
    """The alignment-matrix metrics plus, with a holdout, the forget-vs-holdout numbers of
    :func:`~lightly_unlearn.audits.membership.forget_holdout_metrics`; and the per-image scores."""
    from lightly_unlearn.audits.alignment import alignment_scores, cross_sample_cosine
    from lightly_unlearn.audits.membership import LOW_FPRS, forget_holdout_metrics, low_fpr_key

    scores = {s: alignment_scores(f.views).numpy() for s, f in feats.items()}
    metrics = dict(result.metrics)
    metrics["alignment_data"] = float(scores["forget"].mean())
    if "holdout" in scores:
        extra = forget_holdout_metrics(scores["forget"], scores["holdout"])
        for key in ("alignment_holdout", "forget_holdout_auc", "forget_holdout_auc_se",
                    *map(low_fpr_key, LOW_FPRS.values()), "holdout_samples",
                    "alignment_level_gap"):  # fmt: skip
            if key in extra:  # a low FPR the holdout cannot resolve has no value
                metrics[key] = extra[key]
        metrics["cross_cosine_holdout"] = cross_sample_cosine(feats["holdout"].views)
    return metrics, scores


def _audit_both(args: argparse.Namespace, splits: dict, size: int) -> tuple[dict, dict, dict]:
    """Embed the images with both models and run the alignment-matrix audit on each."""
    from tqdm import tqdm

    from lightly_unlearn.audits.alignment import AlignmentMatrix
    from lightly_unlearn.audits.features import AuditInputs

    view_t, _ = transforms(size, args.normalize)
    models = {
        "before": load_model(args.before, args.embedding, args.device),
        "after": load_model(args.after, args.embedding, args.device),
    }
    total = 2 * args.num_views * sum(len(v) for v in splits.values())
    audit = AlignmentMatrix(num_samples=args.max_samples)
    results, metrics, scores = {}, {}, {}
    with tqdm(total=total, unit="img", disable=args.no_progress, file=sys.stderr) as bar:
        for when, model in models.items():
            bar.set_description(f"embedding ({when})")
            feats = _embed_views(args, when, model, splits, size, view_t, bar)
            inputs = AuditInputs(retain=None, forget=feats["forget"], holdout=feats.get("holdout"))
            results[when] = audit(inputs, before=results.get("before"))
            metrics[when], scores[when] = _owner_metrics(results[when], feats)
    return results, metrics, scores


def _run(args: argparse.Namespace) -> int:
    from lightly_unlearn.audits.alignment import AlignmentMatrix
    from lightly_unlearn.audits.base import MetricInfo, metric_descriptions
    from lightly_unlearn.audits.emia import EMIA
    from lightly_unlearn.audits.figures import draw_figures
    from lightly_unlearn.audits.report import write_report
    from lightly_unlearn.audits.verdict import assess
    from lightly_unlearn.output_folder import OutputFolder

    out = _check_args(args)
    data = load_images(args.data, "data", args.max_samples)
    holdout = load_images(args.holdout, "holdout", args.max_samples) if args.holdout else None
    size = args.image_size or data[0].size[1]
    splits = {"forget": data, **({"holdout": holdout} if holdout else {})}
    results, metrics, scores = _audit_both(args, splits, size)
    after = results["after"]
    verdict = assess(metrics["before"], metrics["after"], [*after.warnings])
    names = {"forget": image_names(args.data, args.max_samples),
             "holdout": image_names(args.holdout, args.max_samples, "holdout") if holdout else None}
    audit = AlignmentMatrix(num_samples=args.max_samples)
    figures = draw_figures(
        [audit], {audit.name: after}, title=f"Alignment gap matrix ({len(data)} images)",
        labeler=lambda split, keys: names[split], verdict=verdict,
    )
    notes = [
        f"{len(data)} images, K = {args.num_views} seeded augmentations, "
        f"{args.embedding} embeddings, {size}x{size} px.",
    ]
    if holdout:
        notes.append(
            "forget_holdout_auc near 0.5 after unlearning means your images look like images the "
            "model never saw; above 0.5 they are still recognisable, below 0.5 over-forgotten. "
            "forget_holdout_tpr_at_1pct_fpr is the % of your images an attack flags when it may "
            "wrongly flag only 1 % of the never-seen ones (lower: more forgotten)."
        )
    info = {**metric_descriptions([audit, EMIA()]),
            "alignment_data": MetricInfo("mean alignment score of the data owner's images")}
    with OutputFolder(out) as folder:  # one run per folder; it appears whole or not at all
        try:
            partial = folder.claim()
        except ValueError as err:
            raise AuditCLIError(str(err)) from err
        paths = write_report(
            partial, _record(args, results, metrics, scores, verdict, names, size), figures=figures,
            title="Data owner audit", notes=notes, metric_info=info,
        )
        folder.commit()
    paths = {key: out / Path(path).relative_to(partial) for key, path in paths.items()}
    print(f"forgetting score FS = {after.metrics['forgetting_score']:+.4f}. {verdict.line}")
    for key in (*figures, "json", "report"):
        print(f"wrote {paths[key]}")
    return 0


def _record(args: argparse.Namespace, results: dict, metrics: dict, scores: dict, verdict: Any,
            names: dict, size: int) -> Any:  # fmt: skip
    """The data owner's audit as an :class:`~lightly_unlearn.audits.schema.AuditRecord`: the
    alignment matrices and per-image alignment scores of both models among its arrays."""
    from lightly_unlearn.audits.schema import AuditRecord, result_arrays

    def arrays(when: str) -> dict[str, Any]:
        out = result_arrays({"alignment_matrix": results[when]})
        out["alignment_scores"] = {split: s.tolist() for split, s in scores[when].items()}
        return out

    return AuditRecord(
        config={"before_model": args.before, "after_model": args.after, "data": str(args.data),
                "holdout": args.holdout, "num_images": len(names["forget"]),
                "num_holdout": len(names["holdout"] or []), "num_views": args.num_views,
                "image_size": size, "seed": args.seed, "embedding": args.embedding,
                "audits": ["alignment_matrix", *(["forget_holdout"] if args.holdout else [])]},
        before=metrics["before"], after=metrics["after"], verdict=verdict,
        image_names=names["forget"], holdout_names=names["holdout"],
        arrays=arrays("after"), arrays_before=arrays("before"),
    )  # fmt: skip
