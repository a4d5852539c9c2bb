"""``lightly-unlearn unlearn``: a checkpoint, a folder of images and a forget list in; an unlearned
checkpoint, a receipt and an audit report out. No Python to write.

    lightly-unlearn unlearn --model pkg.module:Class@pretrained.ckpt --data IMAGES_DIR \\
        --forget forget.txt --method ac [--hp alpha=1.0 --hp beta=0] [--epochs N] \\
        [--batch-size B] [--holdout IMAGES_DIR] [--accelerator gpu --devices 2] --out DIR

The forget list has one file name per line, relative to IMAGES_DIR (`#` comments allowed).
The model is trained with its own training_step and configure_optimizers; the method changes
only its objective and data stream. Outputs in DIR: unlearned.ckpt (loads with
Class.load_from_checkpoint), unlearning_receipt.json, proofs/ (one <name>.proof.json per forget
file, for its data owner's `lightly-unlearn verify-deletion`) and audits/ (report.md, audit.json,
gap_matrix.png). Inputs are only read; nothing is written next to or over them.

Exit status: 0 done, 2 bad input (refused before any training), 1 failure during the run.
"""

from __future__ import annotations

import argparse
import ast
import os
import sys
import time
from pathlib import Path
from typing import Any

from lightly_unlearn.errors import LightlyUnlearnError

MODEL_HELP = (
    "the pretrained model: pkg.module:Class@path/to.ckpt or path/to/file.py:Class@path/to.ckpt "
    "(a Lightning checkpoint or state dict, loaded into Class(**hyper_parameters) with "
    "weights_only=True; a file's neighbouring modules are importable)"
)
OUTPUT_NAMES = ("unlearned.ckpt", "unlearning_receipt.json", "proofs", "audits")


class UnlearnInputError(LightlyUnlearnError):
    """Bad input: refused before any training (exit status 2)."""


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number; got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1; got {value}")
    return value


def _hp(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE (e.g. alpha=1.0); got {text!r}")
    try:
        value = ast.literal_eval(raw.strip())
    except (ValueError, SyntaxError):
        value = raw.strip()  # a plain word, e.g. schedule=linear
    return key.strip(), value


def _role(text: str) -> tuple[str, str]:
    from lightly_unlearn.roles import parse_role

    try:
        return parse_role(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "unlearn",
        help="checkpoint + images + forget list in, unlearned checkpoint, receipt and audit out",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    req = parser.add_argument_group("required")
    req.add_argument("--model", required=True, metavar="MODEL", help=MODEL_HELP)
    req.add_argument("--data", required=True, metavar="IMAGES_DIR",
                     help="folder of the training images (read recursively, in sorted order)")
    req.add_argument("--forget", required=True, metavar="FILE",
                     help="text file: names of the images to forget, relative to --data, one per line")
    req.add_argument("--out", required=True, metavar="DIR",
                     help="new output folder (not inside --data/--holdout, not the checkpoint's folder)")
    m = parser.add_argument_group("method")
    m.add_argument("--method", default="ac",
                   help="unlearning method or alias (default: ac; see `lightly-unlearn list method`)")
    m.add_argument("--hp", action="append", type=_hp, default=[], metavar="NAME=VALUE",
                   help="a hyper-parameter of the method, repeatable (e.g. --hp alpha=1.0 --hp beta=0)")
    m.add_argument("--role", action="append", type=_role, default=[], metavar="NAME=VALUE",
                   dest="roles",
                   help="module roles when the module does not follow lightly's example names, "
                        "repeatable: backbone=ATTR, head=ATTR, momentum_pairs=ONLINE:COPY[,...], "
                        "memory_banks=ATTR[,...], embed=METHOD, output_index=N ('none' for no "
                        "pairs/banks; default: found by lightly's conventions)")
    m.add_argument("--epochs", type=_positive, default=5,
                   help="unlearning epochs (default 5)")
    m.add_argument("--batch-size", type=_positive, default=256,
                   help="images per batch per device (default 256, at most the data size)")
    d = parser.add_argument_group("data")
    d.add_argument("--holdout", metavar="IMAGES_DIR",
                   help="similar images the model never saw: the audits' reference for 'forgotten'")
    d.add_argument("--transform", choices=("simclr", "moco"), default=None,
                   help="lightly view transform, used when the model's module defines no `transform` "
                        "(default: simclr)")
    d.add_argument("--image-size", type=_positive, default=None,
                   help="crop size of --transform (default: the first image's height)")
    d.add_argument("--num-workers", type=int, default=0, help="DataLoader workers (default 0)")
    d.add_argument("--seed", type=int, default=0, help="seed of shuffling, views and audits (default 0)")
    t = parser.add_argument_group("trainer")
    t.add_argument("--accelerator", default="auto", help="Lightning accelerator (default auto)")
    t.add_argument("--devices", default="auto", help="Lightning devices (default auto)")
    t.add_argument("--strategy", default="auto", help="Lightning strategy, e.g. ddp (default auto)")
    t.add_argument("--precision", default=None, help="Lightning precision, e.g. 16-mixed")
    o = parser.add_argument_group("outputs")
    o.add_argument("--no-audit", action="store_true", help="skip the before/after audits")
    o.add_argument("--audit-samples", type=_positive, default=1000,
                   help="at most this many samples per split in the audits (default 1000)")
    o.add_argument("--relearn-epochs", type=_positive, default=None, metavar="K",
                   help="relearning test: train a copy of the unlearned model K epochs on the retain "
                        "images only and re-audit; adds relearn_forget_holdout_auc and the warning "
                        "'relearned' to the audit report (needs --holdout; the copy is never saved)")
    o.add_argument("--signing-key", metavar="FILE",
                   help="Ed25519 private key (`lightly-unlearn keygen`) to sign the receipt")
    o.add_argument("--no-progress", action="store_true", help="hide Lightning's progress bar")
    return parser


# -- checks before any work -----------------------------------------------------------------------
def _check_out(out: Path, inputs: list[Path | None], ckpt: Path) -> None:
    from lightly_unlearn.paths import OutputPathError, check_output_path

    try:  # the package's one output check: not an input, not inside an input folder, writable
        check_output_path(out, inputs=inputs, kind="dir", what="--out")
    except OutputPathError as err:
        raise UnlearnInputError(str(err)) from err
    resolved = out.resolve()
    for source in inputs:
        if source is not None and source.is_dir() and (
            resolved == source.resolve() or source.resolve() in resolved.parents
        ):
            raise UnlearnInputError(
                f"--out {out} is inside the input folder {source}; outputs written there would be "
                "read as inputs next time. Choose a folder outside it."
            )
    if resolved == ckpt.resolve().parent:
        raise UnlearnInputError(
            f"--out {out} is the folder of the input checkpoint {ckpt}; outputs are never written "
            "next to the input. Choose another folder."
        )
    if out.exists() and not out.is_dir():
        raise UnlearnInputError(f"--out {out} exists and is not a folder.")
    taken = [name for name in OUTPUT_NAMES if (out / name).exists()]
    if taken:
        raise UnlearnInputError(
            f"--out {out} already holds {', '.join(taken)} from an earlier run; choose a new "
            "folder (outputs are never overwritten)."
        )


def _module_transform(cls: type) -> Any:
    """A multi-view transform defined by the model's Python module (or class), if any."""
    module = sys.modules.get(getattr(cls, "__module__", ""), None)
    for owner in (cls, module):
        transform = getattr(owner, "transform", None)
        if transform is not None and not isinstance(transform, (property, staticmethod)):
            return transform() if isinstance(transform, type) else transform
    return None


def _prepare(args: argparse.Namespace) -> dict[str, Any]:
    """Everything that can be refused, refused here: no training has started."""
    target, ckpt_path = _checkpoint_of(args)
    data, forget_file, out = Path(args.data), Path(args.forget), Path(args.out)
    holdout = Path(args.holdout) if args.holdout else None
    _check_out(out, [data, holdout, ckpt_path, forget_file], ckpt_path)
    if args.signing_key and not Path(args.signing_key).is_file():
        raise UnlearnInputError(f"--signing-key {args.signing_key}: no such file.")
    names = _check_files(data, holdout, forget_file)
    commitment = _commit_forget_files(data, forget_file, names)  # before any user code runs
    _check_method(args)
    model, cls, trainer_cls, roles = _load_model(args, target, ckpt_path)
    dm = _datamodule(args, cls, data, names, forget_file)
    if args.relearn_epochs and (holdout is None or args.no_audit):
        raise UnlearnInputError("--relearn-epochs re-audits the forget images against never-seen "
                                "ones: give --holdout (and drop --no-audit).")
    if holdout is None and not args.no_audit:
        print("lightly-unlearn unlearn: no --holdout: the audit shows the alignment gap of the forget "
              "set only (no reference for never-seen images).", file=sys.stderr)
    return dict(target=target, ckpt=ckpt_path, model=model, cls=cls, dm=dm, out=out,
                trainer_cls=trainer_cls, roles=roles, commitment=commitment)


def _checkpoint_of(args: argparse.Namespace) -> tuple[str, Path]:
    """``--model pkg.module:Class@ckpt`` -> (``pkg.module:Class``, existing checkpoint path)."""
    from lightly_unlearn.model_loading import ModelSpecError, split_model_spec

    try:
        target, ckpt = split_model_spec(args.model)
    except ModelSpecError as err:
        raise UnlearnInputError(str(err)) from err
    if ckpt is None:
        raise UnlearnInputError(
            f"--model {args.model!r} names no checkpoint: write it as '{target}@path/to.ckpt'."
        )
    ckpt_path = Path(ckpt)
    if not ckpt_path.is_file():
        raise UnlearnInputError(f"--model: checkpoint file {ckpt_path} does not exist.")
    return target, ckpt_path


def _check_files(data: Path, holdout: Path | None, forget_file: Path) -> list[str]:
    """The image names of ``--data``; every forget name must be one of them."""
    from lightly_unlearn.image_folder import check_images, image_files, read_forget_list

    try:
        names = image_files(data, "--data")
        read_forget_list(forget_file, names)
        check_images(data, names, "--data")
        if holdout is not None:
            check_images(holdout, image_files(holdout, "--holdout"), "--holdout")
    except (FileNotFoundError, ValueError) as err:
        raise UnlearnInputError(str(err)) from err
    return names


def _commit_forget_files(data: Path, forget_file: Path, names: list[str]) -> Any:
    """The forget files committed by content (receipt root, one deletion proof per file)."""
    from lightly_unlearn.image_folder import read_forget_list
    from lightly_unlearn.receipt import commit_files

    try:
        return commit_files(data, [names[i] for i in read_forget_list(forget_file, names)])
    except (OSError, ValueError) as err:
        raise UnlearnInputError(f"--forget: {err}") from err


def _check_method(args: argparse.Namespace) -> None:
    from lightly_unlearn import registry

    try:
        method = registry.load("method", args.method)
        method(**dict(args.hp))  # unknown hyper-parameters are refused here
    except (KeyError, LookupError, TypeError, ValueError) as err:
        raise UnlearnInputError(f"--method {args.method} / --hp: {err}") from err


def _load_model(args: argparse.Namespace, target: str, ckpt_path: Path) -> tuple[Any, type, Any, Any]:
    """The user's class, built from the checkpoint, its Trainer class and its module roles."""
    from lightly_unlearn.model_loading import ModelSpecError, build_from_checkpoint, import_object
    from lightly_unlearn.namespaces import NamespaceMismatchError, trainer_class_for
    from lightly_unlearn.roles import resolve_roles, roles_from_settings

    try:
        cls = import_object(target, args.model)
        if not isinstance(cls, type):
            raise UnlearnInputError(f"--model {target!r} is not a class.")
        model = build_from_checkpoint(cls, ckpt_path, model=target)
        trainer_cls = trainer_class_for(model)
    except (ModelSpecError, NamespaceMismatchError) as err:
        raise UnlearnInputError(str(err)) from err
    if not hasattr(model, "criterion"):
        raise UnlearnInputError(
            f"{target} has no attribute 'criterion': unlearning changes the objective through the "
            "module's loss object, as in lightly's examples (`self.criterion = NTXentLoss()`, "
            "called in training_step)."
        )
    try:  # misspelt role names are refused before any training
        roles = roles_from_settings(args.roles)
        resolve_roles(model, roles)
    except (ValueError, TypeError) as err:
        raise UnlearnInputError(f"--role: {err}") from err
    return model, cls, trainer_cls, roles


def _datamodule(args: argparse.Namespace, cls: type, data: Path, names: list[str], forget_file: Path) -> Any:
    """The image-folder datamodule, with the module's transform or ``--transform``."""
    from lightly_unlearn.image_folder import ImageFolderDataModule, make_transform

    transform = _module_transform(cls)
    if transform is not None and (args.transform or args.image_size):
        raise UnlearnInputError(
            f"{cls.__module__} defines `transform`, which is used; drop --transform/--image-size "
            "(or remove the module's transform to use them)."
        )
    try:
        if transform is None:
            from lightly_unlearn.image_folder import _first_height

            size = args.image_size or _first_height(data, names[0])
            transform = make_transform(args.transform or "simclr", size)
        return ImageFolderDataModule(
            str(data), str(forget_file), transform=transform, holdout=args.holdout,
            batch_size=args.batch_size, num_workers=args.num_workers, seed=args.seed,
        )
    except (FileNotFoundError, ValueError, TypeError) as err:
        raise UnlearnInputError(str(err)) from err


# -- the run --------------------------------------------------------------------------------------
def _verdict(audit: Any) -> str:
    if audit is None or audit.verdict is None:
        return "not audited (--no-audit)"
    return audit.verdict.line


def _relearn_test(args: argparse.Namespace, p: dict[str, Any], audit: Any) -> None:
    """``--relearn-epochs``: the relearning test (:func:`lightly_unlearn.relearn`) on a copy of the
    unlearned model, on the rank that wrote the audit; its numbers and warning join the audit."""
    if not args.relearn_epochs or audit is None or audit.after is None:
        return
    from lightly_unlearn.attacks.relearn import relearn

    result = relearn(p["model"], p["dm"], args.relearn_epochs, accelerator=args.accelerator,
                     roles=p.get("roles"), num_samples=args.audit_samples)
    audit.add_result("relearn", result.to_audit_result())


def _train(args: argparse.Namespace, p: dict[str, Any]) -> dict[str, Any]:
    from lightly_unlearn.callbacks.audit import AuditCallback
    from lightly_unlearn.callbacks.receipt import ReceiptCallback
    from lightly_unlearn.callbacks.unlearn import UnlearnCallback

    out: Path = p["out"]
    out.mkdir(parents=True, exist_ok=True)
    unlearn = UnlearnCallback(method=args.method, roles=p.get("roles"), **dict(args.hp))
    receipt_kwargs: dict[str, Any] = {"path": out / "unlearning_receipt.json",
                                      "input_checkpoint": p["ckpt"],
                                      "forget_commitment": p["commitment"]}
    if args.signing_key:
        receipt_kwargs["signing_key"] = args.signing_key
    receipt = ReceiptCallback(**receipt_kwargs)
    callbacks: list[Any] = [unlearn]
    audit = None
    if not args.no_audit:
        audits = ("emia", "alignment_matrix") if args.holdout else ("alignment_matrix",)
        audit = AuditCallback(audits=audits, num_samples=args.audit_samples,
                              batch_size=args.batch_size, roles=p.get("roles"))
        callbacks.append(audit)
    callbacks.append(receipt)
    trainer_kwargs: dict[str, Any] = dict(
        max_epochs=args.epochs, accelerator=args.accelerator, devices=args.devices,
        strategy=args.strategy, default_root_dir=str(out), logger=False,
        enable_checkpointing=False, enable_model_summary=False,
        enable_progress_bar=not args.no_progress, callbacks=callbacks,
    )
    if args.precision:
        trainer_kwargs["precision"] = args.precision
    trainer = p["trainer_cls"](**trainer_kwargs)
    trainer.fit(p["model"], datamodule=p["dm"])
    ckpt = out / "unlearned.ckpt"
    tmp = out / ".unlearned.ckpt.partial"
    trainer.save_checkpoint(tmp)  # collective under DDP; the rename makes it atomic
    if trainer.is_global_zero:
        os.replace(tmp, ckpt)
    _relearn_test(args, p, audit)
    receipt_path = receipt.write(trainer, ckpt)
    return dict(trainer=trainer, ckpt=ckpt, receipt=receipt_path, audit=audit, unlearn=unlearn)


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    try:
        prepared = _prepare(args)
    except UnlearnInputError as err:
        print(f"lightly-unlearn unlearn: error: {err}", file=sys.stderr)
        return 2
    try:
        result = _train(args, prepared)
    except KeyboardInterrupt:
        print("lightly-unlearn unlearn: interrupted; no unlearned checkpoint was written.",
              file=sys.stderr)
        return 1
    except Exception as err:  # the run failed: say what and where, keep the inputs untouched
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        print(f"lightly-unlearn unlearn: error during the run: {type(err).__name__}: {first}\n"
              "The input checkpoint and images were not modified; no unlearned checkpoint was "
              "written.", file=sys.stderr)
        return 1
    if not result["trainer"].is_global_zero:
        return 0
    dm, out = prepared["dm"], prepared["out"]
    lines = [
        "",
        "lightly-unlearn unlearn: done",
        f"  method       {result['unlearn'].method.name} {result['unlearn'].hyperparameters}",
        f"  forgotten    {len(dm.forget_indices)} of {dm.num_samples} images",
        f"  epochs       {result['trainer'].current_epoch} in {time.perf_counter() - start:.1f} s",
        f"  verdict      {_verdict(result['audit'])}",
        f"  checkpoint   {result['ckpt']}  (loads with {prepared['cls'].__name__}.load_from_checkpoint)",
        f"  receipt      {result['receipt']}",
        f"  proofs       {out / 'proofs'}  (one per forget file: give each to its data owner)",
    ]
    if result["audit"] is not None:
        lines.append(f"  audit report {out / 'audits' / 'report.md'}")
    check = f"lightly-unlearn verify-receipt {result['receipt']} --checkpoint {result['ckpt']}"
    if args.signing_key:  # keygen writes the public key beside the private one
        check += f" --public-key {Path(args.signing_key).with_suffix('.pub')}"
    lines.append(f"  check        {check}")
    print("\n".join(lines))
    return 0
