"""Sphinx extension: the ``{claims-ledger}`` directive, the book's claims ledger built at build time.

It scans ``book/*.md`` for labelled ``prf:`` results and ``tests/`` for the tests named after them
(:mod:`ledger_scan`, the traceability test's scan) and writes, as MyST parsed in place, a summary
per chapter and one table per chapter: each result linked to its box, its kind, its status (proved
here, proved in a cited source, the paper's claim, observed numerically, definition) and its tests.

Linked both ways: each row carries an anchor ``ledger-<label>``, and in the HTML build every labelled
result box of a chapter gets a small "ledger" link in its title to that row (``doctree-resolved``).
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ledger_scan  # noqa: E402

CHAPTER_TITLES = {"primer": "A mixture of experts in one page", "tropical": "Top-k routing as tropical geometry",
                  "manifold": "Shallow MoE on low-dimensional manifolds",
                  "compositional": "Deep MoE and compositional sparsity",
                  "bayes": "Bayesian and information-theoretic routing", "coherence": "The coherence barrier",
                  "discontinuity": "Discontinuities of sparse MoE"}
STATUSES = ("proved here", "proved in a cited source", "stated without proof", "the paper's claim, unverified",
            "observed numerically", "definition", "remark")
#: Short column names of the summary table (the statuses in full are in the chapter tables).
SHORT = {"proved here": "proved", "proved in a cited source": "cited", "stated without proof": "unproved",
         "the paper's claim, unverified": "paper's claim", "observed numerically": "observed",
         "definition": "definitions", "remark": "remarks"}


def _tests_cell(tests: list[str], limit: int = 3) -> str:
    if not tests:
        return "none"
    shown = ", ".join(f"`{t.split('::')[1]}` ({t.split('::')[0]})" for t in tests[:limit])
    return shown + (f" and {len(tests) - limit} more" if len(tests) > limit else "")


def ledger_markdown(results) -> list[str]:
    """The ledger as MyST lines: the summary table (statuses that occur), then a table per chapter."""
    order = list(CHAPTER_TITLES)
    chapters = sorted(dict.fromkeys(r.chapter for r in results), key=lambda c: order.index(c) if c in order else 99)
    present = [s for s in STATUSES if any(r.status == s for r in results)]
    lines = ["| chapter | " + " | ".join(SHORT[s] for s in present) + " | with a test |",
             "|---" * (len(present) + 2) + "|"]
    for ch in chapters:
        rs = [r for r in results if r.chapter == ch]
        c = Counter(r.status for r in rs)
        tested = [r for r in rs if r.kind in ledger_scan.TESTED_KINDS]
        lines.append(f"| [{CHAPTER_TITLES.get(ch, ch)}]({ch}.md) | " + " | ".join(str(c.get(s, 0)) for s in present)
                     + f" | {sum(bool(r.tests) for r in tested)} of {len(tested)} |")
    for ch in chapters:
        lines += ["", f"**[{CHAPTER_TITLES.get(ch, ch)}]({ch}.md)**", "", "| result | status | checked by |",
                  "|---|---|---|"]
        for r in (r for r in results if r.chapter == ch):
            title = r.title.replace("|", "\\|")
            anchor = f'<span id="{anchor_id(r.label)}"></span>'  # the box's back-link lands here
            lines.append(f"| {anchor}{{prf:ref}}`{r.label}`: {title} | {r.status} | {_tests_cell(r.tests)} |")
    return lines


LEDGER_DOC = "book/claims"


def anchor_id(label: str) -> str:
    """The id of a result's row in the ledger."""
    return "ledger-" + nodes.make_id(label)


class ClaimsLedger(SphinxDirective):
    has_content = False

    def run(self):
        root = Path(self.env.srcdir)
        results = [r for r in ledger_scan.scan_book(root) if r.chapter in CHAPTER_TITLES]
        for path in sorted((root / "book").glob("*.md")) + sorted((root / "tests").glob("test_*.py")):
            self.env.note_dependency(str(path))  # the page is rebuilt when a chapter or a test changes
        container = nodes.container(classes=["claims-ledger", "moe-table-scroll"])
        self.state.nested_parse(StringList(ledger_markdown(results), source="claims-ledger"), self.content_offset,
                                container)
        return [container]


def _add_backlinks(app, doctree, docname: str) -> None:
    """Append a "ledger" link to the title of every labelled result box that the ledger lists."""
    if app.builder.format != "html" or docname == LEDGER_DOC or LEDGER_DOC not in app.env.found_docs:
        return
    chapter = Path(docname).name
    if chapter not in CHAPTER_TITLES:
        return
    if not hasattr(app, "_ledger_labels"):
        app._ledger_labels = {r.label for r in ledger_scan.scan_book(Path(app.srcdir))}
    target = app.builder.get_relative_uri(docname, LEDGER_DOC)
    for node in doctree.findall(nodes.Admonition):
        label = node.get("label")
        if not label or label not in app._ledger_labels or not node.children:
            continue
        title = node.children[0]
        if not isinstance(title, nodes.title):
            continue
        ref = nodes.reference("", "ledger", internal=True, refuri=f"{target}#{anchor_id(label)}",
                              classes=["ledger-backlink"])
        ref["reftitle"] = "This result's row in the claims ledger: its status and the tests that check it"
        title += ref


def _breakable_test_names(app, doctree, docname: str) -> None:
    """LaTeX only: let the ledger's long test names break after their underscores (in the PDF a name
    such as ``test_prop_topk_invariance_shift_and_increasing_maps`` would run past the margin), and
    let its tables break across pages (a tall unbreakable table left a near-empty page before it)."""
    if app.builder.format != "latex":
        return
    for box in doctree.findall(nodes.container):
        if "claims-ledger" not in box.get("classes", []):
            continue
        for table in box.findall(nodes.table):  # may break across pages: no near-empty page before a tall one
            if "longtable" not in table["classes"]:
                table["classes"].append("longtable")
        for lit in list(box.findall(nodes.literal)):
            text = "".join(c if c.isalnum() else "\\" + c if c in "_#%&$" else c for c in lit.astext())
            text = text.replace("\\_", "\\_\\allowbreak{}")
            lit.replace_self(nodes.raw("", f"\\texttt{{\\small {text}}}", format="latex"))


def setup(app):
    app.add_directive("claims-ledger", ClaimsLedger)
    app.connect("doctree-resolved", _add_backlinks)
    app.connect("doctree-resolved", _breakable_test_names)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
