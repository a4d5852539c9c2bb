"""The benchmark pages of the docs are what ``benchmarks/render_docs.py`` renders from the result
files: no number on them is copied by hand, and no result file goes unreported."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def render_docs():
    spec = importlib.util.spec_from_file_location("render_docs", ROOT / "benchmarks" / "render_docs.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def test_committed_pages_equal_what_the_script_renders(render_docs):
    for page in render_docs.PAGES:
        path = render_docs.PAGES_DIR / page.name
        assert path.is_file(), f"{path} is missing: run `python benchmarks/render_docs.py`"
        assert path.read_text(encoding="utf-8") == render_docs.render(page), (
            f"{path.relative_to(ROOT)} differs from what the script renders from benchmarks/results: "
            "run `python benchmarks/render_docs.py` (never edit the page by hand)")


def test_every_result_file_is_on_a_page(render_docs):
    rendered = {s.source for page in render_docs.PAGES for s in page.sections}
    results = {str(p.relative_to(render_docs.RESULTS)) for p in render_docs.RESULTS.rglob("*.json")}
    assert results - rendered == set(), "add these result files to a page in benchmarks/render_docs.py"


def test_check_mode_finds_a_stale_page(render_docs, tmp_path, monkeypatch, capsys):
    page = next(p for p in render_docs.PAGES if p.name == "resnet18_sanity.md")
    monkeypatch.setattr(render_docs, "PAGES", [page])
    monkeypatch.setattr(render_docs, "PAGES_DIR", tmp_path)
    (tmp_path / page.name).write_text(render_docs.render(page).replace("| simclr |", "| SimCLR |", 1))
    assert render_docs.main(["--check"]) == 1
    assert page.name in capsys.readouterr().err
    assert render_docs.main([]) == 0 and render_docs.main(["--check"]) == 0


def test_demo_page_names_the_machine(render_docs):
    text = (render_docs.PAGES_DIR / "demo.md").read_text(encoding="utf-8")
    assert "Produced by `lightly-unlearn demo`" in text and "cores" in text
    assert "another CPU gives slightly different numbers" in text


def test_a_merged_run_names_each_run_and_its_seeds(render_docs):
    payload = {"merged_from": [{"command": "a", "eval_seeds": [1, 2], "partial": True},
                               {"command": "b", "eval_seeds": [3, 4, 5], "partial": False}], "seconds": 120.0}
    line = render_docs.run_line(payload)
    assert line == ("Merged with `--merge-seeds` from: `a` (seeds [1, 2]; stopped early: the seeds it "
                    "finished); `b` (seeds [3, 4, 5]), 2 min wall.")
