"""Build the book executing only the chosen chapter(s), into a folder of its own.

For writing a chapter: it executes only that page (the others are built from their source,
without outputs, so every cross-reference resolves), strictly (warnings and cell errors fatal, as
the full build), with its own execution cache, so several chapters can be
built at once without touching ``_build/``. Then, optionally, it runs the browser check on
the result::

    .venv/bin/python scripts/build_chapter.py tropical            # -> _build_chapters/tropical/_build/html
    .venv/bin/python scripts/build_chapter.py tropical --browser  # ... and the headless-Chromium test

Screenshots land in ``_build_chapters/<name>/_build/shots/``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("chapters", nargs="+", help="chapter file names under book/, without .md")
    parser.add_argument("--out", default=None, help="output folder (default _build_chapters/<first chapter>)")
    parser.add_argument("--browser", action="store_true", help="run tests/test_book_browser.py on the result")
    args = parser.parse_args(argv)
    for name in args.chapters:
        if not (ROOT / "book" / f"{name}.md").exists():
            parser.error(f"chapters must name files under book/, got {name!r} (no book/{name}.md)")
    out = Path(args.out or ROOT / "_build_chapters" / args.chapters[0]).resolve()
    out.mkdir(parents=True, exist_ok=True)

    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    config["execute"]["cache"] = str(out / ".jupyter_cache")
    # Paths in the configuration are relative to the folder of the config file: make them absolute.
    config["bibtex_bibfiles"] = [str(ROOT / p) for p in config["bibtex_bibfiles"]]
    sphinx = config["sphinx"]
    sphinx["local_extensions"] = {k: str(ROOT / v) for k, v in sphinx["local_extensions"].items()}
    sphinx["config"]["html_extra_path"] = [str(ROOT / p) for p in sphinx["config"]["html_extra_path"]]
    # The whole table of contents (so every cross-reference resolves), but only the chosen chapters
    # are executed; the other pages are built from their source without outputs.
    others = sorted("*/" + p.relative_to(ROOT).as_posix() for p in (ROOT / "book").glob("*.md")
                    if p.stem not in args.chapters)
    config["execute"]["exclude_patterns"] = others
    # Unexecuted pages have no glued values: only that warning is silenced here (never in the full build).
    sphinx["config"]["suppress_warnings"] = sphinx["config"].get("suppress_warnings", []) + ["mystnb.glue"]
    (out / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    (out / "_toc.yml").write_text((ROOT / "_toc.yml").read_text())

    jb = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(jb), "build", "-W", "-n", "--keep-going", "--config", str(out / "_config.yml"),
           "--toc", str(out / "_toc.yml"), "--path-output", str(out), str(ROOT)]
    start = time.perf_counter()
    # MPLBACKEND=Agg would reach the kernels, which then draw no figure at plt.show().
    build_env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    rc = subprocess.call(cmd, cwd=ROOT, env=build_env)
    print(f"build of {args.chapters} finished with rc={rc} in {time.perf_counter() - start:.1f} s; "
          f"pages in {out / '_build' / 'html'}")
    if rc or not args.browser:
        return rc
    env = {**os.environ, "MOE_BOOK_HTML": str(out / "_build" / "html")}
    return subprocess.call([sys.executable, "-m", "pytest", "-q", "tests/test_book_browser.py"], cwd=ROOT, env=env)


if __name__ == "__main__":
    sys.exit(main())
