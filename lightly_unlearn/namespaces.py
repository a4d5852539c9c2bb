"""Lightning's two namespaces, ``lightning.pytorch`` and ``pytorch_lightning``, and errors that help.

The two packages ship the same code under two names, and their classes do not mix: a
``pytorch_lightning.Trainer`` refuses a ``lightning.pytorch.LightningModule`` and vice versa, with
a generic "`model` must be a `LightningModule`". lightly's example modules use
``import pytorch_lightning as pl``.

* Our callbacks derive from :class:`DualNamespaceCallback` (both namespaces' ``Callback``), and
  ``ForgetRetainDataModule`` from both ``LightningDataModule`` classes, so one implementation is
  accepted by either ``Trainer`` and either ``LightningCLI``.
* Importing this module wraps both trainers' model check once: when a module of one namespace
  meets the trainer of the other, the ``TypeError`` names both namespaces and what to use instead
  (``PLCLIPModule`` for ``CLIPModule``, ``pl.Trainer`` for a lightly module, ...).
"""

from __future__ import annotations

import functools
import importlib
from typing import Any

import lightning.pytorch as L
import pytorch_lightning as pl

from lightly_unlearn.errors import NamespaceMismatchError  # noqa: F401  (re-exported)

__all__ = [
    "LIGHTNING",
    "PYTORCH_LIGHTNING",
    "DualNamespaceCallback",
    "NamespaceMismatchError",
    "mismatch_message",
    "namespace_of",
    "trainer_class_for",
]

LIGHTNING = "lightning.pytorch"
PYTORCH_LIGHTNING = "pytorch_lightning"
_IMPORT = {LIGHTNING: "import lightning.pytorch as L", PYTORCH_LIGHTNING: "import pytorch_lightning as pl"}
_TRAINER = {LIGHTNING: "L.Trainer", PYTORCH_LIGHTNING: "pl.Trainer"}
#: classes of ours that exist once per namespace: name -> {namespace: public name}
_TWINS = {
    "CLIPModule": {LIGHTNING: "CLIPModule", PYTORCH_LIGHTNING: "PLCLIPModule"},
    "PLCLIPModule": {LIGHTNING: "CLIPModule", PYTORCH_LIGHTNING: "PLCLIPModule"},
}


class DualNamespaceCallback(L.Callback, pl.Callback):
    """Base of lightly-unlearn's callbacks: a ``Callback`` in both Lightning namespaces.

    Both trainers and both ``LightningCLI`` classes accept subclasses (their checks are
    ``isinstance`` / ``issubclass`` against their own ``Callback``), so one implementation
    serves lightly's ``pytorch_lightning`` modules and ``lightning.pytorch`` modules alike.
    """


def namespace_of(obj: Any) -> str | None:
    """``"lightning.pytorch"``, ``"pytorch_lightning"`` or ``None`` for an object or class.

    Decided by the Lightning base classes in its MRO; an object deriving from both namespaces
    (our callbacks and datamodule) or from neither gives ``None``.
    """
    cls = obj if isinstance(obj, type) else type(obj)
    found = set()
    for base in cls.__mro__:
        module = getattr(base, "__module__", "") or ""
        if module == PYTORCH_LIGHTNING or module.startswith(PYTORCH_LIGHTNING + "."):
            found.add(PYTORCH_LIGHTNING)
        elif module == LIGHTNING or module.startswith(LIGHTNING + "."):
            found.add(LIGHTNING)
    return found.pop() if len(found) == 1 else None


def trainer_class_for(module: Any) -> type:
    """The ``Trainer`` class of ``module``'s namespace (``pl.Trainer`` for lightly's modules)."""
    ns = namespace_of(module)
    if ns is None:
        raise NamespaceMismatchError(
            f"{type(module).__name__} is not a LightningModule of either namespace "
            f"({PYTORCH_LIGHTNING}.LightningModule, as lightly's examples use, or "
            f"{LIGHTNING}.LightningModule); the trainer needs one."
        )
    return pl.Trainer if ns == PYTORCH_LIGHTNING else L.Trainer


def mismatch_message(obj: Any, expected: str, what: str = "Trainer") -> str:
    """One message for a ``obj`` of one namespace given to a ``what`` of namespace ``expected``."""
    name = type(obj).__name__ if not isinstance(obj, type) else obj.__name__
    actual = namespace_of(obj)
    if actual is None or actual == expected:
        return ""
    twin = _TWINS.get(name, {}).get(expected)
    if twin is not None and twin != name:
        fix = (
            f"use lightly_unlearn.{twin} (the same module for {expected}), or a "
            f"{actual} {what} ({_IMPORT[actual]}; {_TRAINER[actual]}(...))"
        )
    else:
        fix = (
            f"use the {what} of the module's namespace: {_IMPORT[actual]}; "
            f"{_TRAINER[actual]}(...)"
            + (
                " (lightly's modules are pytorch_lightning modules)"
                if actual == PYTORCH_LIGHTNING
                else ""
            )
        )
    return (
        f"{name} is a {actual}.LightningModule, but this {what} is from {expected}. "
        f"The two Lightning namespaces do not mix: {fix}."
    )


def _wrap_model_check(namespace: str) -> None:
    """Make ``<namespace>.Trainer.fit/validate/test/predict`` name the namespaces on a mismatch."""
    trainer_module = importlib.import_module(f"{namespace}.trainer.trainer")
    original = getattr(trainer_module, "_maybe_unwrap_optimized", None)
    if original is None or getattr(original, "_lightly_unlearn_hint", False):
        return

    @functools.wraps(original)
    def checked(model: Any) -> Any:
        try:
            return original(model)
        except TypeError as err:
            message = mismatch_message(model, namespace)
            if message:
                raise NamespaceMismatchError(message) from err
            raise

    checked._lightly_unlearn_hint = True  # type: ignore[attr-defined]
    trainer_module._maybe_unwrap_optimized = checked


for _namespace in (LIGHTNING, PYTORCH_LIGHTNING):
    _wrap_model_check(_namespace)
