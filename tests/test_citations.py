"""Alignment Calibration is cited as what it is, everywhere a user reads (package, README, docs,
examples, benchmarks): Wang, Lu, Zhang, Boenisch, Dziedzic, Yu, Gao, arXiv:2406.03603. arXiv:2405.07317
(Wang & Chen) is a different method and may only be named as that."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _texts():
    for pattern in ("lightly_unlearn/**/*.py", "examples/**/*.py", "benchmarks/**/*.py", "docs/**/*.md", "*.md"):
        for path in ROOT.glob(pattern):
            yield path, path.read_text(encoding="utf-8")


def test_2405_07317_is_never_cited_as_alignment_calibration():
    seen = 0
    for path, text in _texts():
        seen += 1
        assert "Machine Unlearning in Contrastive Learning" not in text, path  # not AC's title
        for match in re.finditer(r"2405\.07317", text):
            window = text[max(0, match.start() - 300): match.end() + 300]
            assert "Wang & Chen" in window and "gradient-penalty" in window, (
                f"{path}: arXiv:2405.07317 is gradient-penalty unlearning by Wang & Chen, not AC"
            )
    assert seen > 50  # the package, README and docs were read


def test_alignment_calibration_citations_name_its_paper():
    """Wherever an arXiv id sits right after 'Alignment Calibration', it is 2406.03603."""
    for path, text in _texts():
        for match in re.finditer(r"Alignment Calibration[^.\n]{0,80}?arXiv:?\s*(\d{4}\.\d{5})", text):
            assert match.group(1) == "2406.03603", f"{path}: {match.group(0)!r}"
