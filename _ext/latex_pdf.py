"""`make pdf` only (the LaTeX builder): what the HTML book does not need changed.

sphinx-proof gives a proof's box no title and starts its text with "Proof. "; in LaTeX that box gets an
empty title bar. Here the box is titled "Proof" and the prefix dropped from its first paragraph.
"""

from __future__ import annotations

from docutils import nodes

PREFIX = "Proof. "


def _title_proofs(app, doctree, docname: str) -> None:
    if app.builder.format != "latex":
        return
    for box in list(doctree.findall(nodes.admonition)):
        if "proof" not in box.get("classes", []) or (box.children and isinstance(box[0], nodes.title)):
            continue
        first = next(iter(box.findall(nodes.Text)), None)
        if first is not None and first.astext().startswith(PREFIX):
            first.parent.replace(first, nodes.Text(first.astext()[len(PREFIX):]))
        box.insert(0, nodes.title("", "Proof"))


def setup(app):
    app.connect("doctree-resolved", _title_proofs)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
