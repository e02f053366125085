"""The bibliography: every work in book/references.bib is cited in the book, every citation resolves,
and every entry has the fields a reader needs to find it."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIB = ROOT / "book" / "references.bib"


def bib_entries(text: str) -> dict[str, str]:
    """Key -> body of every entry of a .bib text."""
    out = {}
    for m in re.finditer(r"^@(\w+)\{([^,\s]+),(.*?)^\}", text, flags=re.M | re.S):
        out[m.group(2)] = m.group(1).lower() + "\n" + m.group(3)
    return out


def cited_keys(text: str) -> set[str]:
    keys = set()
    for m in re.finditer(r"\{cite(?::\w+)?\}`([^`]+)`", text):
        keys |= {k.strip() for k in m.group(1).split(",")}
    return keys


def _book_text() -> str:
    return "".join(p.read_text() for p in sorted((ROOT / "book").glob("*.md")))


def test_every_bibliography_entry_is_cited_and_every_citation_resolves():
    entries, cited = bib_entries(BIB.read_text()), cited_keys(_book_text())
    assert len(entries) >= 50, "the .bib scan found too few entries: it is broken"
    assert not set(entries) - cited, f"entries no chapter cites: {sorted(set(entries) - cited)}"
    assert not cited - set(entries), f"citations without an entry: {sorted(cited - set(entries))}"


def test_every_entry_names_its_authors_title_and_year():
    for key, body in bib_entries(BIB.read_text()).items():
        for field in ("author", "title", "year"):
            assert re.search(rf"^\s*{field}\s*=", body, flags=re.M | re.I), f"{key} has no {field}"


def test_the_scans_catch_an_uncited_entry_and_a_dangling_citation():
    bib = "@article{a2020,\n  author = {A},\n  title = {T},\n  year = {2020},\n}\n@book{b2021,\n  author = {B},\n}\n"
    entries = bib_entries(bib)
    assert set(entries) == {"a2020", "b2021"}
    assert cited_keys("see {cite}`a2020, c2022` and {cite:p}`a2020`") == {"a2020", "c2022"}


def test_bibliography_labels_are_the_author_year_citations_and_unique():
    """The list's labels read as the text cites ("Fedus et al., 2022"), one per entry (two papers of one
    author and year are told apart by 2019a/2019b in the year field)."""
    import importlib.util

    from pybtex.database import parse_file

    spec = importlib.util.spec_from_file_location("bib_labels", ROOT / "_ext" / "bib_labels.py")
    ext = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ext)
    entries = parse_file(str(BIB)).entries
    labels = {key: ext.author_year_label(e) for key, e in entries.items()}
    assert labels["hanin2019complexity"] == "Hanin and Rolnick, 2019a"
    assert labels["fedus2022switch"] == "Fedus et al., 2022"
    dup = sorted(k for k in labels if list(labels.values()).count(labels[k]) > 1)
    assert not dup, f"entries with the same label: {dup}"
