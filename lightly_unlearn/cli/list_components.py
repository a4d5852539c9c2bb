"""``lightly-unlearn list``: every method, audit, criterion and loss adapter found through entry
points."""

from __future__ import annotations

import argparse
import inspect
import re
from typing import Any

from lightly_unlearn import registry


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "list",
        help="list unlearning methods, audits, criteria and loss adapters with their settings",
        description="List every registered method, audit, criterion and loss adapter (built-in and plugins).",
    )
    kinds = sorted([*registry.GROUPS, *registry.KIND_ALIASES])
    p.add_argument("kind", nargs="?", choices=kinds, help="only this kind")


def _aliases(kind: str, name: str) -> str:
    names = [a for a, target in registry.ALIASES[kind].items() if target == name]
    return f" (aliases: {', '.join(sorted(names))})" if names else ""


def _describe_method(name: str, obj: Any) -> list[str]:
    lines = [f"  {name}{_aliases('method', name)}: {getattr(obj, 'summary', '')}".rstrip()]
    lines.append(f"      data: {getattr(obj, 'data', '?')}")
    defaults = getattr(obj, "defaults", {}) or {}
    helps = getattr(obj, "help", {}) or {}
    for key, value in defaults.items():
        text = f" — {helps[key]}" if key in helps else ""
        lines.append(f"      {key} = {value!r}{text}")
    if not defaults:
        lines.append("      (no hyper-parameters)")
    return lines


#: what the audits embed by default (AuditCallback(embed_fn="backbone"); docs/guide/auditing.md says the same)
FEATURES = {
    "clip": "features: CLIP image and caption embeddings (the model's encode_image / encode_text)",
    "views": "features: backbone outputs of K seeded augmented views per sample "
    "(AuditCallback(embed_fn='head'): projection-head outputs)",
    "clean": "features: backbone outputs of the un-augmented images "
    "(AuditCallback(embed_fn='head'): projection-head outputs)",
}


def _features(obj: Any) -> str | None:
    needs = getattr(obj, "needs", None) or ()
    for key in ("clip", "views", "clean"):
        if key in needs:
            return FEATURES[key]
    return None


def _describe_callable(name: str, obj: Any, kind: str) -> list[str]:
    doc = (inspect.getdoc(obj) or "").splitlines()
    lines = [f"  {name}{_aliases(kind, name)}: {doc[0] if doc else ''}".rstrip()]
    features = _features(obj) if kind == "audit" else None
    if features:
        lines.append(f"      {features}")
    try:
        params = inspect.signature(obj).parameters.values()
    except (TypeError, ValueError):
        params = []
    for p in params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.name == "self":
            continue
        default = "" if p.default is p.empty else f" = {p.default!r}"
        lines.append(f"      {p.name}{default}")
    return lines


def _describe_loss(name: str, obj: Any) -> list[str]:
    """A loss adapter: the losses it serves, what AC's gamma means there, its AC formulas and
    the papers they come from (the arXiv ids its docstrings cite)."""
    adapter = obj() if isinstance(obj, type) else obj
    lines = [f"  {name}: {getattr(adapter, 'losses', '')}".rstrip()]
    lines.append(f"      gamma: {getattr(adapter, 'gamma', '?')}")
    if not getattr(adapter, "positive_pair", True):
        lines.append("      Alignment Calibration: undefined (no positive pair)")
    elif getattr(adapter, "calibration", ""):
        lines.append(f"      Alignment Calibration: {adapter.calibration}")
    module = inspect.getmodule(type(adapter))
    docs = (inspect.getdoc(type(adapter)) or "") + (getattr(module, "__doc__", None) or "")
    ids = list(dict.fromkeys(re.findall(r"arXiv:\d{4}\.\d{4,5}", docs)))
    if ids:
        lines.append(f"      papers: {', '.join(ids)}")
    return lines


def run(args: argparse.Namespace) -> int:
    kinds = [registry.canonical_kind(args.kind)] if args.kind else list(registry.GROUPS)
    plural = {
        "method": "methods",
        "audit": "audits",
        "criterion": "criteria",
        "loss_adapter": "loss adapters (criteria UnlearnCallback can unlearn through)",
    }
    for kind in kinds:
        print(f"{plural[kind]} ({registry.GROUPS[kind]}):")
        components = registry.load_all(kind)
        if not components:
            print("  (none installed)")
        for name, obj in components.items():
            if kind == "method":
                lines = _describe_method(name, obj)
            elif kind == "loss_adapter":
                lines = _describe_loss(name, obj)
            else:
                lines = _describe_callable(name, obj, kind)
            print("\n".join(lines))
        print()
    return 0
