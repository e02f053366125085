"""Every figure a chapter draws is on its built page.

A code cell that ends a figure with ``plt.show()`` must leave an image in the page: with
``MPLBACKEND=Agg`` in the environment of the build, the notebook kernels drew nothing at
``plt.show()`` and the pages lost their figures while the build stayed green. The check counts,
per chapter, the cells that call ``plt.show()`` (and are not removed from the page) against the
``<img>`` elements of the built page.
"""

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HTML = Path(os.environ.get("MOE_BOOK_HTML", ROOT / "_build" / "html")).resolve()
_CELL = re.compile(r"```\{code-cell\}[^\n]*\n(.*?)```", re.S)


def shown_figure_cells(text: str) -> int:
    """Code cells of a MyST notebook that call ``plt.show()`` and keep their output on the page."""
    count = 0
    for match in _CELL.finditer(text):
        body = match.group(1)
        tags = re.search(r"^:tags:\s*\[(.*?)\]", body, re.M)
        removed = tags and re.search(r"remove-(output|cell)", tags.group(1))
        if "plt.show()" in body and not removed:
            count += 1
    return count


def test_shown_figure_cells_counts_kept_cells_only():
    page = ("```{code-cell} ipython3\nplt.show()\n```\n"
            "```{code-cell} ipython3\n:tags: [remove-output]\nplt.show()\n```\n"
            "```{code-cell} ipython3\n:tags: [hide-input]\nx = 1\nplt.show()\n```\n")
    assert shown_figure_cells(page) == 2


def _executed_chapters():
    for md in sorted((ROOT / "book").glob("*.md")):
        page = HTML / "book" / f"{md.stem}.html"
        if page.exists() and shown_figure_cells(md.read_text()):
            yield md, page


@pytest.mark.parametrize("md,page", list(_executed_chapters()), ids=lambda p: getattr(p, "name", str(p)))
def test_every_shown_figure_is_on_the_page(md, page):
    html = page.read_text(errors="ignore")
    if 'class="cell_output' not in html:  # a one-chapter build leaves the other pages unexecuted
        pytest.skip(f"{page.name} was not executed in this build")
    images = len(re.findall(r"<img\b", html))
    expected = shown_figure_cells(md.read_text())
    assert images >= expected, (f"{page.name}: {expected} cells call plt.show() but the page has "
                                f"{images} images (was MPLBACKEND=Agg set for the build?)")
