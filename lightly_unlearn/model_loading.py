"""Resolve ``MODEL`` strings and load checkpoints into the user's own class.

One implementation behind ``lightly-unlearn audit``, ``lightly-unlearn unlearn`` and
``UnlearnCallback(init_checkpoint=...)``:

* ``pkg.module:Name`` imports ``Name`` from an importable module (the current folder is on the
  path, as with ``python -m``); ``path/to/file.py:Name`` imports it from a file, with the file's
  folder on the path so that its ``import`` of neighbouring modules works.
* ``...:Class@path/to.ckpt`` builds ``Class(**hyper_parameters)`` and loads the checkpoint's
  weights with ``torch.load(weights_only=True)`` (data only, no code runs).
* A checkpoint that does not fit the class fails with one line: how many keys are missing and
  unexpected, the first three of each, and whether ``MODEL`` is the class that wrote it.

Importing this module does not import torch.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lightly_unlearn.errors import ModelSpecError

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "ModelSpecError",
    "build_from_checkpoint",
    "import_object",
    "load_initial_weights",
    "load_weights",
    "read_checkpoint",
    "split_model_spec",
]


def split_model_spec(spec: str) -> tuple[str, str | None]:
    """``"pkg.mod:Class@x.ckpt"`` -> ``("pkg.mod:Class", "x.ckpt")``; no ``@`` -> ``(spec, None)``."""
    target, sep, ckpt = spec.partition("@")
    if ":" not in target:
        raise ModelSpecError(
            f"Cannot read MODEL {spec!r}: expected 'pkg.module:Name', 'path/to/file.py:Name', "
            "optionally followed by '@path/to.ckpt'."
        )
    if sep and not ckpt:
        raise ModelSpecError(f"MODEL {spec!r}: nothing after '@'; give the checkpoint path.")
    return target, (ckpt or None)


def _import_file(path: Path, spec: str) -> Any:
    if not path.is_file():
        raise ModelSpecError(f"MODEL {spec!r}: no such Python file {path}.")
    folder = str(path.resolve().parent)
    if folder not in sys.path:  # `import simclr` next to the file works, as with `python file.py`
        sys.path.insert(0, folder)
    name = path.stem
    existing = sys.modules.get(name)
    if existing is not None and getattr(existing, "__file__", None) and Path(
        existing.__file__
    ).resolve() == path.resolve():
        return existing
    loader = importlib.util.spec_from_file_location(name, path)
    if loader is None or loader.loader is None:
        raise ModelSpecError(f"MODEL {spec!r}: {path} is not an importable Python file.")
    module = importlib.util.module_from_spec(loader)
    sys.modules[name] = module  # classes defined there pickle and resolve like imported ones
    try:
        loader.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def import_object(target: str, spec: str | None = None) -> Any:
    """The object named by ``pkg.module:Name`` or ``path/to/file.py:Name`` (dotted ``Name`` ok)."""
    spec = spec or target
    module_name, sep, attr = target.rpartition(":")
    if not sep or not module_name or not attr:
        raise ModelSpecError(
            f"Cannot read MODEL {spec!r}: expected 'pkg.module:Name' or 'path/to/file.py:Name'."
        )
    bytecode = sys.dont_write_bytecode
    sys.dont_write_bytecode = True  # no __pycache__ written beside the user's files
    try:
        if module_name.endswith(".py"):
            module = _import_file(Path(module_name), spec)
        else:
            if os.getcwd() not in sys.path and "" not in sys.path:
                sys.path.insert(0, os.getcwd())  # like `python -m`: modules in this folder import
            module = importlib.import_module(module_name)
    except (ModelSpecError, KeyboardInterrupt):
        raise
    except SystemExit as err:  # the module ended the process while being imported
        raise ModelSpecError(
            f"MODEL {spec!r}: importing {module_name!r} called sys.exit({err.code!r}) "
            "(SystemExit): the file runs as a script when imported. Move its script code under "
            '`if __name__ == "__main__":`.'
        ) from None
    except BaseException as err:
        raise ModelSpecError(
            f"MODEL {spec!r}: cannot import {module_name!r}: {type(err).__name__}: {err}"
        ) from err
    finally:
        sys.dont_write_bytecode = bytecode
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ModelSpecError(f"MODEL {spec!r}: {module_name!r} has no attribute {attr!r}.")
        obj = getattr(obj, part)
    return obj


def read_checkpoint(
    path: str | os.PathLike, spec: str | None = None, *, data: bytes | None = None
) -> tuple[dict, dict]:
    """``(weights, hyper_parameters)`` of a Lightning checkpoint or a plain state dict.

    Loaded with ``torch.load(weights_only=True)`` on the CPU (:func:`lightly_unlearn.io.
    load_checkpoint`); the file is only read. ``data``: the file's bytes, read earlier (the CLI
    reads the input checkpoint before importing user code); ``path`` then only names it.
    """
    from lightly_unlearn.io import checkpoint_weights, load_checkpoint

    what = f"MODEL {spec!r}: " if spec else ""
    path = Path(path)
    if data is None and not path.is_file():
        raise ModelSpecError(f"{what}checkpoint file {path} does not exist.")
    try:
        state = load_checkpoint(path if data is None else data)
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelSpecError(
            f"{what}cannot load {path} with torch.load(weights_only=True): {first}"
        ) from err
    if not isinstance(state, Mapping):
        raise ModelSpecError(f"{what}{path} holds a {type(state).__name__}, not a state dict.")
    weights = checkpoint_weights(state)
    if not isinstance(weights, Mapping) or not all(isinstance(k, str) for k in weights):
        raise ModelSpecError(f"{what}{path} holds no state dict of named tensors.")
    hparams = state.get("hyper_parameters", None) if "state_dict" in state else None
    if hparams is not None and (
        not isinstance(hparams, Mapping) or not all(isinstance(k, str) for k in hparams)
    ):
        raise ModelSpecError(
            f"{what}{path}: 'hyper_parameters' is a {type(hparams).__name__}, not a mapping of "
            "argument names to values (what save_hyperparameters() writes). Re-save the "
            "checkpoint with the class's keyword arguments there, or as a plain state dict."
        )
    return dict(weights), dict(hparams or {})


def _non_finite(module: nn.Module, weights: Mapping[str, Any]) -> list[str]:
    """Names of tensors that cannot be a trained model's: NaN anywhere, +-inf in a parameter
    (a buffer may hold -inf on purpose, e.g. an attention mask)."""
    import torch

    parameters = {name for name, _ in module.named_parameters()}
    bad = []
    for name, value in weights.items():
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            continue
        if bool(torch.isnan(value).any()) or (name in parameters and not bool(torch.isfinite(value).all())):
            bad.append(name)
    return bad


def _first(names: list[str], n: int = 3) -> str:
    shown = ", ".join(names[:n])
    return shown + (", …" if len(names) > n else "")


def load_weights(
    module: nn.Module, weights: Mapping[str, Any], *, model: str, source: str | os.PathLike
) -> None:
    """``module.load_state_dict(weights)``, strict, with a one-line error when it does not fit.

    Args:
        module: The freshly built model.
        weights: The checkpoint's state dict.
        model: How the user named the class (``pkg.module:Class``), for the message.
        source: The checkpoint path, for the message.
    """
    own = module.state_dict()
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    shapes = [
        f"{k} {tuple(weights[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in weights and hasattr(weights[k], "shape") and weights[k].shape != own[k].shape
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys ({_first(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys ({_first(unexpected)})")
        if shapes:
            parts.append(f"{len(shapes)} tensors of another shape ({_first(shapes, 2)})")
        raise ModelSpecError(
            f"{source} does not fit {model}: {'; '.join(parts)}. "
            f"Is {model} the class that wrote this checkpoint?"
        )
    if bad := _non_finite(module, weights):
        raise ModelSpecError(
            f"{source} holds NaN or infinite values in {len(bad)} tensor(s) ({_first(bad)}): "
            "these weights are broken before any unlearning. Use the checkpoint of a finite "
            "model (e.g. an earlier one of the training run)."
        )
    try:
        module.load_state_dict(weights, strict=True)
    except Exception as err:  # e.g. a custom load_state_dict hook
        first = str(err).strip().splitlines()[0]
        raise ModelSpecError(f"{source} does not load into {model}: {first}") from err


def build_from_checkpoint(
    cls: Any, path: str | os.PathLike, *, model: str, data: bytes | None = None
) -> nn.Module:
    """``cls(**hyper_parameters)`` with the checkpoint's weights (``weights_only=True``);
    ``data``: the checkpoint's bytes read earlier (see :func:`read_checkpoint`)."""
    weights, hparams = read_checkpoint(path, model, data=data)
    # LightningCLI stores its own bookkeeping (``_class_path``, ``_instantiator``) there
    kwargs = {k: v for k, v in hparams.items() if not str(k).startswith("_")}
    try:
        module = cls(**kwargs)
    except Exception as err:
        shown = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        raise ModelSpecError(
            f"MODEL {model!r}: cannot build {getattr(cls, '__name__', cls)}({shown}) from the "
            f"hyper-parameters saved in {path}: {type(err).__name__}: {err}"
        ) from err
    load_weights(module, weights, model=model, source=path)
    return module


def load_initial_weights(module: nn.Module, path: str | os.PathLike) -> None:
    """Load a checkpoint's weights (only) into ``module`` in place: strict, ``weights_only=True``.

    Used by ``UnlearnCallback(init_checkpoint=...)`` to start unlearning from pretrained weights
    without restoring the pretraining loop; a mismatch fails with one line.
    """
    weights, _ = read_checkpoint(path)
    load_weights(module, weights, model=type(module).__qualname__, source=path)
