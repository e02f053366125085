"""Facts about the book itself, read from its sources: for the instructor's guide.

:func:`exercises` lists every exercise of the chapters with its kind, read from the marker that opens
its text: ``**Computational.**`` (compute with the library), ``**Proof.**`` or ``**By hand.**`` (a
derivation or a small example). Without a marker: computational when the solution holds code.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["BOOK_DIR", "CHAPTERS", "exercises"]

BOOK_DIR = Path(__file__).resolve().parents[1] / "book"
#: The theory chapters in the book's order (the primer first).
CHAPTERS = ("primer", "tropical", "manifold", "compositional", "bayes", "coherence", "discontinuity")

_EXERCISE = re.compile(r"^(`{3,})\{exercise\}\s*([^\n]*)\n(?::[^\n]*\n)*?:label:\s*(\S+)\n(.*?)^\1\s*$", re.M | re.S)


def exercises(book_dir: str | Path | None = None) -> list[dict]:
    """Every exercise of :data:`CHAPTERS`: ``chapter``, ``label``, ``title``, ``kind``."""
    book_dir = Path(book_dir) if book_dir is not None else BOOK_DIR
    if not book_dir.is_dir():
        raise FileNotFoundError(f"book_dir must be the book's source folder, got {book_dir} (not a folder)")
    out = []
    for chapter in CHAPTERS:
        text = (book_dir / f"{chapter}.md").read_text()
        for m in _EXERCISE.finditer(text):
            title, label, body = m.group(2).strip(), m.group(3), m.group(4)
            # the solution: from its directive to the next exercise (or the end of the chapter)
            sol = re.search(r"\{solution(?:-start)?\}\s*" + re.escape(label) + r"\b(.*?)(?=\{exercise\}|\Z)",
                            text[m.end():], flags=re.S)
            marker = re.match(r"\s*\*\*(Computational|Proof|By hand)\.\*\*", body)
            if marker:
                kind = marker.group(1).lower()
            else:
                code = bool(sol) and ("```python" in sol.group(1) or "{code-cell}" in sol.group(1))
                kind = "computational" if code or body.lstrip().lower().startswith("computational") else "by hand"
            out.append({"chapter": chapter, "label": label, "title": title, "kind": kind})
    return out
