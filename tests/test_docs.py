"""The documentation tells the truth: the README stays a short front door whose quick start runs
as it is, every guide code block that does not say it is a sketch runs, the README's tables name
every registered method and audit, and relative links lead somewhere."""

from __future__ import annotations

import re
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from lightly_unlearn import registry

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"

#: A fenced block: its info string (language and options) and its body.
FENCE = re.compile(r"^([ \t]*)```([^\n]*)\n(.*?)^\1```[ \t]*$", re.M | re.S)
#: Python blocks whose title starts with this are illustrations the reader adapts, not run.
SKETCH = re.compile(r'title="Sketch\b([^"]*)"')


@dataclass
class Block:
    path: Path
    line: int  # 1-based line of the first code line
    info: str
    code: str

    @property
    def lang(self) -> str:
        return self.info.split()[0] if self.info.split() else ""

    @property
    def runs(self) -> bool:
        return self.lang == "python" and not SKETCH.search(self.info)


def code_blocks(path: Path) -> list[Block]:
    text = path.read_text(encoding="utf-8")
    return [Block(path, text.count("\n", 0, m.start(3)) + 1, m.group(2).strip(), textwrap.dedent(m.group(3)))
            for m in FENCE.finditer(text)]


def pages() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


def run_blocks(blocks: list[Block]) -> dict:
    """Run ``blocks`` in order in one namespace, as a reader pasting them would; tracebacks point
    at the Markdown file's own line numbers."""
    namespace: dict = {"__name__": "__docs__"}
    for block in blocks:
        source = "\n" * (block.line - 1) + block.code
        exec(compile(source, str(block.path), "exec"), namespace)  # noqa: S102
    return namespace


# -- the README: a front door ----------------------------------------------------------------------
def test_readme_is_short_and_says_how_to_install_early():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 300, f"README.md has {len(lines)} lines; move detail into docs/"
    first = "\n".join(lines[:60])
    assert "## Install" in first and "pip install" in first


def test_readme_first_python_block_is_the_quick_start():
    block = next(b for b in code_blocks(README) if b.lang == "python")
    assert block.runs
    for name in ("load_digits", "ForgetRetainDataModule", "UnlearnCallback", "ReceiptCallback",
                 "verify_receipt", "import pytorch_lightning as pl", "NTXentLoss", "SimCLRProjectionHead"):
        assert name in block.code, name


@pytest.mark.slow
def test_readme_quick_start_runs_as_is(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    block = next(b for b in code_blocks(README) if b.lang == "python")
    start = time.perf_counter()
    run_blocks([block])
    seconds = time.perf_counter() - start
    assert seconds < 180, f"the quick start took {seconds:.0f} s; the README promises minutes"
    for path in ("pretrained.ckpt", "unlearned.ckpt", "unlearn_out/unlearning_receipt.json",
                 "unlearn_out/audits/report.md", "keys/receipt_signing.pub"):
        assert (tmp_path / path).is_file(), path
    assert len(list((tmp_path / "unlearn_out" / "proofs").glob("*.proof.json"))) == 5  # one per item


@pytest.mark.parametrize("kind", ["method", "audit"])
def test_readme_tables_name_every_registered_component(kind):
    """A method or audit added as an entry point must appear in the README's table."""
    named = set(re.findall(r"`(\w+)`", "\n".join(
        line.split("|")[1] for line in README.read_text(encoding="utf-8").splitlines()
        if line.startswith("| `"))))
    missing = set(registry.available(kind)) - named
    assert not missing, f"README.md's {kind} table lacks {sorted(missing)}"


# -- the guide: code that claims to run, runs -------------------------------------------------------
GUIDE_PAGES = [p for p in pages() if p != README and any(b.runs for b in code_blocks(p))]


@pytest.mark.parametrize("page", GUIDE_PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_guide_code_blocks_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_blocks([b for b in code_blocks(page) if b.runs])


def test_sketches_say_what_they_need():
    """A block that is not run says so to the reader, with the reason (``title="Sketch: ..."``)."""
    for page in pages():
        for block in code_blocks(page):
            match = SKETCH.search(block.info)
            if match:
                assert match.group(1).strip(" :—-"), f"{page}:{block.line}: say what the sketch needs"


def test_guide_has_runnable_code():
    """The checks above are not vacuous: the guide has code that runs."""
    assert len(GUIDE_PAGES) >= 3


# -- links ----------------------------------------------------------------------------------------
LINK = re.compile(r"\]\(([^)#\s]+)(#[^)\s]*)?\)")


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_lead_to_files(page):
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    for target, _ in LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue
        assert (page.parent / target).exists(), f"{page.relative_to(ROOT)} links to missing {target}"


# -- the layout page is drawn from the code -----------------------------------------------------
PACKAGE = ROOT / "lightly_unlearn"
LAYOUT_ROW = re.compile(r"^\| (\d+) [^|]*\| `lightly_unlearn/([\w.]+?)/?` \|", re.M)


def layout_layers() -> dict[str, int]:
    """``{unit: layer}`` from docs/layout.md; a unit is a sub-package or a top-level module."""
    rows = LAYOUT_ROW.findall((DOCS / "layout.md").read_text(encoding="utf-8"))
    return {name.removesuffix(".py"): int(layer) for layer, name in rows}


def package_units() -> set[str]:
    units = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    return units | {p.stem for p in PACKAGE.glob("*.py")}


def test_layout_page_lists_every_folder_and_module():
    listed, present = set(layout_layers()), package_units()
    assert present - listed == set(), "document these in docs/layout.md"
    assert listed - present == set(), "docs/layout.md lists what no longer exists"


def _unit_of(module: str, name: str | None = None) -> str:
    """The unit a ``lightly_unlearn...`` import reaches (the package root resolves its lazy names)."""
    import lightly_unlearn

    parts = module.split(".")
    if len(parts) > 1:
        return parts[1]
    if name in package_units():
        return name
    lazy = getattr(lightly_unlearn, "_LAZY", {})
    return lazy[name].split(".")[1] if name in lazy else "__init__"


def test_imports_follow_the_layers_on_the_layout_page():
    import ast

    layers = layout_layers()
    wrong = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE)
        unit = rel.parts[0].removesuffix(".py")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "lightly_unlearn":
                targets = [_unit_of(node.module, a.name) for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [_unit_of(a.name) for a in node.names if a.name.startswith("lightly_unlearn.")]
            else:
                continue
            wrong += [f"{rel}:{node.lineno} imports {t} (layer {layers[t]} > {layers[unit]})"
                      for t in targets if t != unit and layers[t] > layers[unit]]
    assert not wrong, "imports against the direction on docs/layout.md:\n" + "\n".join(wrong)


# -- shell examples name real commands and options -------------------------------------------------
def cli_invocations() -> list[tuple[Path, int, list[str]]]:
    """Every ``lightly-unlearn ...`` line of the shell blocks (continuations joined, comments and
    the ``[ ]`` of optional parts dropped)."""
    import shlex

    found = []
    for page in pages():
        for block in code_blocks(page):
            if block.lang not in ("bash", "sh", "shell", "console"):
                continue
            text = re.sub(r"\\\n\s*", " ", block.code)
            for offset, line in enumerate(text.splitlines()):
                line = line.split(" #", 1)[0].strip()
                if line.startswith("lightly-unlearn "):
                    tokens = [t.strip("[]") for t in shlex.split(line)]
                    found.append((page, block.line + offset, [t for t in tokens if t and t != "..."]))
    return found


def test_shell_examples_use_real_commands_and_options():
    from lightly_unlearn.cli import build_parser

    invocations = cli_invocations()
    assert len(invocations) >= 5
    for page, line, tokens in invocations:
        command = tokens[1]
        parser = build_parser(command)
        sub = next(a for a in parser._subparsers._group_actions if a.dest == "command")
        assert command in sub.choices, f"{page.name}:{line}: no command {command!r}"
        options = set(sub.choices[command]._option_string_actions)
        unknown = [t.split("=")[0] for t in tokens[2:] if t.startswith("--") and t.split("=")[0] not in options]
        assert not unknown, f"{page.name}:{line}: lightly-unlearn {command} has no {unknown}"
