"""``lightly-unlearn unlearn``: a checkpoint, a folder of images and a forget list in; an unlearned
checkpoint, a receipt and an audit report out. No Python to write.

    lightly-unlearn unlearn --model pkg.module:Class@pretrained.ckpt --data IMAGES_DIR \\
        --forget forget.txt --method ac [--hp alpha=1.0 --hp beta=0] [--epochs N] \\
        [--batch-size B] [--holdout IMAGES_DIR] [--accelerator gpu --devices 2] --out DIR

The forget list has one file name per line, relative to IMAGES_DIR (see --forget).
--model's file is imported to get the class: its top level may only define things (imports,
def/class, assignments; training code under `if __name__ == "__main__":`), see docs/cli.md.
The input checkpoint is read and hashed before any of that code runs, and the weights come
from that copy. The model is trained with its own training_step and configure_optimizers; the
method changes only its objective and data stream. Every generator is seeded with --seed and
deterministic kernels are selected: the same command gives the same weights and numbers.

Outputs in DIR (written into DIR.partial-XXXX beside it, renamed to DIR when complete; one run
per DIR): unlearned.ckpt (loads with Class.load_from_checkpoint), unlearning_receipt.json,
proofs/ (one <name>.proof.json per forget file, for its data owner's `lightly-unlearn
verify-deletion`) and audits/ (report.md, audit.json, gap_matrix.png). Inputs are only read, and re-checked before
the outputs appear: a changed input ends the run with exit status 1 and no outputs.

Exit status: 0 done, 2 bad input (refused before any training), 1 failure during the run.
"""

from __future__ import annotations

import argparse
import ast
import errno
import sys
import time
from pathlib import Path
from typing import Any

from lightly_unlearn.errors import InputChangedError, UnlearnInputError

MODEL_HELP = (
    "the pretrained model: pkg.module:Class@path/to.ckpt or path/to/file.py:Class@path/to.ckpt "
    "(a Lightning checkpoint or state dict, loaded into Class(**hyper_parameters) with "
    "weights_only=True; a file's neighbouring modules are importable; the file is imported: "
    "its top level may only define things, see --allow-module-code)"
)
FORGET_HELP = (
    "text file: names of the images to forget, relative to --data, one per line; surrounding "
    "whitespace, blank lines, lines starting with '#' and ' # comments' are ignored; a line "
    'starting with " is a JSON string, for any other name ("  spaces # and \\"quotes\\""); '
    "UTF-8, or UTF-16/32 with a byte-order mark"
)


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
    req.add_argument("--forget", required=True, metavar="FILE", help=FORGET_HELP.replace("%", "%%"))
    req.add_argument("--out", required=True, metavar="DIR",
                     help="new (or empty) output folder, not inside --data/--holdout, not the "
                          "checkpoint's folder; one run at a time (DIR.lock beside it)")
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
                   help="lightly view transform; wins over a `transform` object or class the "
                        "model's module defines (default: the module's, else simclr)")
    d.add_argument("--image-size", type=_positive, default=None,
                   help="crop size of --transform (default: the first image's height)")
    d.add_argument("--num-workers", type=int, default=0, help="DataLoader workers (default 0)")
    d.add_argument("--seed", type=int, default=0,
                   help="seed of every generator (model code, views, shuffling, partners, "
                        "audits; DataLoader workers too): same command, same results (default 0)")
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
    o.add_argument("--allow-module-code", action="store_true",
                   help="import --model's file even if its top level runs code beyond definitions "
                        "(by default refused: see docs/cli.md)")
    return parser


# -- checks before any work -----------------------------------------------------------------------
def _check_out(out: Path, inputs: list[Path | None], ckpt: Path) -> None:
    from lightly_unlearn.errors import OutputPathError
    from lightly_unlearn.output_folder import OutputFolder
    from lightly_unlearn.paths import check_output_path

    try:  # the package's one output check: not an input, not inside an input folder, writable
        check_output_path(out, inputs=inputs, kind="dir", what="--out")
        OutputFolder(out).check_free()  # checked again under the run's lock
    except OutputPathError as err:
        raise UnlearnInputError(str(err)) from err
    if out.resolve() == ckpt.resolve().parent:
        raise UnlearnInputError(
            f"--out {out} is the folder of the input checkpoint {ckpt}; outputs are never written "
            "next to the input. Choose another folder."
        )


def _check_trainer_args(args: argparse.Namespace) -> None:
    """An accelerator this machine lacks, or Trainer settings Lightning rejects, at the door."""
    import torch

    accelerator = str(args.accelerator).lower()
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise UnlearnInputError(
            f"--accelerator {args.accelerator}: no CUDA device is available here (torch "
            f"{torch.__version__}, CUDA build {torch.version.cuda}). Use --accelerator cpu, or run "
            "on a machine with a GPU."
        )
    if accelerator == "mps" and not torch.backends.mps.is_available():
        raise UnlearnInputError("--accelerator mps: Apple's MPS is not available here; use cpu.")
    import logging

    from lightning.pytorch import Trainer

    quiet = [logging.getLogger(n) for n in ("lightning.pytorch", "pytorch_lightning")]
    levels = [log.level for log in quiet]
    try:  # Lightning's own checks of these values, with nothing written and nothing printed
        for log in quiet:
            log.setLevel(logging.ERROR)
        Trainer(accelerator=args.accelerator, devices=args.devices, strategy=args.strategy,
                precision=args.precision, logger=False, enable_checkpointing=False,
                enable_progress_bar=False, enable_model_summary=False, max_epochs=1)
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UnlearnInputError(
            f"--accelerator/--devices/--strategy/--precision: {first}"
        ) from err
    finally:
        for log, level in zip(quiet, levels):
            log.setLevel(level)


def _check_file_size_limit(ckpt_bytes: int) -> None:
    """A file-size limit (``ulimit -f``) below the checkpoint's size would kill the run at its end."""
    try:
        import resource
    except ImportError:  # not POSIX
        return
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY and limit < ckpt_bytes:
        raise UnlearnInputError(
            f"the file size limit (ulimit -f) is {limit} bytes, but the unlearned checkpoint will "
            f"be about {ckpt_bytes} bytes (the input checkpoint's size). Raise the limit "
            "(`ulimit -f unlimited`) and run again."
        )


def _check_signing_key(args: argparse.Namespace) -> None:
    from lightly_unlearn.errors import SigningKeyError
    from lightly_unlearn.receipt import load_signing_key

    if args.signing_key:
        try:
            load_signing_key(args.signing_key)
        except SigningKeyError as err:
            raise UnlearnInputError(f"--signing-key: {err}") from err


def _read_checkpoint_bytes(ckpt: Path) -> tuple[bytes, dict[str, Any]]:
    """The input checkpoint's bytes and record (path, sha256, size), read before any user code."""
    from lightly_unlearn.io import sha256_bytes

    try:
        data = ckpt.read_bytes()
    except OSError as err:
        raise UnlearnInputError(f"--model: cannot read the checkpoint {ckpt} ({err.strerror}).") from err
    return data, {"path": str(ckpt), "sha256": sha256_bytes(data), "bytes": len(data)}


def _check_files(args: argparse.Namespace, data: Path, holdout: Path | None,
                 forget_file: Path) -> dict[str, Any]:
    """Image names, forget positions and the digests of every input file; images decoded fully."""
    from lightly_unlearn.image_folder import (
        check_holdout_apart,
        check_images,
        image_files,
        read_forget_list,
    )
    from lightly_unlearn.io import sha256_bytes

    try:
        names = image_files(data, "--data")
        if not forget_file.is_file():
            raise FileNotFoundError(f"--forget {forget_file}: no such file.")
        raw = forget_file.read_bytes()
        forget_ids = read_forget_list(forget_file, names, raw=raw)
        digests = check_images(data, names, "--data")
        holdout_names, holdout_digests = None, {}
        if holdout is not None:
            check_holdout_apart(data, holdout)
            holdout_names = image_files(holdout, "--holdout")
            holdout_digests = check_images(holdout, holdout_names, "--holdout")
            check_holdout_apart(data, holdout, digests, holdout_digests)
    except (OSError, ValueError) as err:
        raise UnlearnInputError(str(err)) from err
    snapshot = {str(forget_file): sha256_bytes(raw)}
    snapshot.update({str(data / n): d for n, d in digests.items()})
    snapshot.update({str(holdout / n): d for n, d in holdout_digests.items()})
    return dict(names=names, forget_ids=forget_ids, holdout_names=holdout_names, snapshot=snapshot,
                commitment=_commit_forget_files(data, [names[i] for i in forget_ids]))


def _commit_forget_files(data: Path, forget_names: list[str]) -> Any:
    """The forget files committed by content (receipt root, one deletion proof per file)."""
    from lightly_unlearn.forget_commitment import commit_files

    try:
        return commit_files(data, forget_names)
    except (OSError, ValueError) as err:
        raise UnlearnInputError(f"--forget: {err}") from err


def _check_method(args: argparse.Namespace) -> Any:
    """The method, built with ``--hp`` (unknown hyper-parameters are refused here)."""
    from lightly_unlearn import registry

    try:
        return registry.load("method", args.method)(**dict(args.hp))
    except Exception as err:  # a bad name or value, or a plugin that fails to load or build
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UnlearnInputError(f"--method {args.method} / --hp: {first}") from err


def _prepare(args: argparse.Namespace) -> dict[str, Any]:
    """Everything that can be refused, refused here: no training has started, nothing written."""
    from lightly_unlearn.image_folder import check_image_size
    from lightly_unlearn.reproducibility import make_reproducible

    target, ckpt_path = _checkpoint_of(args)
    data, forget_file, out = Path(args.data), Path(args.forget), Path(args.out)
    holdout = Path(args.holdout) if args.holdout else None
    _check_out(out, [data, holdout, ckpt_path, forget_file], ckpt_path)
    if args.image_size is not None:
        try:
            check_image_size(args.image_size, args.batch_size)
        except ValueError as err:
            raise UnlearnInputError(str(err)) from err
    _check_trainer_args(args)
    _check_signing_key(args)
    ckpt_bytes, ckpt_record = _read_checkpoint_bytes(ckpt_path)  # before any user code runs
    _check_file_size_limit(len(ckpt_bytes))
    files = _check_files(args, data, holdout, forget_file)
    method = _check_method(args)
    make_reproducible(args.seed)  # code run on import draws from seeded generators too
    model, cls, trainer_cls, roles = _load_model(args, target, ckpt_path, ckpt_bytes)
    snapshot = {str(ckpt_path): ckpt_record["sha256"], **files["snapshot"]}
    _check_unchanged(snapshot)  # importing and building the model ran the user's code
    dm = _datamodule(args, cls, data, holdout, files, method)
    if args.relearn_epochs and (holdout is None or args.no_audit):
        raise UnlearnInputError("--relearn-epochs re-audits the forget images against never-seen "
                                "ones: give --holdout (and drop --no-audit).")
    if holdout is None and not args.no_audit:
        print("lightly-unlearn unlearn: no --holdout: the audit shows the alignment gap of the forget "
              "set only (no reference for never-seen images).", file=sys.stderr)
    return dict(target=target, ckpt=ckpt_path, ckpt_record=ckpt_record, model=model, cls=cls,
                dm=dm, out=out, trainer_cls=trainer_cls, roles=roles, snapshot=snapshot,
                commitment=files["commitment"])


def _checkpoint_of(args: argparse.Namespace) -> tuple[str, Path]:
    """``--model pkg.module:Class@ckpt`` -> (``pkg.module:Class``, existing checkpoint path)."""
    from lightly_unlearn.errors import ModelSpecError
    from lightly_unlearn.model_loading import split_model_spec

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


def _load_model(args: argparse.Namespace, target: str, ckpt_path: Path,
                ckpt_bytes: bytes) -> tuple[Any, type, Any, Any]:
    """The user's class (its file checked, then imported), built from the checkpoint bytes read
    earlier; its Trainer class and its module roles."""
    from lightly_unlearn.errors import ModelSpecError, NamespaceMismatchError
    from lightly_unlearn.model_loading import build_from_checkpoint, import_object
    from lightly_unlearn.module_code import check_model_module
    from lightly_unlearn.namespaces import trainer_class_for
    from lightly_unlearn.reproducibility import make_reproducible
    from lightly_unlearn.roles import resolve_roles, roles_from_settings

    try:
        if not args.allow_module_code:
            check_model_module(target)
        cls = import_object(target, args.model)
        if not isinstance(cls, type):
            raise UnlearnInputError(f"--model {target!r} is not a class.")
        make_reproducible(args.seed, like=cls)  # the module's own namespace
        model = build_from_checkpoint(cls, ckpt_path, model=target, data=ckpt_bytes)
        trainer_cls = trainer_class_for(model)
    except (ModelSpecError, NamespaceMismatchError) as err:
        raise UnlearnInputError(f"--model: {err}") from err
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


def _module_transform(cls: type) -> tuple[Any, str | None]:
    """A multi-view transform *object* or *class* named ``transform`` in the model's class or
    module, and how to name it; a function of that name is not taken (it may be anything)."""
    import inspect

    module = sys.modules.get(getattr(cls, "__module__", ""), None)
    for owner, label in ((cls, cls.__name__), (module, getattr(module, "__name__", "module"))):
        transform = getattr(owner, "transform", None) if owner is not None else None
        if transform is None or isinstance(transform, (property, staticmethod)):
            continue
        if inspect.isroutine(transform) or inspect.ismodule(transform) or not callable(transform):
            print(f"lightly-unlearn unlearn: {label}.transform is a "
                  f"{'function' if inspect.isroutine(transform) else type(transform).__name__}, "
                  "not a transform object or class; it is not used.", file=sys.stderr)
            continue
        return transform, f"{label}.transform"
    return None, None


def _transform(args: argparse.Namespace, cls: type, data: Path, names: list[str]) -> Any:
    """``--transform`` when given (explicit wins), else the module's transform, else simclr."""
    from lightly_unlearn.image_folder import _first_height, check_image_size, make_transform

    found, label = _module_transform(cls)
    if args.transform is None and found is not None:
        if args.image_size is not None:
            raise UnlearnInputError(
                f"--image-size sets the crop size of --transform, but no --transform was given and "
                f"{label} would be used. Add --transform simclr|moco (it then wins over {label}), "
                "or drop --image-size to use the module's transform."
            )
        try:
            return found() if isinstance(found, type) else found
        except Exception as err:
            raise UnlearnInputError(
                f"{label} is a class, and {label}() failed: {type(err).__name__}: {err}. Give "
                "--transform simclr|moco instead, or define an instance."
            ) from err
    if found is not None:
        print(f"lightly-unlearn unlearn: using --transform {args.transform}; {label} is not used.",
              file=sys.stderr)
    size = args.image_size or _first_height(data, names[0])
    check_image_size(size, args.batch_size, "--image-size" if args.image_size else
                     f"the first image's height ({data / names[0]})")
    return make_transform(args.transform or "simclr", size)


def _datamodule(args: argparse.Namespace, cls: type, data: Path, holdout: Path | None,
                files: dict[str, Any], method: Any) -> Any:
    """The image-folder datamodule, from the names and forget positions read at the door, with
    the stream ``method`` trains on checked (e.g. a forget set that is the whole data set)."""
    from lightly_unlearn.data.datamodule import ForgetRetainDataModule
    from lightly_unlearn.image_folder import ImageFolder

    names = files["names"]
    try:
        transform = _transform(args, cls, data, names)
        holdout_set = None if holdout is None else ImageFolder(holdout, files["holdout_names"])
        dm = ForgetRetainDataModule(
            ImageFolder(data, names), files["forget_ids"], transform,
            batch_size=min(args.batch_size, len(names)), num_workers=args.num_workers,
            holdout=holdout_set, seed=args.seed,
        )
        dm.configure(method.data, extra_view=method.extra_view, pair_forget=method.pairs_forget)
        return dm
    except (OSError, ValueError, TypeError) as err:
        raise UnlearnInputError(str(err)) from err


def _check_unchanged(snapshot: dict[str, str]) -> None:
    """Every input file still has the SHA-256 it had when it was read."""
    from lightly_unlearn.io import sha256_file

    changed = []
    for path, digest in snapshot.items():
        try:
            now = sha256_file(path)
        except OSError:
            now = "missing"
        if now != digest:
            changed.append(f"{path} (sha256 {digest[:12]}… -> {now[:12]}{'…' if now != 'missing' else ''})")
    if changed:
        shown = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
        raise InputChangedError(
            f"input changed during the run: {shown}. The model's code or another process wrote "
            "to it. No outputs were written (a receipt would not describe these files); restore "
            "the inputs and run again."
        )


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


def _callbacks(args: argparse.Namespace, p: dict[str, Any], partial: Path) -> dict[str, Any]:
    from lightly_unlearn.callbacks.audit import AuditCallback
    from lightly_unlearn.callbacks.receipt import ReceiptCallback
    from lightly_unlearn.callbacks.unlearn import UnlearnCallback

    unlearn = UnlearnCallback(method=args.method, roles=p.get("roles"), **dict(args.hp))
    receipt = ReceiptCallback(path=partial / "unlearning_receipt.json", input_checkpoint=p["ckpt"],
                              signing_key=args.signing_key, input_record=p["ckpt_record"],
                              forget_commitment=p["commitment"])
    audit = None
    if not args.no_audit:
        audits = ("emia", "alignment_matrix") if args.holdout else ("alignment_matrix",)
        audit = AuditCallback(audits=audits, num_samples=args.audit_samples,
                              batch_size=args.batch_size, roles=p.get("roles"))
    return dict(unlearn=unlearn, audit=audit, receipt=receipt)


def _train(args: argparse.Namespace, p: dict[str, Any], partial: Path) -> dict[str, Any]:
    """Fit, then write the checkpoint and the receipt into the temporary folder ``partial``."""
    from lightly_unlearn.reproducibility import make_reproducible

    cbs = _callbacks(args, p, partial)
    callbacks = [c for c in (cbs["unlearn"], cbs["audit"], cbs["receipt"]) if c is not None]
    trainer_kwargs: dict[str, Any] = dict(
        max_epochs=args.epochs, accelerator=args.accelerator, devices=args.devices,
        strategy=args.strategy, default_root_dir=str(partial), logger=False,
        enable_checkpointing=False, enable_model_summary=False, deterministic="warn",
        enable_progress_bar=not args.no_progress, callbacks=callbacks,
    )
    if args.precision:
        trainer_kwargs["precision"] = args.precision
    trainer = p["trainer_cls"](**trainer_kwargs)
    make_reproducible(args.seed, like=p["cls"])  # the same generator states at every fit start
    trainer.fit(p["model"], datamodule=p["dm"])
    ckpt = partial / "unlearned.ckpt"
    trainer.save_checkpoint(ckpt)  # collective under DDP
    final = Path(args.out) / "unlearned.ckpt"
    _relearn_test(args, p, cbs["audit"])
    receipt_path = cbs["receipt"].write(trainer, ckpt, output_name=str(final))
    return dict(trainer=trainer, ckpt=final, receipt=receipt_path, audit=cbs["audit"],
                unlearn=cbs["unlearn"])


def _summary(args: argparse.Namespace, prepared: dict[str, Any], result: dict[str, Any],
             seconds: float) -> str:
    dm, out = prepared["dm"], prepared["out"]
    receipt = out / "unlearning_receipt.json"
    lines = [
        "",
        "lightly-unlearn unlearn: done",
        f"  method       {result['unlearn'].method.name} {result['unlearn'].hyperparameters}",
        f"  forgotten    {len(dm.forget_indices)} of {dm.num_samples} images",
        f"  epochs       {result['trainer'].current_epoch} in {seconds:.1f} s",
        f"  verdict      {_verdict(result['audit'])}",
        f"  checkpoint   {result['ckpt']}  (loads with {prepared['cls'].__name__}.load_from_checkpoint)",
        f"  receipt      {receipt}",
        f"  proofs       {out / 'proofs'}  (one per forget file: give each to its data owner)",
    ]
    if result["audit"] is not None:
        lines.append(f"  audit report {out / 'audits' / 'report.md'}")
    check = f"lightly-unlearn verify-receipt {receipt} --checkpoint {result['ckpt']}"
    if args.signing_key:  # keygen writes the public key beside the private one
        check += f" --public-key {Path(args.signing_key).with_suffix('.pub')}"
    lines.append(f"  check        {check}")
    return "\n".join(lines)


def _fail(message: str, status: int) -> int:
    print(f"lightly-unlearn unlearn: error: {message}", file=sys.stderr)
    return status


def run(args: argparse.Namespace) -> int:
    from lightly_unlearn.errors import OutputPathError
    from lightly_unlearn.output_folder import OutputFolder

    start = time.perf_counter()
    try:
        prepared = _prepare(args)
    except UnlearnInputError as err:
        return _fail(str(err), 2)
    except InputChangedError as err:
        return _fail(str(err), 1)
    with OutputFolder(prepared["out"]) as folder:
        try:
            partial = folder.claim()
        except OutputPathError as err:
            return _fail(str(err), 2)
        try:
            result = _train(args, prepared, partial)
            if not result["trainer"].is_global_zero:
                return 0
            _check_unchanged(prepared["snapshot"])
            folder.commit()
        except InputChangedError as err:
            return _fail(str(err), 1)
        except KeyboardInterrupt:
            return _fail("interrupted; no outputs were written.", 1)
        except OSError as err:
            if err.errno not in (errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)):
                raise
            why = "file size limit (ulimit -f) reached" if err.errno == errno.EFBIG else err.strerror
            return _fail(f"{why} while writing {err.filename or 'the outputs'}; no outputs were "
                         "written (the inputs are unchanged). Free space, raise the limit or choose "
                         "another --out.", 1)
        except Exception as err:  # the run failed: say what and where, keep the inputs untouched
            first = str(err).strip().splitlines()[0] if str(err).strip() else ""
            return _fail(f"during the run: {type(err).__name__}: {first}\nThe input checkpoint and "
                         "images were not modified; no outputs were written.", 1)
    print(_summary(args, prepared, result, time.perf_counter() - start))
    return 0
