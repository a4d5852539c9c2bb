"""Each error has one import path, ``lightly_unlearn.errors``; names that moved still import from
their earlier documented path, with a DeprecationWarning naming the new home."""

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
