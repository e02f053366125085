"""The glossary links every definition of the book, and its terms are in alphabetical order."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GLOSSARY = ROOT / "book" / "glossary.md"


def glossary_terms(text: str) -> list[str]:
    body = re.search(r"```\{glossary\}\n(.*?)\n```", text, flags=re.S).group(1)
    return [line for line in body.splitlines() if line and not line.startswith(" ")]


def definition_labels() -> set[str]:
    labels = set()
    for path in (ROOT / "book").glob("*.md"):
        labels |= set(re.findall(r"\{prf:definition\}[^\n]*\n(?::[^\n]*\n)*?:label:\s*(\S+)", path.read_text()))
    return labels


def unlinked(labels, text: str) -> list[str]:
    """The definition labels that ``text`` does not link with ``{prf:ref}``."""
    return sorted(label for label in labels if f"{{prf:ref}}`{label}`" not in text)


def test_every_definition_of_the_book_is_linked_from_the_glossary():
    labels = definition_labels()
    assert len(labels) >= 10, "the definition scan found too few: it is broken"
    missing = unlinked(labels, GLOSSARY.read_text())
    assert not missing, f"definitions the glossary does not link: {missing}"


def test_glossary_terms_are_alphabetical_and_defined():
    terms = glossary_terms(GLOSSARY.read_text())
    assert len(terms) >= 20
    assert terms == sorted(terms, key=str.lower), terms


def test_the_scan_catches_a_missing_definition(tmp_path):
    text = "```{glossary}\nAlpha\n  See {prf:ref}`def-a`.\n\nBeta\n  Text.\n```\n"
    assert glossary_terms(text) == ["Alpha", "Beta"]
    assert unlinked({"def-a", "def-b"}, text) == ["def-b"]
