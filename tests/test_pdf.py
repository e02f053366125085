"""What `make pdf` relies on: the LaTeX settings, tables through GFM Markdown, widgets' printable frame,
and the claims ledger's long test names. (The PDF itself is built by `make pdf`, not by the tests.)"""

from __future__ import annotations

import base64
import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import yaml  # noqa: E402
from docutils import nodes  # noqa: E402
from markdown_it import MarkdownIt  # noqa: E402

from moe_theory import explore, result_table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _ledger_ext():
    sys.path.insert(0, str(ROOT / "_ext"))
    spec = importlib.util.spec_from_file_location("claims_ledger_ext", ROOT / "_ext" / "claims_ledger.py")
    ext = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ext)
    return ext


def test_result_table_markdown_is_a_gfm_table_that_survives_pipes_in_cells():
    """The PDF shows a result table through its Markdown, parsed as GFM (_config.yml): a '|' inside a
    header such as 'max |l_i - 1/N|' must not split the column."""
    md = result_table(["rule", "max |l_i - 1/N|"], [["switch", 0.0254]]).markdown
    html = MarkdownIt("gfm-like").render(md)
    assert html.count("<th>") == 2 and html.count("<td>") == 2
    assert "max |l_i - 1/N|" in html
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["sphinx"]["config"]["nb_render_markdown_format"] == "gfm"


def test_result_table_markdown_has_one_column_per_header_in_every_row():
    md = result_table(["a", "b", "c"], [[1, "x|y", 3.5], [2, "z", 4.5]]).markdown
    html = MarkdownIt("gfm-like").render(md)
    assert html.count("<th>") == 3 and html.count("<td>") == 6
    assert "x|y" in html


def test_pdf_settings_use_xelatex_name_files_that_exist_and_define_the_html_macros():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    sc = config["sphinx"]["config"]
    assert sc["latex_engine"] == "xelatex"
    assert config["latex"]["latex_documents"]["targetname"] == "moe-theory.tex"
    for f in sc["latex_additional_files"]:
        assert (ROOT / f).exists(), f
    preamble = sc["latex_elements"]["preamble"]
    for macro in sc["mathjax3_config"]["tex"]["macros"]:
        assert f"\\{macro}" in preamble, f"\\{macro} is a MathJax macro without a LaTeX definition"


def test_make_pdf_is_documented_and_kept_out_of_ci():
    makefile = (ROOT / "Makefile").read_text()
    assert "\npdf: pdf-deps" in makefile and "\npdf-deps:" in makefile
    assert "--builder pdflatex" in makefile
    assert "make pdf" in (ROOT / "README.md").read_text()
    assert "pdf" not in (ROOT / ".ci" / "run").read_text()


def _wave(freq):
    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.plot([0, 1, 2], [0, freq, 0])
    return fig


def test_explore_bundle_carries_the_default_frame_as_png_for_print():
    ex = explore(_wave, freq=[1, 2], defaults={"freq": 2})
    bundle = ex._repr_mimebundle_()
    assert base64.b64decode(bundle["image/png"]) == ex.png(freq=2)  # the PDF shows the default frame
    assert bundle["text/html"].startswith('<div class="moe-explore"')  # the HTML book is unchanged


def _ledger_tree():
    box = nodes.container(classes=["claims-ledger"])
    box += nodes.paragraph("", "", nodes.literal("", "test_prop_a_b"))
    doc = nodes.section()
    doc += box
    return doc


def test_ledger_test_names_break_after_underscores_in_latex_only():
    ext = _ledger_ext()
    latex = _ledger_tree()
    ext._breakable_test_names(SimpleNamespace(builder=SimpleNamespace(format="latex")), latex, "book/claims")
    raw = [r.astext() for r in latex.findall(nodes.raw)]
    assert raw == ["\\texttt{\\small test\\_\\allowbreak{}prop\\_\\allowbreak{}a\\_\\allowbreak{}b}"]
    table = nodes.table()
    box = next(latex.findall(nodes.container))
    box += table
    ext._breakable_test_names(SimpleNamespace(builder=SimpleNamespace(format="latex")), latex, "book/claims")
    assert "longtable" in table["classes"]  # the ledger's tables may break across pages
    html = _ledger_tree()
    ext._breakable_test_names(SimpleNamespace(builder=SimpleNamespace(format="html")), html, "book/claims")
    assert not list(html.findall(nodes.raw)) and list(html.findall(nodes.literal))


def _latex_pdf_ext():
    spec = importlib.util.spec_from_file_location("latex_pdf_ext", ROOT / "_ext" / "latex_pdf.py")
    ext = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ext)
    return ext


def _proof_tree():
    box = nodes.admonition(classes=["proof", "proof"])
    box += nodes.paragraph("", "", nodes.Text("Proof. A sort is "), nodes.emphasis("", "stable"))
    doc = nodes.section()
    doc += box
    return doc, box


def test_latex_proof_boxes_get_the_title_proof_and_lose_the_prefix_html_unchanged():
    ext = _latex_pdf_ext()
    doc, box = _proof_tree()
    ext._title_proofs(SimpleNamespace(builder=SimpleNamespace(format="latex")), doc, "book/primer")
    assert isinstance(box[0], nodes.title) and box[0].astext() == "Proof"
    assert box[1].astext() == "A sort is stable"
    doc, box = _proof_tree()
    ext._title_proofs(SimpleNamespace(builder=SimpleNamespace(format="html")), doc, "book/primer")
    assert not isinstance(box[0], nodes.title) and box.astext().startswith("Proof. ")


def _table(n_rows, cells=("primer", "Renormalised weights are shift-invariant, Switch weights are not", "proof")):
    table = nodes.table()
    tgroup = nodes.tgroup(cols=len(cells))
    table += tgroup
    for _ in cells:
        tgroup += nodes.colspec(colwidth=1)
    body = nodes.tbody()
    tgroup += body
    for _ in range(n_rows):
        row = nodes.row()
        for c in cells:
            row += nodes.entry("", nodes.paragraph("", c))
        body += row
    doc = nodes.section()
    doc += table
    return doc, table


def test_long_latex_tables_get_column_widths_from_their_cells_short_and_html_ones_do_not():
    ext = _latex_pdf_ext()
    latex = SimpleNamespace(builder=SimpleNamespace(format="latex"))
    doc, table = _table(40)
    ext._widths_for_long_tables(latex, doc, "book/instructors")
    assert "colwidths-given" in table["classes"]
    assert [c["colwidth"] for c in table.findall(nodes.colspec)] == [6, ext.WIDTH_CAP, 5]
    doc, table = _table(10)
    ext._widths_for_long_tables(latex, doc, "book/instructors")
    assert "colwidths-given" not in table["classes"]
    doc, table = _table(40)
    ext._widths_for_long_tables(SimpleNamespace(builder=SimpleNamespace(format="html")), doc, "book/instructors")
    assert "colwidths-given" not in table["classes"]
