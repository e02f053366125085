"""The book's code fits its text column: no line of a chapter's code cells is over 88 characters.

A wider line is cut on the right of the ~650-px column (or scrolls sideways), so a reader does not
see the end of it; ``black --line-length 88`` or splitting a string by hand fixes it.
"""

import re
from pathlib import Path

import pytest

BOOK = Path(__file__).resolve().parent.parent / "book"
MAX_WIDTH = 88
_CELL = re.compile(r"```\{code-cell\}[^\n]*\n(.*?)```", re.S)


def long_code_lines(text: str, width: int = MAX_WIDTH) -> list[tuple[int, int]]:
    """``(line number, length)`` of every code-cell line of a MyST notebook longer than ``width``."""
    found = []
    for match in _CELL.finditer(text):
        first = text.count("\n", 0, match.start(1)) + 1
        for offset, line in enumerate(match.group(1).splitlines()):
            if len(line) > width:
                found.append((first + offset, len(line)))
    return found


def test_long_code_lines_finds_a_wide_line_and_only_it():
    page = "text\n```{code-cell} ipython3\nx = 1\n" + "y = " + "1 + " * 30 + "1\n```\nmore text " * 1
    assert long_code_lines(page) == [(4, len("y = " + "1 + " * 30 + "1"))]
    assert long_code_lines("```{code-cell} ipython3\nx = 1\n```\n" + "prose " * 40) == []


@pytest.mark.parametrize("page", sorted(BOOK.glob("*.md")), ids=lambda p: p.name)
def test_chapter_code_lines_fit_the_column(page):
    wide = long_code_lines(page.read_text())
    assert not wide, f"{page.name}: code lines over {MAX_WIDTH} characters at (line, length) {wide}"
