"""Check what `make lab` gives a student: JupyterLab opens every chapter as a notebook.

Starts `jupyter lab` from the book's environment in `book/` (as `make lab` does), then through its
REST API checks that

1. every executable page (`*.md` with a kernelspec) opens as a *notebook* through jupytext's
   contents manager, with the chapter's cells;
2. JupyterLab's default viewer for Markdown is "Jupytext Notebook" (lab/overrides.json), so a double
   click opens a chapter as a notebook, the widget manager extension is installed, and JupyterLab
   neither checks for updates nor fetches its news feed (no network unasked);
3. optionally (``--execute NAME``) the notebook the server returned for one chapter runs top to bottom
   in the book's kernel (nbclient, working directory ``book/``);

and stops the server. Exit status 0 when all hold.

    .venv/bin/python scripts/check_lab.py                    # after `make lab` installed JupyterLab
    .venv/bin/python scripts/check_lab.py --execute primer
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str):
    with urllib.request.urlopen(url, timeout=60) as r:
        return json.loads(r.read())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--execute", nargs="*", default=[], help="chapters to run through nbclient as served")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT / "scripts"))
    import jupytext
    from export_notebooks import executable_pages

    port = _free_port()
    log = open(ROOT / "_build" / "check_lab.log", "w") if (ROOT / "_build").is_dir() else subprocess.DEVNULL
    root = ["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []  # as `make lab` does
    server = subprocess.Popen([str(BIN / "jupyter"), "lab", "--no-browser", f"--port={port}",
                               "--IdentityProvider.token=", "--ServerApp.ip=127.0.0.1", *root],
                              cwd=ROOT / "book", stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    failures = []
    try:
        for _ in range(120):
            try:
                _get(f"{base}/api/status")
                break
            except OSError:
                time.sleep(0.5)
        else:
            print("the server did not start in 60 s")
            return 1
        for page in executable_pages():
            if page.parent != ROOT / "book":
                continue
            model = _get(f"{base}/api/contents/{page.name}?type=notebook&content=1")
            cells = model["content"]["cells"] if model.get("type") == "notebook" else []
            want = len(jupytext.read(page).cells)
            ok = model.get("type") == "notebook" and len(cells) == want
            print(f"{page.name:28s} opens as {model.get('type')}, {len(cells)} cells (chapter: {want}): "
                  f"{'ok' if ok else 'FAILED'}")
            if not ok:
                failures.append(page.name)
        settings = _get(f"{base}/lab/api/settings/@jupyterlab/docmanager-extension:plugin")
        # overrides.json replaces the schema's default (what a user without settings of their own gets)
        viewers = settings["schema"]["properties"]["defaultViewers"].get("default", {})
        ok = viewers.get("markdown") == "Jupytext Notebook"
        print(f"default viewer for Markdown: {viewers.get('markdown')!r}: {'ok' if ok else 'FAILED'}")
        failures += [] if ok else ["defaultViewers"]
        # nothing reaches outside the machine unasked: no update check, no news feed (lab/overrides.json)
        note = _get(f"{base}/lab/api/settings/@jupyterlab/apputils-extension:notification")["schema"]["properties"]
        ok = note["checkForUpdates"].get("default") is False and note["fetchNews"].get("default") == "false"
        print(f"no update check, no news feed: {'ok' if ok else 'FAILED'}")
        failures += [] if ok else ["notification"]
        exts = subprocess.run([str(BIN / "jupyter"), "labextension", "list"], capture_output=True, text=True)
        ok = "@jupyter-widgets/jupyterlab-manager" in exts.stdout + exts.stderr
        print(f"widget manager (ipywidgets live): {'ok' if ok else 'FAILED'}")
        failures += [] if ok else ["widgets"]
        for name in args.execute:
            import nbclient
            import nbformat

            model = _get(f"{base}/api/contents/{name}.md?type=notebook&content=1")
            nb = nbformat.from_dict(model["content"])
            start = time.perf_counter()
            nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                    resources={"metadata": {"path": str(ROOT / "book")}}).execute()
            print(f"{name}.md as served: ran top to bottom in {time.perf_counter() - start:.0f} s: ok")
    except Exception as exc:  # report, stop the server, fail
        print(f"FAILED: {type(exc).__name__}: {exc}")
        failures.append(repr(exc))
    finally:
        server.terminate()
        server.wait(timeout=30)
    print("make lab: all checks passed" if not failures else f"make lab: {len(failures)} check(s) failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
