"""Sphinx extension: every executable page offers its notebook, and the site names ONE repository.

1. **Download.** Each MyST notebook page (a page with a ``kernelspec``, i.e. a jupytext header) is
   converted to ``.ipynb`` with jupytext when the book is built and served from the book itself,
   ``_sources/<page>.ipynb``; the page's download menu then lists ``.ipynb`` next to ``.md``. The
   notebook holds the cells without outputs: the reader runs it (``pip install -e .`` first).
2. **Launch.** A Binder button made from ``repository.url`` and ``repository.branch`` in
   ``_config.yml`` (the one place the repository is named), opening the page's MyST source in
   JupyterLab; ``binder/`` installs the library and jupytext and opens ``.md`` files as notebooks.
   For a GitHub repository also a Colab button: Colab opens only ``.ipynb`` files from GitHub, so
   ``scripts/export_notebooks.py`` (``make notebooks``) commits ``notebooks/<page>.ipynb``, each the
   page's cells after one setup cell that, in Colab only, clones the repository and installs the
   library (:func:`colab_setup_source`); a test keeps them equal to the chapters. Both are plain
   links: nothing is loaded from outside the book until the reader clicks one.
3. **Thebe.** sphinx-thebe (always loaded by Jupyter Book) is pointed at the same repository, and
   its inline script that declares ``const THEBE_JS_URL`` is emitted once per page: it was emitted
   twice, and the second declaration threw a SyntaxError in the console of every page.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from sphinx.util import logging

logger = logging.getLogger(__name__)

#: The value of ``repository.url`` until the maintainer sets the real one (README, "Publishing").
PLACEHOLDER = "https://github.com/OWNER/REPOSITORY"
BINDER = "https://mybinder.org"


def repository(app) -> tuple[str, str, str]:
    """``(url, branch, path_to_book)`` from ``_config.yml``'s ``repository`` section."""
    opts = app.config.html_theme_options or {}
    url = str(opts.get("repository_url") or PLACEHOLDER).rstrip("/")
    if url.endswith(".git"):
        url = url[:-4]
    return url, str(opts.get("repository_branch") or "main"), str(opts.get("path_to_docs") or "").strip("/")


def binder_url(repo_url: str, branch: str, source: str) -> str:
    """The mybinder.org link that opens ``source`` (a path in the repository) in JupyterLab."""
    if repo_url.startswith("https://github.com/"):
        org_repo = repo_url.removeprefix("https://github.com/")
        spec = f"gh/{org_repo}/{quote(branch, safe='')}"
    else:  # any other git host: Binder's generic git provider
        spec = f"git/{quote(repo_url, safe='')}/{quote(branch, safe='')}"
    return f"{BINDER}/v2/{spec}?urlpath={quote('lab/tree/' + source, safe='/')}"


COLAB = "https://colab.research.google.com"
#: Where the Colab notebooks live in the repository (written by scripts/export_notebooks.py).
NOTEBOOK_DIR = "notebooks"


def colab_url(repo_url: str, branch: str, notebook: str) -> str | None:
    """The Colab link that opens ``notebook`` (a path in the repository), or ``None`` off GitHub
    (Colab opens notebooks from GitHub only)."""
    if not repo_url.startswith("https://github.com/"):
        return None
    org_repo = repo_url.removeprefix("https://github.com/")
    return f"{COLAB}/github/{org_repo}/blob/{quote(branch, safe='')}/{quote(notebook, safe='/')}"


def colab_setup_source(repo_url: str, branch: str) -> str:
    """The first cell of a Colab notebook: in Colab only, clone the book's repository (its saved
    results come with it), install the library and the glue helper, and work in ``book/``."""
    return f"""# Colab only: fetch the book's repository and install its library; elsewhere this does nothing
import os, subprocess, sys
if "google.colab" in sys.modules:
    REPO = "/content/moe-theory"
    if not os.path.isdir(REPO):
        subprocess.run(["git", "clone", "--depth", "1", "-b", {branch!r},
                        {repo_url!r}, REPO], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", REPO,
                    "myst-nb"], check=True)
    sys.path.insert(0, REPO)
    os.chdir(os.path.join(REPO, "book"))"""


def colab_notebook(source: Path, repo_url: str, branch: str):
    """The Colab notebook of a MyST page: the setup cell, then the page's cells (no outputs)."""
    import jupytext
    from nbformat.v4 import new_code_cell

    nb = jupytext.read(source)
    cell = new_code_cell(colab_setup_source(repo_url, branch))
    cell.metadata["tags"] = ["colab-setup"]
    nb.cells.insert(0, cell)
    for i, c in enumerate(nb.cells):  # stable ids: the same chapter gives the same file
        c["id"] = f"cell-{i:03d}"
    nb.nbformat, nb.nbformat_minor = 4, 5
    return nb


def _is_notebook(app, pagename: str) -> bool:
    return "kernelspec" in app.env.metadata.get(pagename, {})


def _config_inited(app, config) -> None:
    url, branch, path = repository(app)
    thebe = dict(config.thebe_config) if isinstance(config.thebe_config, dict) else {}
    thebe.update(repository_url=url, repository_branch=branch, path_to_docs=path or ".")
    config.thebe_config = thebe


def _write_notebook(app, pagename: str, templatename, context, doctree) -> None:
    """Before the theme builds its download menu: convert the page's source, name the file."""
    if app.builder.format != "html" or not _is_notebook(app, pagename):
        return
    import jupytext

    source = Path(app.env.doc2path(pagename))
    if source.suffix != ".md":
        return
    nb = jupytext.read(source)
    target = Path(app.outdir) / "_sources" / f"{pagename}.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    jupytext.write(nb, target, fmt="ipynb")
    context["ipynb_source"] = f"{pagename}.ipynb"


def _add_launch_button(app, pagename: str, templatename, context, doctree) -> None:
    """After the theme's own buttons: one launch group with the Binder link."""
    if app.builder.format != "html" or not _is_notebook(app, pagename) or "header_buttons" not in context:
        return
    url, branch, path = repository(app)
    source = f"{path}/{pagename}" if path else pagename
    suffix = Path(app.env.doc2path(pagename)).suffix
    buttons = [{
        "type": "link", "text": "Binder", "tooltip": "Run this page's notebook on Binder",
        "icon": "_static/images/logo_binder.svg", "label": "launch-binder-button",
        "url": binder_url(url, branch, source + suffix),
    }]
    colab = colab_url(url, branch, f"{NOTEBOOK_DIR}/{Path(pagename).name}.ipynb")
    if colab is not None:
        buttons.append({
            "type": "link", "text": "Colab", "tooltip": "Run this page's notebook on Google Colab",
            "icon": "_static/images/logo_colab.png", "label": "launch-colab-button", "url": colab,
        })
    context["header_buttons"].append({
        "type": "group", "tooltip": "Run this page", "icon": "fas fa-rocket", "label": "launch-buttons",
        "buttons": buttons,
    })


def _dedupe_scripts(app, pagename: str, templatename, context, doctree) -> None:
    """Emit each script once: a repeated inline ``const`` declaration is a SyntaxError.

    Two entries are the same script when they have the same file (``None`` and ``""`` both mean
    an inline script) and the same attributes (an inline script's text is its ``body``
    attribute), whatever their load priority.
    """
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for js in scripts:
        attrs = getattr(js, "attributes", {}) or {}
        # An inline script is registered once with filename None and once with "" (sphinx-thebe).
        key = (getattr(js, "filename", None) or "", repr(sorted((k, str(v)) for k, v in attrs.items())))
        if key not in seen:
            seen.add(key)
            unique.append(js)
    context["script_files"] = unique


def setup(app):
    app.connect("config-inited", _config_inited, priority=900)  # after Jupyter Book set the theme options
    app.connect("html-page-context", _write_notebook, priority=500)  # before the theme's buttons (501)
    app.connect("html-page-context", _add_launch_button, priority=502)
    # Last: the duplicate is added by a handler of this same event (after priority 500).
    app.connect("html-page-context", _dedupe_scripts, priority=999)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
