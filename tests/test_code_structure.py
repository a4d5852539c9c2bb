"""How the package is put together: each error has one import path (``lightly_unlearn.errors``),
names that moved still import from their earlier documented path with a DeprecationWarning, and
every Lightning hook a callback implements is marked ``@override`` (as Lightning marks its own)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import lightly_unlearn
from lightly_unlearn import errors

ERRORS = {name for name, obj in vars(errors).items()
          if inspect.isclass(obj) and issubclass(obj, Exception) and obj.__module__ == errors.__name__}


def _packages() -> list[str]:
    return ["lightly_unlearn"] + [
        info.name for info in pkgutil.walk_packages(lightly_unlearn.__path__, "lightly_unlearn.")
        if info.ispkg
    ]


def test_no_package_or_public_list_re_exports_an_error():
    assert ERRORS >= {"AuditInputError", "ForgetSetError", "ReceiptError"}
    for name in _packages():
        module = importlib.import_module(name)
        assert not ERRORS & set(getattr(module, "__all__", ())), name
        assert not ERRORS & set(vars(module)), f"{name} binds an error; import it from lightly_unlearn.errors"


def test_every_error_class_is_defined_in_lightly_unlearn_errors():
    for info in pkgutil.walk_packages(lightly_unlearn.__path__, "lightly_unlearn."):
        if info.name.endswith("__main__") or info.name == errors.__name__:  # (__main__ runs the CLI)
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and issubclass(obj, Exception) and obj.__module__ == info.name:
                pytest.fail(f"{info.name}.{name} is an error defined outside lightly_unlearn.errors")


@pytest.mark.parametrize(("old", "name", "home"), [
    ("lightly_unlearn", "ForgetSetError", "lightly_unlearn.errors"),
    ("lightly_unlearn", "NonFiniteLossError", "lightly_unlearn.errors"),
    ("lightly_unlearn.audits", "AuditInputError", "lightly_unlearn.errors"),
    ("lightly_unlearn.clip", "PretrainedWeightsUnavailable", "lightly_unlearn.errors"),
    ("lightly_unlearn.data", "ForgetSetError", "lightly_unlearn.errors"),
    ("lightly_unlearn.receipt", "commit_files", "lightly_unlearn.forget_commitment"),
    ("lightly_unlearn.receipt", "write_proofs", "lightly_unlearn.forget_commitment"),
    ("lightly_unlearn.receipt", "weights_record", "lightly_unlearn.weights_digest"),
])
def test_moved_names_still_import_with_a_deprecation_warning(old, name, home):
    with pytest.warns(DeprecationWarning, match=f"{old}.{name} is deprecated here; import it from {home}"):
        value = getattr(importlib.import_module(old), name)
    assert value is getattr(importlib.import_module(home), name)
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        _ = importlib.import_module(old).not_a_name


def test_every_callback_hook_is_marked_override():
    import lightning.pytorch as L

    from lightly_unlearn.namespaces import DualNamespaceCallback

    for info in pkgutil.walk_packages(lightly_unlearn.__path__, "lightly_unlearn."):
        if not info.name.endswith("__main__"):  # (runs the command line)
            importlib.import_module(info.name)
    callbacks = set()
    todo = [DualNamespaceCallback]
    while todo:
        cls = todo.pop()
        callbacks.add(cls)
        todo.extend(cls.__subclasses__())
    callbacks = {c for c in callbacks if c.__module__.startswith("lightly_unlearn.")
                 and c is not DualNamespaceCallback}
    assert {c.__name__ for c in callbacks} >= {
        "UnlearnCallback", "AuditCallback", "ReceiptCallback", "HoldoutAlignmentStopping"}
    hooks = {n for n, v in vars(L.Callback).items() if callable(v) and not n.startswith("_")}
    for cls in callbacks:
        for hook in hooks & set(vars(cls)):
            assert getattr(vars(cls)[hook], "__override__", False), f"{cls.__name__}.{hook} lacks @override"
