"""Every labelled theorem, proposition, lemma, corollary and numerical observation of the book has a test named after it."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULT = re.compile(r"^(`{3,}|:{3,})\{prf:(theorem|proposition|lemma|corollary|observation)\}[^\n]*\n((?::[^\n]*\n)*)", re.M)


def _norm(s: str) -> str:
    return re.sub(r"[^a-z0-9]", "_", s.lower())


def book_result_labels() -> dict[str, str]:
    """Label -> chapter file, for every labelled result in ``book/``."""
    labels = {}
    for path in sorted((ROOT / "book").rglob("*.md")):
        for match in RESULT.finditer(path.read_text()):
            label = re.search(r":label:\s*(\S+)", match.group(3))
            if label:
                labels[label.group(1)] = path.name
    return labels


def collected_test_names() -> list[str]:
    names = []
    for path in (ROOT / "tests").rglob("test_*.py"):
        names += re.findall(r"^\s*def (test_\w+)", path.read_text(), flags=re.M)
    return names



def test_every_labelled_result_has_a_test_named_after_it():
    labels = book_result_labels()
    assert labels, "the book has no labelled results: the scan is broken"
    names = " ".join(_norm(n) for n in collected_test_names())
    missing = sorted(f"{label} ({chapter})" for label, chapter in labels.items() if _norm(label) not in names)
    assert not missing, f"labelled results without a test named after them: {missing}"


def test_every_labelled_result_has_a_label():
    unlabeled = []
    for path in sorted((ROOT / "book").rglob("*.md")):
        for match in RESULT.finditer(path.read_text()):
            if ":label:" not in match.group(3):
                unlabeled.append(f"{path.name}: {match.group(0).splitlines()[0]}")
    assert not unlabeled, f"results without a :label: cannot be traced to tests: {unlabeled}"


def test_scan_finds_the_primer_propositions():
    labels = book_result_labels()
    assert {"prop-topk-invariance", "prop-top1-no-gate-gradient"} <= set(labels)
