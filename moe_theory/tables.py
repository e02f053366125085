"""Result tables for the book's chapters: HTML in the built page and in Jupyter, Markdown in text.

Every chapter shows computed results with :func:`result_table` rather than a printed dump, so
tables fit the text column (a wide table scrolls inside its own box, see ``_static/moe.css``).
"""

from __future__ import annotations

import html
import re

import numpy as np

__all__ = ["ResultTable", "result_table"]


#: A cell that is a number, a percentage, a ratio or an interval of numbers ("4.4e-4 [3.9e-4, 4.9e-4]").
_NUMERIC = re.compile(r"[-+]?(nan|inf|[0-9.]+(e[-+]?[0-9]+)?)(%|x)?( \[[-+0-9.e, ]+\])?", re.I)


class ResultTable:
    """A small table that shows as HTML in the book and in Jupyter, and as Markdown in text.

    Attributes
    ----------
    header : list of str
    rows : list of list of str
        Cells already formatted.
    """

    def __init__(self, header, rows):
        self.header, self.rows = header, rows

    @property
    def markdown(self) -> str:
        """A GitHub-flavoured Markdown table (what the PDF shows); a ``|`` inside a cell is escaped."""
        def row(cells) -> str:
            return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

        lines = [row(self.header), "|" + "---|" * len(self.header)]
        return "\n".join(lines + [row(r) for r in self.rows])

    def _repr_markdown_(self) -> str:
        return self.markdown

    def _repr_html_(self) -> str:
        # numbers right-aligned and never broken inside (1.2e-3 must not wrap at its minus sign; an
        # interval may wrap between its numbers); text left-aligned and free to wrap; headers wrap
        num = [all(_NUMERIC.fullmatch(r[j].strip()) for r in self.rows) if self.rows else True
               for j in range(len(self.header))]
        pad = "padding:0.15em 0.5em;text-align:"
        head = "".join(f'<th style="{pad}{"right" if num[j] else "left"}">{html.escape(h)}</th>'
                       for j, h in enumerate(self.header))

        def cell(c: str) -> str:
            if _NUMERIC.fullmatch(c.strip()):
                words = " ".join(f'<span style="white-space:nowrap">{html.escape(w)}</span>' for w in c.split())
                return f'<td style="{pad}right">{words}</td>'
            return f'<td style="{pad}left">{html.escape(c)}</td>'

        body = "".join("<tr>" + "".join(cell(c) for c in r) + "</tr>" for r in self.rows)
        table = f'<table class="moe-result-table"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
        return f'<div class="moe-table-scroll">{table}</div>'  # a wide table scrolls in its own box

    def __repr__(self) -> str:
        return self.markdown


def result_table(header, rows, *, digits: int = 3) -> ResultTable:
    """A table of computed results (floats to ``digits`` significant digits) for a chapter cell.

    Shown as an HTML table in the built page, so wide tables wrap instead of scrolling.

    Examples
    --------
    >>> print(result_table(["k", "rho"], [[1, 0.5]]).markdown)
    | k | rho |
    |---|---|
    | 1 | 0.5 |
    """
    def fmt(v):
        if isinstance(v, (float, np.floating)):
            return f"{v:.{digits}g}" if abs(v) < 1e4 else f"{v:.0f}"
        return str(v)

    header = [str(h) for h in header]
    out = []
    for r in rows:
        if len(r) != len(header):
            raise ValueError(f"rows must have {len(header)} entries like header, got a row of {len(r)}")
        out.append([fmt(v) for v in r])
    return ResultTable(header, out)
