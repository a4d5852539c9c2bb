"""What importing a user's model file may run: its top level is read with ``ast`` before import.

``lightly-unlearn unlearn --model train.py:SimCLR@pretrained.ckpt`` imports ``train.py`` to get
the class. A training script written like lightly's examples trains at its top level, so
importing it would train again (and may overwrite the checkpoint it is asked to unlearn). The
CLI therefore reads the file's top level first and refuses one that *does* things when
imported. Accepted at the top level (everything else is refused, naming the file and line):

* ``import`` / ``from ... import``;
* ``def``, ``async def``, ``class``, with their decorators;
* a docstring or other bare constant, and ``pass``;
* assignments (``=``, ``x: T = ...``, ``+=``) of any value, calls included: ``model = SimCLR()``
  and ``transform = SimCLRTransform(input_size=32)`` build objects. What an assignment may not
  do is call a method of an object the file built earlier (``loss = trainer.fit(model)``,
  ``state = model.load_state_dict(...)``): that is the work of a script, not a definition;
* ``if __name__ == "__main__":`` blocks (never run on import; anything goes inside);
* other ``if`` blocks whose condition calls nothing (``if TYPE_CHECKING:``,
  ``if sys.version_info >= (3, 10):``) and whose branches hold only what this list accepts;
* ``try`` blocks whose handlers catch only ``ImportError`` / ``ModuleNotFoundError`` (optional
  imports), holding only what this list accepts.

Refused: a call on its own line (``trainer.fit(...)``, ``torch.manual_seed(0)``, ``main()``),
loops, ``with``, ``raise``, ``assert``, ``del``, ``global`` and the rest. For ``pkg.module:Class``
the module's file and the ``__init__.py`` of each package above it that is not imported yet are
read (found without importing anything). Modules the file itself imports are not read: the CLI
reads and hashes the input checkpoint before importing anything, so it is protected either way;
this check stops a training script from running by accident.
"""

from __future__ import annotations

import ast
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from lightly_unlearn.errors import ModuleCodeError

__all__ = ["ModuleCodeError", "check_model_module", "check_source", "module_files"]

_IMPORT_ERRORS = {"ImportError", "ModuleNotFoundError"}


def _is_main_guard(test: ast.expr) -> bool:
    """``__name__ == "__main__"`` (either side)."""
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
        return False
    sides = [test.left, test.comparators[0]]
    names = [s for s in sides if isinstance(s, ast.Name) and s.id == "__name__"]
    consts = [s for s in sides if isinstance(s, ast.Constant) and s.value == "__main__"]
    return len(names) == 1 and len(consts) == 1


def _calls(node: ast.AST) -> Iterator[ast.Call]:
    """Calls evaluated when ``node`` is evaluated (not those inside a lambda's body)."""
    if isinstance(node, ast.Lambda):
        yield from _calls(node.args)
        return
    if isinstance(node, ast.Call):
        yield node
    for child in ast.iter_child_nodes(node):
        yield from _calls(child)


def _root_name(node: ast.expr) -> str | None:
    """``trainer`` for ``trainer.fit``, ``a`` for ``a.b[0].c``; ``None`` otherwise."""
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _catches_only_import_errors(handler: ast.ExceptHandler) -> bool:
    kinds = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return all(isinstance(k, ast.Name) and k.id in _IMPORT_ERRORS for k in kinds)


def _bound_names(targets: list[ast.expr]) -> set[str]:
    out = set()
    for target in targets:
        for node in ast.walk(target):
            if isinstance(node, ast.Name):
                out.add(node.id)
    return out


class _Checker:
    """Walks top-level statements in order, remembering the names assignments bound."""

    def __init__(self) -> None:
        self.built: set[str] = set()

    def refusal(self, body: list[ast.stmt]) -> tuple[ast.AST, str] | None:
        """The first statement (or call) that runs code, and why; ``None`` if all are accepted."""
        for stmt in body:
            found = self._statement(stmt)
            if found is not None:
                return found
        return None

    def _statement(self, stmt: ast.stmt) -> tuple[ast.AST, str] | None:
        if isinstance(stmt, (ast.Import, ast.ImportFrom, ast.Pass)):
            return None
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            self.built.discard(stmt.name)  # a definition, not an object built by a call
            return None
        if isinstance(stmt, ast.Expr):
            if isinstance(stmt.value, ast.Constant):  # a docstring, `...`
                return None
            what = "a call" if isinstance(stmt.value, ast.Call) else "an expression"
            return stmt, f"{what} on its own line runs when the file is imported"
        if isinstance(stmt, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            return self._assignment(stmt)
        if isinstance(stmt, ast.If):
            if _is_main_guard(stmt.test):  # the body never runs on import; an `else` would
                return self.refusal(stmt.orelse)
            call = next(_calls(stmt.test), None)
            if call is not None:
                return call, "the condition of this `if` calls code when the file is imported"
            return self.refusal(stmt.body) or self.refusal(stmt.orelse)
        if isinstance(stmt, ast.Try):
            if not stmt.handlers or not all(_catches_only_import_errors(h) for h in stmt.handlers):
                return stmt, "a `try` block other than an optional import runs code"
            for block in (stmt.body, *(h.body for h in stmt.handlers), stmt.orelse, stmt.finalbody):
                found = self.refusal(block)
                if found is not None:
                    return found
            return None
        kind = type(stmt).__name__.lower()
        return stmt, f"a top-level `{kind}` statement runs code when the file is imported"

    def _assignment(self, stmt: ast.Assign | ast.AnnAssign | ast.AugAssign) -> tuple[ast.AST, str] | None:
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
        if stmt.value is not None:
            for call in _calls(stmt.value):
                root = _root_name(call.func)
                if isinstance(call.func, (ast.Attribute, ast.Subscript)) and root in self.built:
                    return call, (
                        f"this assignment calls a method of `{root}`, an object the file built "
                        "earlier: that is a script's work (training, saving), not a definition"
                    )
        if stmt.value is not None and next(_calls(stmt.value), None) is not None:
            self.built |= _bound_names(targets)
        return None


def check_source(source: str, filename: str | os.PathLike) -> None:
    """Raise :class:`ModuleCodeError` if ``source``'s top level runs code beyond definitions."""
    try:
        tree = ast.parse(source, filename=str(filename))
    except SyntaxError as err:
        raise ModuleCodeError(
            f"{filename} line {err.lineno}: cannot parse it: {err.msg}. Fix the syntax error."
        ) from None
    found = _Checker().refusal(tree.body)
    if found is None:
        return
    node, why = found
    line = (ast.get_source_segment(source, node) or "").splitlines()[0:1]
    shown = f" `{line[0].strip()[:70]}`" if line else ""
    raise ModuleCodeError(
        f"{filename} line {node.lineno}:{shown}: {why}. --model imports this file to get the "
        "class, so it must only define things: move the script's code under "
        '`if __name__ == "__main__":` (or pass --allow-module-code to import it anyway).'
    )


def _find_spec(fullname: str, path: list[str] | None) -> object | None:
    """``importlib`` 's spec search for one module, without importing it or its parents."""
    for finder in sys.meta_path:
        find = getattr(finder, "find_spec", None)
        if find is None:
            continue
        spec = find(fullname, path)
        if spec is not None:
            return spec
    return None


def module_files(module_name: str) -> list[Path]:
    """Source files that importing ``module_name`` would run and that have not run yet: the
    ``__init__.py`` of each package not imported yet, then the module's own file."""
    files, path = [], None
    parts = module_name.split(".")
    for i in range(len(parts)):
        name = ".".join(parts[: i + 1])
        loaded = sys.modules.get(name)
        if loaded is not None:
            path = list(getattr(loaded, "__path__", []) or [])
            continue
        spec = _find_spec(name, path)
        if spec is None:
            return files  # the import fails and says so
        origin = getattr(spec, "origin", None)
        if origin and str(origin).endswith(".py"):
            files.append(Path(origin))
        path = list(getattr(spec, "submodule_search_locations", None) or [])
    return files


def check_model_module(target: str) -> None:
    """Check every file that importing ``target``'s module (``pkg.module:Name`` or
    ``path/to/file.py:Name``) would run for the first time; :class:`ModuleCodeError` if one
    runs code beyond definitions."""
    module_name = target.rpartition(":")[0]
    if module_name.endswith(".py"):
        files = [Path(module_name)] if Path(module_name).is_file() else []
    else:
        if os.getcwd() not in sys.path and "" not in sys.path:
            sys.path.insert(0, os.getcwd())  # the same search as model_loading.import_object
        try:
            files = module_files(module_name)
        except (ImportError, ValueError):
            files = []  # the import itself will fail and say why
    for file in files:
        try:
            source = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise ModuleCodeError(f"{file}: cannot read it ({err}).") from None
        check_source(source, file)

