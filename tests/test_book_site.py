"""The site around the chapters: notebook downloads, the launch button, scripts, the notation page."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import SimpleNamespace

import yaml

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("notebooks_ext", ROOT / "_ext" / "notebooks.py")
notebooks = importlib.util.module_from_spec(spec)
spec.loader.exec_module(notebooks)


def test_config_names_the_repository_once_and_loads_the_notebooks_extension():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["repository"]["url"].startswith("https://github.com/")
    assert config["sphinx"]["local_extensions"]["notebooks"] == "_ext"
    # No other setting may name a repository: the launch button and Thebe are made from this one.
    text = (ROOT / "_config.yml").read_text()
    assert len(re.findall(r"https://github\.com/", text)) == 1


def test_binder_url_opens_the_page_source_in_jupyterlab():
    url = notebooks.binder_url("https://github.com/org/book", "main", "book/primer.md")
    assert url == "https://mybinder.org/v2/gh/org/book/main?urlpath=lab/tree/book/primer.md"
    other = notebooks.binder_url("https://gitlab.example.org/g/book", "dev", "book/tropical.md")
    assert other.startswith("https://mybinder.org/v2/git/https%3A%2F%2Fgitlab.example.org%2Fg%2Fbook/dev?")


def test_repository_reads_the_theme_options_and_strips_dot_git():
    app = SimpleNamespace(config=SimpleNamespace(html_theme_options={
        "repository_url": "https://github.com/org/book.git/", "repository_branch": "dev", "path_to_docs": "/"}))
    assert notebooks.repository(app) == ("https://github.com/org/book", "dev", "")
    empty = SimpleNamespace(config=SimpleNamespace(html_theme_options={}))
    assert notebooks.repository(empty) == (notebooks.PLACEHOLDER, "main", "")


def test_duplicated_inline_scripts_are_emitted_once():
    from sphinx.builders.html._assets import _JavaScript

    thebe = 'const THEBE_JS_URL = "x.js"'
    context = {"script_files": [_JavaScript("a.js"), _JavaScript(None, body=thebe, priority=500),
                                _JavaScript("a.js"), _JavaScript("", body=thebe, priority=200),
                                _JavaScript(None, body="let other = 1")]}
    notebooks._dedupe_scripts(None, "p", None, context, None)
    bodies = [js.attributes.get("body") for js in context["script_files"]]
    assert bodies.count(thebe) == 1 and "let other = 1" in bodies and len(context["script_files"]) == 3


def test_notation_page_lists_the_primer_and_tropical_symbols_once():
    page = (ROOT / "book" / "notation.md").read_text()
    for symbol in (r"$n_k(W, b)$", r"$n^{\rm tie}_k(W, b)$", r"$\mathrm{mask}_k(g) = \mathbf 1_{S_k(g)}$",
                   r"$\Delta(N, k)$", r"$\Gamma(\alpha)$, $q$", r"$\bar g$", r"$\varsigma$, $\xi$",
                   r"$F_i$, $\bar p_i$", r"$\lambda$", r"$\sigma$", r"$\tau$", r"$\rho_i$", r"$Q \in \mathbb{R}^{D\times d}$"):
        assert symbol in page, symbol
    rows = [line.split("|")[1].strip() for line in page.splitlines() if line.startswith("| $")]
    assert len(rows) == len(set(rows)), "a symbol is listed twice"


def test_primer_and_tropical_chapters_keep_the_book_notation():
    """The collisions readers found: rho for the region count, Q for the curve degree, tau as an
    LP threshold, sigma as a permutation or a noise scale, f_i for load fractions."""
    tropical = (ROOT / "book" / "tropical.md").read_text()
    primer = (ROOT / "book" / "primer.md").read_text()
    assert r"\rho" not in tropical and "rho_k" not in tropical
    assert not re.search(r"degree \$Q\$|2Q\\binom|\$2Qm\$", tropical)
    assert r"\tau + s" not in tropical and r"\sigma(1)" not in tropical and r"\sigma\,\mathrm{std}" not in tropical
    assert "the size named in the issue" not in tropical and "issue" not in primer.lower()
    assert "$f_i$" not in primer and "piece_purity" not in primer


def test_book_meta_lists_every_exercise_with_its_kind(tmp_path):
    from moe_theory.book_meta import CHAPTERS, exercises

    ex = exercises()
    assert {e["chapter"] for e in ex} == set(CHAPTERS)
    assert all(e["kind"] in ("computational", "proof", "by hand") for e in ex)
    assert len({e["label"] for e in ex}) == len(ex)
    (tmp_path / "x").mkdir()
    for ch in CHAPTERS:
        (tmp_path / "x" / f"{ch}.md").write_text("")
    (tmp_path / "x" / "primer.md").write_text(
        "```{exercise} A sum\n:label: ex-a\n\n**Proof.** Show it.\n```\n\n"
        "```{exercise} Compute\n:label: ex-b\n\nDo it.\n```\n\n"
        "````{solution} ex-b\n:class: dropdown\n\n```python\nprint(1)\n```\n````\n")
    got = {e["label"]: e["kind"] for e in exercises(tmp_path / "x")}
    assert got == {"ex-a": "proof", "ex-b": "computational"}
    import pytest
    with pytest.raises(FileNotFoundError, match="book_dir must be"):
        exercises(tmp_path / "missing")


def test_result_table_html_keeps_numbers_whole_and_aligns_text_left():
    from moe_theory import result_table

    html = result_table(["model", "test MSE [90% CI]", "stalled"],
                        [["dense, equal width", "4.4e-4 [3.9e-4, 4.9e-4]", "33%"]])._repr_html_()
    assert '<span style="white-space:nowrap">4.4e-4</span>' in html  # never broken at its minus sign
    assert '<span style="white-space:nowrap">33%</span>' in html
    assert 'text-align:left">dense, equal width</td>' in html  # text wraps freely, left-aligned
    assert html.startswith('<div class="moe-table-scroll">')

