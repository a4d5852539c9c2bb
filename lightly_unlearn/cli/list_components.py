"""``lightly-unlearn list``: every method, audit and criterion found through entry points."""

from __future__ import annotations

import argparse
import inspect
from typing import Any

from lightly_unlearn import registry


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "list",
        help="list unlearning methods, audits and criteria with their hyper-parameters",
        description="List every registered method, audit and criterion (built-in and plugins).",
    )
    p.add_argument("kind", nargs="?", choices=sorted(registry.GROUPS), help="only this kind")


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


#: what the audits embed by default (AuditCallback(embed_fn="backbone"); the README says the same)
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


def run(args: argparse.Namespace) -> int:
    kinds = [args.kind] if args.kind else ["method", "audit", "criterion"]
    plural = {"method": "methods", "audit": "audits", "criterion": "criteria"}
    for kind in kinds:
        print(f"{plural[kind]} ({registry.GROUPS[kind]}):")
        components = registry.load_all(kind)
        if not components:
            print("  (none installed)")
        for name, obj in components.items():
            if kind == "method":
                lines = _describe_method(name, obj)
            else:
                lines = _describe_callable(name, obj, kind)
            print("\n".join(lines))
        print()
    return 0
