"""Discovery of methods, audits, criteria and loss adapters through entry points.

Built-in components are declared in this package's own ``pyproject.toml`` in the same groups a
third-party distribution uses, so there is one code path. Resolution order for a name:
runtime registrations (:func:`register`), then entry points (loaded lazily, per name, so a
broken third-party plugin only fails when it is selected), then an error listing what exists.

A name means one thing: a plugin that declares a built-in name (``ac``, ``emia``), or two
distributions declaring the same name, is refused when the name is loaded (the error names
the distributions), and :func:`register` refuses built-in names, so no receipt can say ``ac``
for someone else's code.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from typing import Any

import entrypoints

from lightly_unlearn.errors import ConfigurationError, UnknownComponentError

#: kind -> entry-point group; each group is named for what it holds
GROUPS = {
    "method": "lightly_unlearn.methods",  # UnlearningMethod classes
    "audit": "lightly_unlearn.audits",  # Audit classes
    "criterion": "lightly_unlearn.criteria",  # losses (criteria) a module may use
    "loss_adapter": "lightly_unlearn.loss_adapters",  # RowTermsAdapter classes
}
#: Earlier spellings of kinds, still accepted (``lightly-unlearn list loss``).
KIND_ALIASES = {"loss": "loss_adapter"}
#: Earlier group names, still read; a plugin found there gets a DeprecationWarning.
LEGACY_GROUPS = {"loss_adapter": "lightly_unlearn.losses"}

#: Short names users may type for built-in methods.
ALIASES = {
    "method": {
        "rt": "retrain",
        "ft": "finetune",
        "ga": "gradient_ascent",
        "ng": "neggrad",
        "l1": "l1_sparse",
        "alignment_calibration": "ac",
    },
    "audit": {},
    "criterion": {},
    "loss_adapter": {},
}

_runtime: dict[str, dict[str, Any]] = {kind: {} for kind in GROUPS}


def canonical_kind(kind: str) -> str:
    """``kind`` with an earlier spelling resolved (``loss`` -> ``loss_adapter``); raises for an
    unknown kind."""
    kind = KIND_ALIASES.get(kind, kind)
    if kind not in GROUPS:
        raise ValueError(f"Unknown component kind {kind!r}; expected one of {sorted(GROUPS)}.")
    return kind


def _groups(kind: str) -> list[str]:
    """The entry-point groups read for ``kind``: its group, then its earlier name if any."""
    return [GROUPS[kind], *([LEGACY_GROUPS[kind]] if kind in LEGACY_GROUPS else [])]


def _entry_points(kind: str, path: Sequence[str] | None) -> dict[str, entrypoints.EntryPoint]:
    """The entry points of ``kind``'s group, and of its earlier group (with a warning)."""
    path = list(path) if path else None
    named = entrypoints.get_group_named(GROUPS[kind], path=path)
    legacy = LEGACY_GROUPS.get(kind)
    old = entrypoints.get_group_named(legacy, path=path) if legacy else {}
    for name, ep in old.items():
        warnings.warn(
            f"{_distribution(ep)} declares the {kind} {name!r} in the entry-point group "
            f"{legacy!r}, which is now {GROUPS[kind]!r}; move it there (the old group will stop "
            "being read).",
            DeprecationWarning,
            stacklevel=3,
        )
    return {**old, **named}


_THIS_DISTRIBUTION = "lightly-unlearn"


def _distribution(ep: Any) -> str:
    name = getattr(getattr(ep, "distro", None), "name", None) or "an unnamed distribution"
    return re.sub(r"[-_.]+", "-", name).lower()


def _builtin_names(kind: str) -> set[str]:
    kind = canonical_kind(kind)
    named = {
        ep.name for ep in entrypoints.get_group_all(GROUPS[kind])
        if _distribution(ep) == _THIS_DISTRIBUTION
    }
    return named | set(ALIASES[kind])


def register(kind: str, name: str, obj: Any) -> None:
    """Register ``obj`` under ``name`` for this process (tests, notebooks); built-in names and
    aliases are refused (register under a name of your own)."""
    kind = canonical_kind(kind)
    if canonical_name(kind, name) in _builtin_names(kind):
        raise ConfigurationError(
            f"{kind} {name!r} is a built-in name of lightly-unlearn; register yours under another "
            "name (a receipt or report naming it must mean the built-in)."
        )
    _runtime[kind][name] = obj


def unregister(kind: str, name: str) -> None:
    _runtime[canonical_kind(kind)].pop(name, None)


def available(kind: str, path: Sequence[str] | None = None) -> list[str]:
    """Sorted names of every component of ``kind``: runtime and entry points."""
    kind = canonical_kind(kind)
    return sorted(set(_runtime[kind]) | set(_entry_points(kind, path)))


def canonical_name(kind: str, name: str) -> str:
    """Resolve an alias (``ga`` -> ``gradient_ascent``); other names are returned unchanged."""
    kind = canonical_kind(kind)
    key = name.strip().lower().replace("-", "_")
    return ALIASES[kind].get(key, key)


def load(kind: str, name: str, path: Sequence[str] | None = None) -> Any:
    """Return the object registered as ``name`` (after aliases) in the ``kind`` group."""
    kind = canonical_kind(kind)
    group = GROUPS[kind]
    key = canonical_name(kind, name)
    if key in _runtime[kind]:
        return _runtime[kind][key]
    named = _entry_points(kind, path)
    if key in named:
        _refuse_ambiguous(kind, key, path)
    if key not in named:
        aliases = ", ".join(f"{a}={t}" for a, t in sorted(ALIASES[kind].items()))
        raise UnknownComponentError(
            f"Unknown {kind} {name!r}. Available {kind}s: {', '.join(available(kind, path))}"
            + (f" (aliases: {aliases})" if aliases else "")
            + f". Third-party {kind}s are added through the {group!r} entry-point group."
        )
    try:
        return named[key].load()
    except Exception as err:  # a broken plugin: say which one
        raise ImportError(
            f"The {kind} {key!r} is declared by {_distribution(named[key])} as "
            f"{named[key].module_name}:{named[key].object_name}, but loading it failed: {err}"
        ) from err


def _refuse_ambiguous(kind: str, key: str, path: Sequence[str] | None) -> None:
    """One declaration per name: a plugin re-declaring a built-in name, or two distributions
    declaring the same name (in the group or its earlier name), is refused instead of whichever
    sys.path finds first."""
    group = GROUPS[kind]
    declared = {
        (_distribution(ep), ep.module_name, ep.object_name)
        for g in _groups(kind)
        for ep in entrypoints.get_group_all(g, path=list(path) if path else None)
        if ep.name == key
    }
    distributions = sorted({d for d, _, _ in declared})
    if len(declared) <= 1:
        return
    others = [d for d in distributions if d != _THIS_DISTRIBUTION]
    if _THIS_DISTRIBUTION in distributions:
        raise ConfigurationError(
            f"The {kind} name {key!r} is built into lightly-unlearn, and {', '.join(others)} "
            f"declares it too (entry-point group {group!r}); a plugin may not replace a built-in. "
            f"Rename the plugin's entry point (e.g. '{others[0].replace('-', '_')}_{key}'), or "
            "uninstall it."
        )
    raise ConfigurationError(
        f"The {kind} name {key!r} is declared by {' and '.join(distributions)} (entry-point group "
        f"{group!r}); which one is meant cannot be told. Uninstall one or rename its entry point."
    )


def load_all(kind: str, path: Sequence[str] | None = None) -> dict[str, Any]:
    """Load every component of ``kind``; broken plugins are skipped with a warning."""
    kind = canonical_kind(kind)
    out = {}
    for name in available(kind, path):
        try:
            out[name] = load(kind, name, path)
        except ImportError as err:
            warnings.warn(str(err), stacklevel=2)
    return out
