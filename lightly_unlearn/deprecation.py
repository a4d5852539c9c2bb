"""Names that moved keep working at their earlier import path, with a ``DeprecationWarning``
that names the new home (PEP 562 module ``__getattr__``)."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Mapping
from typing import Any


def moved_names(module: str, homes: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``module`` serving each name in ``homes`` from its new
    module, with a ``DeprecationWarning`` saying where to import it from."""

    def __getattr__(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        warnings.warn(
            f"{module}.{name} is deprecated here; import it from {home} "
            f"(`from {home} import {name}`).",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(home), name)

    return __getattr__
