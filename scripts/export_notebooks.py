"""Write notebooks/<page>.ipynb for every executable page of the book: what the Colab button opens.

Colab opens notebooks only from a GitHub repository, and the chapters are MyST Markdown, so the
repository carries one generated ``.ipynb`` per executable page (a page whose header names a
kernelspec): a setup cell that, in Colab only, clones the repository and installs the library,
then the page's cells without outputs (jupytext). ``tests/test_notebooks_export.py`` fails when a
committed notebook differs from what this script writes, so a changed chapter needs

    .venv/bin/python scripts/export_notebooks.py          # or: make notebooks
    .venv/bin/python scripts/export_notebooks.py --check  # exit 1 if a notebook is stale or missing
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "notebooks"


def _ext():
    spec = importlib.util.spec_from_file_location("notebooks_ext", ROOT / "_ext" / "notebooks.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def repository() -> tuple[str, str]:
    """``(url, branch)`` from ``_config.yml`` (the one place the repository is named)."""
    repo = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]
    return str(repo["url"]).rstrip("/").removesuffix(".git"), str(repo.get("branch", "main"))


def executable_pages() -> list[Path]:
    """The book's MyST pages (in ``_toc.yml``) whose header names a kernelspec."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]] + [c["file"] for part in toc.get("parts", []) for c in part["chapters"]]
    pages = []
    for f in files:
        path = ROOT / f"{f}.md"
        text = path.read_text()
        head = text.split("---", 2)[1] if text.startswith("---") else ""
        if "kernelspec" in head:
            pages.append(path)
    return pages


def notebook_text(page: Path) -> str:
    url, branch = repository()
    nb = _ext().colab_notebook(page, url, branch)
    return nbformat.writes(nb) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only check; exit 1 on a stale or missing notebook")
    args = parser.parse_args(argv)
    OUT.mkdir(exist_ok=True)
    stale = []
    pages = executable_pages()
    for page in pages:
        target = OUT / f"{page.stem}.ipynb"
        text = notebook_text(page)
        if not target.exists() or target.read_text() != text:
            stale.append(target.name)
            if not args.check:
                target.write_text(text)
    extra = sorted({p.name for p in OUT.glob("*.ipynb")} - {f"{p.stem}.ipynb" for p in pages})
    if args.check:
        for name in stale + extra:
            print(f"notebooks/{name}: {'stale or missing' if name in stale else 'no such page'}")
        return 1 if stale or extra else 0
    for name in extra:
        (OUT / name).unlink()
    print(f"{len(pages)} notebooks in notebooks/ ({len(stale)} rewritten, {len(extra)} removed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
