"""`make pdf` only (the LaTeX builder): what the HTML book does not need changed.

sphinx-proof gives a proof's box no title and starts its text with "Proof. "; in LaTeX that box gets an
empty title bar. Here the box is titled "Proof" and the prefix dropped from its first paragraph.

A table of more than 30 rows (or with the class ``longtable``, as the claims ledger's) becomes a longtable, whose columns Sphinx sets at their natural width
(``l``), so a long one runs past the margin (the instructors' list of exercises). Such a table without
given widths gets widths in proportion to its columns' longest cells, capped: wrapping columns.
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


LONGTABLE_ROWS = 30   # Sphinx's threshold (sphinx.writers.latex.Table.is_longtable)
WIDTH_CAP = 40        # characters: a column of long text does not take the whole line


def _widths_for_long_tables(app, doctree, docname: str) -> None:
    if app.builder.format != "latex":
        return
    for table in doctree.findall(nodes.table):
        if "colwidths-given" in table["classes"]:
            continue
        tgroup = next(iter(table.findall(nodes.tgroup)), None)
        if tgroup is None:
            continue
        rows = list(tgroup.findall(nodes.row))
        specs = [c for c in tgroup.children if isinstance(c, nodes.colspec)]
        long = len(rows) > LONGTABLE_ROWS or "longtable" in table["classes"]  # the ledger's are made long
        if not long or any(len(r.children) != len(specs) for r in rows):
            continue  # short (tabulary balances it) or with merged cells: left as Sphinx sets it
        for j, spec in enumerate(specs):
            spec["colwidth"] = max(4, min(WIDTH_CAP, max(len(r[j].astext()) for r in rows)))
        table["classes"].append("colwidths-given")


def setup(app):
    app.connect("doctree-resolved", _title_proofs)
    app.connect("doctree-resolved", _widths_for_long_tables)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
