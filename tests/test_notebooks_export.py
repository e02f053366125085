"""The Colab notebooks (notebooks/*.ipynb): one per executable page, equal to its chapter, launchable."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


export = _load("export_notebooks", ROOT / "scripts" / "export_notebooks.py")
HTML = Path(os.environ.get("MOE_BOOK_HTML", str(ROOT / "_build" / "html")))
notebooks = _load("notebooks_ext", ROOT / "_ext" / "notebooks.py")


def test_every_executable_page_has_a_committed_notebook_equal_to_its_chapter():
    pages = export.executable_pages()
    assert {p.stem for p in pages} >= {"primer", "tropical", "manifold", "compositional", "bayes", "coherence",
                                       "discontinuity"}
    for page in pages:
        target = ROOT / "notebooks" / f"{page.stem}.ipynb"
        assert target.exists(), f"{target.name} missing: run make notebooks"
        assert target.read_text() == export.notebook_text(page), f"{target.name} is stale: run make notebooks"
    committed = {p.stem for p in (ROOT / "notebooks").glob("*.ipynb")}
    assert committed == {p.stem for p in pages}, "a notebook without a page: run make notebooks"


def test_export_check_reports_a_stale_notebook(tmp_path, monkeypatch):
    monkeypatch.setattr(export, "OUT", tmp_path)
    for page in export.executable_pages():
        (tmp_path / f"{page.stem}.ipynb").write_text(export.notebook_text(page))
    assert export.main(["--check"]) == 0
    (tmp_path / "primer.ipynb").write_text("{}")
    assert export.main(["--check"]) == 1


def test_notebook_is_the_setup_cell_then_the_chapter_cells():
    import jupytext

    page = ROOT / "book" / "primer.md"
    nb = json.loads(export.notebook_text(page))
    chapter = jupytext.read(page)
    assert nb["cells"][0]["metadata"]["tags"] == ["colab-setup"]
    assert [("".join(c["source"]), c["cell_type"]) for c in nb["cells"][1:]] == [
        (c.source, c.cell_type) for c in chapter.cells]
    assert all(not c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code")
    url, branch = export.repository()
    assert repr(url) in "".join(nb["cells"][0]["source"]) and repr(branch) in "".join(nb["cells"][0]["source"])


def test_setup_cell_does_nothing_outside_colab(tmp_path):
    code = notebooks.colab_setup_source("https://github.com/org/book", "main")
    out = subprocess.run([sys.executable, "-c", code + "\nimport os; print(os.getcwd())"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == str(tmp_path)
    assert not (tmp_path / "content").exists()


def test_colab_url_opens_the_notebook_from_github_only():
    url = notebooks.colab_url("https://github.com/org/book", "main", "notebooks/primer.ipynb")
    assert url == "https://colab.research.google.com/github/org/book/blob/main/notebooks/primer.ipynb"
    assert notebooks.colab_url("https://gitlab.example.org/g/book", "main", "notebooks/primer.ipynb") is None


def test_launch_group_has_binder_and_colab_links_from_the_configured_repository():
    app = SimpleNamespace(
        builder=SimpleNamespace(format="html"),
        config=SimpleNamespace(html_theme_options={"repository_url": "https://github.com/org/book",
                                                   "repository_branch": "dev"}),
        env=SimpleNamespace(metadata={"book/bayes": {"kernelspec": {}}}, doc2path=lambda p: f"/x/{p}.md"))
    context = {"header_buttons": []}
    notebooks._add_launch_button(app, "book/bayes", None, context, None)
    links = {b["text"]: b["url"] for b in context["header_buttons"][0]["buttons"]}
    assert links == {"Binder": "https://mybinder.org/v2/gh/org/book/dev?urlpath=lab/tree/book/bayes.md",
                     "Colab": "https://colab.research.google.com/github/org/book/blob/dev/notebooks/bayes.ipynb"}


@pytest.mark.skipif(not (HTML / "book" / "primer.html").exists(), reason="the book is not built (make book)")
def test_built_chapter_pages_offer_binder_and_colab_links_to_the_configured_repository():
    import re

    url, branch = export.repository()
    for page in export.executable_pages():
        text = (HTML / "book" / f"{page.stem}.html").read_text()
        group = re.search(r'<div class="dropdown dropdown-launch-buttons">.*?</ul>', text, re.S)
        assert group, f"{page.stem}: no launch menu"
        links = re.findall(r'href="([^"]+)"', group.group(0))
        binder = notebooks.binder_url(url, branch, f"{page.relative_to(ROOT).as_posix()}")
        colab = notebooks.colab_url(url, branch, f"notebooks/{page.stem}.ipynb")
        assert binder in links and colab in links, (page.stem, links)
        assert (ROOT / "notebooks" / f"{page.stem}.ipynb").exists()
