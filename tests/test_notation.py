"""One symbol, one meaning: no symbol is defined twice in the tables of book/notation.md.

The check reads every table row of the notation page whose first cell holds math. The first cell
may define several symbols (``$u$, $\\nu$``); each ``$...$`` piece defines one. The *defined
symbol* of a piece is what stands before its first relation (``=``, ``\\in``, ``\\ge``, ``<``,
``:`` ...) with a trailing argument list removed, so ``$g(x) = Wx + b$`` defines ``g``,
``$\\mu(A)$`` defines ``\\mu`` and ``$t \\in \\mathbb{R}^D$`` defines ``t``; subscripts and
decorations are kept, so ``$g_i$``, ``$\\bar p_i$`` and ``$\\eta_{\\rm raw}$`` are symbols of their
own. Spacing commands are ignored and runs of spaces count as one. A symbol defined in two rows (of one table or of two
sections) fails the test, with both rows named.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTATION = ROOT / "book" / "notation.md"

_RELATION = re.compile(r"\s*(=|\\in\b|\\ge\b|\\le\b|\\geq\b|\\leq\b|<|>|:|\\subset\b|\\approx\b)")
_SPACING = re.compile(r"\\[,;:! ]|\\quad|\\qquad")


def _strip_argument(head: str) -> str:
    """Remove one trailing top-level ``(...)`` group: ``\\mu(A)`` -> ``\\mu``, ``g_{(1)}`` stays."""
    if not head.endswith(")"):
        return head
    depth = 0
    for pos in range(len(head) - 1, -1, -1):
        depth += {")": 1, "(": -1}.get(head[pos], 0)
        if depth == 0:
            stripped = head[:pos]
            return stripped if stripped and stripped.count("{") == stripped.count("}") else head
    return head


def defined_symbols(first_cell: str) -> list[str]:
    """The symbols a first cell of a notation table defines, normalised (see the module doc)."""
    symbols = []
    for piece in re.findall(r"\$([^$]+)\$", first_cell):
        head = _RELATION.split(piece, maxsplit=1)[0]
        head = _strip_argument(" ".join(_SPACING.sub(" ", head).split()))
        if head:
            symbols.append(head)
    return symbols


def notation_rows(page: str) -> list[tuple[str, str]]:
    """``(section, first cell)`` of every table row whose first cell holds math."""
    rows, section = [], ""
    for line in page.splitlines():
        if line.startswith("#"):
            section = line.lstrip("#").strip()
        elif line.startswith("| $"):
            rows.append((section, line.split("|")[1].strip()))
    return rows


def duplicated_symbols(page: str) -> dict[str, list[str]]:
    """Each symbol defined in more than one row, with the rows (``section: cell``) defining it."""
    where: dict[str, list[str]] = {}
    for section, cell in notation_rows(page):
        for symbol in set(defined_symbols(cell)):
            where.setdefault(symbol, []).append(f"{section}: {cell}")
    return {s: rows for s, rows in where.items() if len(rows) > 1}


@pytest.mark.parametrize("cell, expected", [
    (r"$g(x) = Wx + b$, $g_i$", ["g", "g_i"]),
    (r"$t \in \mathbb{R}^D$", ["t"]),
    (r"$\mu(A)$", [r"\mu"]),
    (r"$g_{(1)} \ge g_{(2)} \ge \dots \ge g_{(N)}$", ["g_{(1)}"]),
    (r"$H(\cdot)$, $I(\cdot\,;\cdot)$, $\mathrm{KL}(q\,\Vert\,p)$", ["H", "I", r"\mathrm{KL}"]),
    (r"$\eta_{\rm raw}$", [r"\eta_{\rm raw}"]),
    (r"$\mathbf 1_S \in \{0,1\}^N$", [r"\mathbf 1_S"]),
])
def test_defined_symbols_reads_the_symbol_before_the_relation(cell, expected):
    assert defined_symbols(cell) == expected


def test_a_page_with_a_symbol_defined_twice_is_caught():
    page = ("## A\n\n| Symbol | Meaning |\n|---|---|\n| $\\beta$, $\\xi$ | a perturbation |\n"
            "| $r$ | an order |\n\n## B\n\n| Symbol | Meaning |\n|---|---|\n"
            "| $\\beta \\in \\mathbb{R}^N$ | coefficients |\n| $r_i(x, t)$ | a posterior |\n")
    assert duplicated_symbols(page) == {
        r"\beta": [r"A: $\beta$, $\xi$", r"B: $\beta \in \mathbb{R}^N$"]}


def test_notation_page_defines_every_symbol_once():
    page = NOTATION.read_text()
    assert len(notation_rows(page)) > 80  # the page's tables are read at all
    duplicates = duplicated_symbols(page)
    assert not duplicates, "symbols defined twice on the notation page:\n" + "\n".join(
        f"  {symbol}: {rows}" for symbol, rows in duplicates.items())
