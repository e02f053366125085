"""Every chapter runs as a plain Jupyter notebook, outside the book build.

A student opens a chapter in Jupyter (``make lab``: jupytext pairs the MyST ``.md`` with a
notebook) and runs it top to bottom. This test does the same without Sphinx: it converts each chapter
with jupytext to ``.ipynb`` and executes it with nbclient in a fresh kernel, with ``book/`` as the
working directory, and fails on any cell error. Cells that build a widget (``explore(...)``) must
leave an output.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

jupytext = pytest.importorskip("jupytext")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[1]
#: The executable pages: MyST notebooks (a jupytext header with a kernelspec), as the book build sees them.
CHAPTERS = sorted(p.stem for p in (ROOT / "book").glob("*.md") if "kernelspec:" in p.read_text().split("\n---", 1)[0])


def execute_chapter(name: str, timeout: int = 300):
    """The chapter ``book/<name>.md`` as an executed notebook (raises on any cell error)."""
    nb = jupytext.read(ROOT / "book" / f"{name}.md")
    env_backend = os.environ.pop("MPLBACKEND", None)  # let the kernel draw inline, as in Jupyter
    try:
        client = nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                         resources={"metadata": {"path": str(ROOT / "book")}})
        client.execute()
    finally:
        if env_backend is not None:
            os.environ["MPLBACKEND"] = env_backend
    return nb


def test_every_executable_chapter_is_collected():
    assert {"primer", "tropical", "manifold", "compositional", "bayes", "coherence", "discontinuity"} <= set(CHAPTERS)


@pytest.mark.parametrize("name", CHAPTERS)
def test_chapter_executes_as_a_notebook(name):
    nb = execute_chapter(name)
    for cell in nb.cells:
        if cell.cell_type == "code" and "explore(" in cell.source:
            assert cell.outputs, f"{name}: a widget cell produced no output:\n{cell.source[:200]}"


def test_a_failing_cell_fails_the_execution(tmp_path):
    nb = jupytext.reads("```{code-cell} ipython3\nraise ValueError('planted')\n```\n", fmt="md:myst")
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    with pytest.raises(nbclient.exceptions.CellExecutionError, match="planted"):
        nbclient.NotebookClient(nb, timeout=60, kernel_name="python3").execute()
