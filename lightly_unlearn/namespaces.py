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
* When ``lightning.pytorch.cli`` or ``pytorch_lightning.cli`` is imported (now or later: an import
  hook, so ``import lightly_unlearn`` never loads jsonargparse), its ``LightningCLI`` gets the same
  hint for a class of the other namespace, given as ``LightningCLI(model_class=...)`` (and
  ``datamodule_class`` / ``trainer_class``: raised as :class:`NamespaceMismatchError`) or as a
  ``class_path`` in a config file or on the command line (model, data, callbacks: the hint heads
  jsonargparse's error message, which the CLI prints before exiting).
"""

from __future__ import annotations

import functools
import importlib
import importlib.abc
import importlib.machinery
import re
import sys
from types import ModuleType
from typing import Any

import lightning.pytorch as L
import pytorch_lightning as pl

from lightly_unlearn.errors import NamespaceMismatchError

__all__ = [
    "LIGHTNING",
    "PYTORCH_LIGHTNING",
    "DualNamespaceCallback",
    "cli_mismatch_hints",
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


#: the Lightning base classes whose name says what kind of object a class is
_KINDS = ("LightningModule", "LightningDataModule", "Callback", "Trainer")


def _kind(cls: type, namespace: str) -> str:
    """``"LightningModule"``, ``"Callback"``, ... : the first Lightning base of ``cls`` in ``namespace``."""
    for base in cls.__mro__:
        module = getattr(base, "__module__", "") or ""
        if base.__name__ in _KINDS and (module == namespace or module.startswith(namespace + ".")):
            return base.__name__
    return "class"


def _remedy(what: str, namespace: str) -> str:
    """How to get the ``what`` (``"Trainer"`` or ``"LightningCLI"``) of ``namespace``."""
    if what == "LightningCLI":
        return f"{namespace}.cli.LightningCLI (from {namespace}.cli import LightningCLI)"
    return f"{_IMPORT[namespace]}; {_TRAINER[namespace]}(...)"


def mismatch_message(obj: Any, expected: str, what: str = "Trainer") -> str:
    """One message for ``obj`` of one namespace given to a ``what`` of namespace ``expected``.

    ``obj`` is an instance or a class (module, datamodule, callback, trainer); ``what`` is
    ``"Trainer"`` or ``"LightningCLI"``. Empty when ``obj`` is not of the other namespace.
    """
    cls = obj if isinstance(obj, type) else type(obj)
    name = cls.__name__
    actual = namespace_of(cls)
    if actual is None or actual == expected:
        return ""
    twin = _TWINS.get(name, {}).get(expected)
    if twin is not None and twin != name:
        fix = (
            f"use lightly_unlearn.{twin} (the same module for {expected}), or the "
            f"{what} of {actual}: {_remedy(what, actual)}"
        )
    else:
        fix = (
            f"use the {what} of its namespace: {_remedy(what, actual)}"
            + (
                "; lightly's modules are pytorch_lightning modules"
                if actual == PYTORCH_LIGHTNING
                else ""
            )
        )
    return (
        f"{name} is a {actual}.{_kind(cls, actual)}, but this {what} is from {expected}. "
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


# -- LightningCLI ---------------------------------------------------------------------------------

_CLI_MODULES = {f"{LIGHTNING}.cli": LIGHTNING, f"{PYTORCH_LIGHTNING}.cli": PYTORCH_LIGHTNING}
#: dotted names in an error message (``model.SimCLR``, ``lightly_unlearn.CLIPModule``, ...)
_DOTTED = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+")


def _imported_class(path: str) -> type | None:
    """The class named by ``path`` if its module is already imported (nothing is imported here)."""
    parts = path.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        module = sys.modules.get(".".join(parts[:cut]))
        if module is None:
            continue
        obj: Any = module
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except Exception:  # a lazy attribute that fails, a name that is no attribute: no hint
            return None
        return obj if isinstance(obj, type) else None
    return None


def cli_mismatch_hints(message: str, namespace: str) -> list[str]:
    """Hints for the classes of the other namespace named in a ``LightningCLI`` parse error.

    jsonargparse's refusal quotes the value it was given (``Given value: model.SimCLR`` or the
    ``class_path`` dict of a config file); classes it imported while trying are looked up.
    """
    hints = []
    for path in dict.fromkeys(_DOTTED.findall(message)):
        cls = _imported_class(path)
        hint = mismatch_message(cls, namespace, "LightningCLI") if cls is not None else ""
        if hint and hint not in hints:
            hints.append(hint)
    return hints


def _wrap_cli(namespace: str, cli_module: ModuleType) -> None:
    """Make ``<namespace>.cli``'s parser name the namespaces when a class of the other one is given."""
    parser_class = getattr(cli_module, "LightningArgumentParser", None)
    if parser_class is None or getattr(parser_class, "_lightly_unlearn_hint", False):
        return
    add_class_args = getattr(parser_class, "add_lightning_class_args", None)
    error = getattr(parser_class, "error", None)
    if add_class_args is None or error is None:
        return

    @functools.wraps(add_class_args)
    def checked_add_class_args(self: Any, lightning_class: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return add_class_args(self, lightning_class, *args, **kwargs)
        except Exception as err:  # Lightning's MisconfigurationException "Cannot add arguments"
            message = mismatch_message(lightning_class, namespace, "LightningCLI")
            if message and isinstance(lightning_class, type):
                raise NamespaceMismatchError(message) from err
            raise

    @functools.wraps(error)
    def error_with_hint(self: Any, message: str, *args: Any, **kwargs: Any) -> Any:
        try:
            hints = cli_mismatch_hints(str(message), namespace)
        except Exception:  # never let the hint hide the parser's own error
            hints = []
        if hints:
            message = "\n".join(hints) + "\n" + str(message)
        return error(self, message, *args, **kwargs)

    parser_class.add_lightning_class_args = checked_add_class_args
    parser_class.error = error_with_hint
    parser_class._lightly_unlearn_hint = True


_FILE_LOADERS = (
    importlib.machinery.SourceFileLoader,
    importlib.machinery.SourcelessFileLoader,
    importlib.machinery.ExtensionFileLoader,
)


class _CLIImportHook(importlib.abc.MetaPathFinder):
    """Wraps ``lightning.pytorch.cli`` / ``pytorch_lightning.cli`` right after they are imported.

    The CLI modules import jsonargparse (slow, optional), so they are never imported from here;
    the wrap happens only if and when the user's code imports them.
    """

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname not in _CLI_MODULES:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if not isinstance(loader, _FILE_LOADERS):  # an unusual installation: no hook, no harm
            return spec
        exec_module = loader.exec_module

        def exec_and_wrap(module: ModuleType) -> None:
            exec_module(module)
            _wrap_cli(_CLI_MODULES[fullname], module)

        loader.exec_module = exec_and_wrap  # type: ignore[method-assign]  # a loader per file
        return spec


for _name, _namespace in _CLI_MODULES.items():
    if _name in sys.modules:
        _wrap_cli(_namespace, sys.modules[_name])
if not any(isinstance(finder, _CLIImportHook) for finder in sys.meta_path):
    sys.meta_path.insert(0, _CLIImportHook())
