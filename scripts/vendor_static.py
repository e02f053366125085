"""Vendor the book's third-party browser assets into ``_vendor`` (copied to the site root), never a CDN.

MathJax 3 comes from the npm registry (``npm pack mathjax@3``) at build time; only the
files the pages load are copied: ``es5/tex-chtml-full.js`` and the CHTML fonts under
``es5/output``. Run by ``make book``/``make test``; does nothing when already vendored.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEST = ROOT / "_vendor"
MATHJAX_VERSION = "3.2.2"


def vendor_mathjax() -> Path:
    target = DEST / "mathjax"
    if (target / "tex-chtml-full.js").exists() and (target / "output").is_dir():
        return target
    npm = shutil.which("npm")
    if npm is None:
        sys.exit("npm is needed once to vendor MathJax (apt-get install npm, or install Node.js)")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([npm, "pack", f"mathjax@{MATHJAX_VERSION}", "--silent"], cwd=tmp, check=True,
                       stdout=subprocess.DEVNULL)
        tarball = next(Path(tmp).glob("mathjax-*.tgz"))
        with tarfile.open(tarball) as tar:
            members = [m for m in tar.getmembers()
                       if m.name == "package/es5/tex-chtml-full.js" or m.name.startswith("package/es5/output/")]
            tar.extractall(tmp, members=members, filter="data")
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        shutil.copy(Path(tmp) / "package/es5/tex-chtml-full.js", target)
        shutil.copytree(Path(tmp) / "package/es5/output", target / "output")
    return target


if __name__ == "__main__":
    print(f"MathJax vendored in {vendor_mathjax().relative_to(ROOT)}")
