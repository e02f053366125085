"""The book's labelled results and the tests named after them: the data of the claims ledger.

Shared by the Sphinx extension that builds the ledger page (``_ext/claims_ledger.py``) and by the
traceability test (``tests/test_traceability.py``), so the page and the test read the same scan.

A *result* is a ``prf:`` box with a ``:label:``. Its status:

* ``proved here``: a theorem, proposition, lemma or corollary followed by a ``prf:proof``;
* ``proved in a cited source``: such a box without a proof here, citing its source;
* ``stated without proof``: such a box with neither (the traceability test still needs a test);
* ``the paper's claim, unverified``: a ``prf:remark`` whose title starts "The paper's claim";
* ``observed numerically``: a ``prf:observation`` (a measured finding of the book);
* ``definition``: a ``prf:definition``; ``remark``: any other ``prf:remark``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
THEOREM_KINDS = ("theorem", "proposition", "lemma", "corollary")
#: Kinds whose every label needs a test named after it.
TESTED_KINDS = THEOREM_KINDS + ("observation",)
_BOX = re.compile(r"^(?P<fence>`{3,}|:{3,})\{prf:(?P<kind>\w+)\}(?P<title>[^\n]*)\n(?P<opts>(?::[^\n]*\n)*)"
                  r"(?P<body>.*?)^(?P=fence)\s*$", re.M | re.S)


@dataclass
class Result:
    label: str
    kind: str
    title: str
    chapter: str          # file stem, e.g. "manifold"
    status: str
    tests: list = field(default_factory=list)   # "file.py::test_name"


def normalise(s: str) -> str:
    """Labels and test names compare with every non-alphanumeric character read as ``_``."""
    return re.sub(r"[^a-z0-9]", "_", s.lower())


def scan_text(text: str, chapter: str) -> list[Result]:
    """The labelled ``prf:`` boxes of one chapter's source, with their status."""
    out = []
    for m in _BOX.finditer(text):
        kind = m.group("kind")
        if kind == "proof":
            continue
        label = re.search(r":label:\s*(\S+)", m.group("opts"))
        if not label:
            continue
        title, body = m.group("title").strip(), m.group("body")
        after = text[m.end():].lstrip()
        if kind in THEOREM_KINDS:
            if re.match(r"(`{3,}|:{3,})\{prf:proof\}", after):
                status = "proved here"
            elif "{cite" in title + body:
                status = "proved in a cited source"
            else:
                status = "stated without proof"
        elif kind == "remark" and title.lower().startswith("the paper's claim"):
            status = "the paper's claim, unverified"
        elif kind == "observation":
            status = "observed numerically"
        elif kind == "definition":
            status = "definition"
        else:
            status = kind
        out.append(Result(label.group(1), kind, title, chapter, status))
    return out


def test_names(root: Path = ROOT) -> list[str]:
    """``file.py::test_name`` of every test function in ``tests/``."""
    names = []
    for path in sorted((root / "tests").glob("test_*.py")):
        names += [f"{path.name}::{n}" for n in re.findall(r"^\s*def (test_\w+)", path.read_text(), flags=re.M)]
    return names


def scan_book(root: Path = ROOT) -> list[Result]:
    """Every labelled result of ``book/*.md``, in chapter order, with the tests named after it."""
    tests = test_names(root)
    normed = [(t, normalise(t.split("::")[1])) for t in tests]
    results = []
    for path in sorted((root / "book").glob("*.md")):
        for r in scan_text(path.read_text(), path.stem):
            key = normalise(r.label)
            r.tests = [t for t, n in normed if key in n]
            results.append(r)
    return results
