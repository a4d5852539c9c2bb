"""A griffe extension for the API reference: the package's docstrings use Sphinx roles
(``:class:`X```, ``:func:`x```) and ``::`` before literal blocks, which Markdown would show
verbatim. Roles become code spans; ``::`` becomes ``:`` (the indented block after it is already a
Markdown code block)."""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj|py:\w+):`~?([^`]+)`")
LITERAL = re.compile(r"(?m)(\S)::$|^[ \t]*::[ \t]*$")


def markdown(text: str) -> str:
    text = ROLE.sub(lambda m: f"`{m.group(1)}`", text)
    return LITERAL.sub(lambda m: f"{m.group(1)}:" if m.group(1) else "", text)


class SphinxRoles(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown(obj.docstring.value)
