"""Every labelled theorem, proposition, lemma, corollary and numerical observation of the book has a
test named after it; the claims ledger (book/claims.md, built from the same scan) lists them all."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "_ext"))

import claims_ledger  # noqa: E402
import ledger_scan  # noqa: E402


def book_result_labels() -> dict[str, str]:
    """Label -> chapter file, for every labelled result that needs a test."""
    return {r.label: f"{r.chapter}.md" for r in ledger_scan.scan_book() if r.kind in ledger_scan.TESTED_KINDS}


def test_every_labelled_result_has_a_test_named_after_it():
    results = [r for r in ledger_scan.scan_book() if r.kind in ledger_scan.TESTED_KINDS]
    assert len(results) > 40, "the book has too few labelled results: the scan is broken"
    missing = sorted(f"{r.label} ({r.chapter}.md)" for r in results if not r.tests)
    assert not missing, f"labelled results without a test named after them: {missing}"


def test_every_result_box_has_a_label():
    import re
    box = re.compile(r"^(`{3,}|:{3,})\{prf:(theorem|proposition|lemma|corollary|observation)\}[^\n]*\n((?::[^\n]*\n)*)",
                     re.M)
    unlabeled = []
    for path in sorted((ROOT / "book").glob("*.md")):
        for match in box.finditer(path.read_text()):
            if ":label:" not in match.group(3):
                unlabeled.append(f"{path.name}: {match.group(0).splitlines()[0]}")
    assert not unlabeled, f"results without a :label: cannot be traced to tests: {unlabeled}"


def test_scan_finds_the_primer_propositions():
    labels = book_result_labels()
    assert {"prop-topk-invariance", "prop-top1-no-gate-gradient"} <= set(labels)


SYNTHETIC = """# A chapter

```{prf:proposition} Proved
:label: prop-a
Text.
```

```{prf:proof}
Done.
```

```{prf:theorem} Known {cite}`someone`
:label: thm-b
Text.
```

```{prf:remark} The paper's claim: something
:label: rem-c
Text.
```

```{prf:observation} Measured
:label: obs-d
Text.
```

```{prf:lemma} Bare
:label: lem-e
Text.
```

```{prf:definition} A term
:label: def-f
Text.
```
"""


def test_ledger_statuses_are_derived_from_the_boxes():
    status = {r.label: r.status for r in ledger_scan.scan_text(SYNTHETIC, "x")}
    assert status == {"prop-a": "proved here", "thm-b": "proved in a cited source",
                      "rem-c": "the paper's claim, unverified", "obs-d": "observed numerically",
                      "lem-e": "stated without proof", "def-f": "definition"}


def test_ledger_page_lists_every_labelled_result_of_every_chapter():
    results = [r for r in ledger_scan.scan_book() if r.chapter in claims_ledger.CHAPTER_TITLES]
    text = "\n".join(claims_ledger.ledger_markdown(results))
    missing = [r.label for r in results if f"{{prf:ref}}`{r.label}`" not in text]
    assert results and not missing, missing
    assert "observed numerically" in text and "the paper's claim, unverified" in text


def test_tests_are_matched_by_normalised_label():
    assert ledger_scan.normalise("obs-mfd-best-of-5") == "obs_mfd_best_of_5"
    obs = next(r for r in ledger_scan.scan_book() if r.label == "obs-mfd-best-of-5-flat-in-d")
    assert obs.tests == ["test_experiments_manifold.py::test_obs_mfd_best_of_5_flat_in_d"]


HTML = Path(__import__("os").environ.get("MOE_BOOK_HTML", str(ROOT / "_build" / "html")))


def test_ledger_rows_carry_the_anchor_the_boxes_link_to():
    results = [r for r in ledger_scan.scan_book() if r.chapter in claims_ledger.CHAPTER_TITLES]
    lines = claims_ledger.ledger_markdown(results)
    for r in results:
        row = next(line for line in lines if f"{{prf:ref}}`{r.label}`" in line)
        assert f'<span id="{claims_ledger.anchor_id(r.label)}"></span>' in row
    assert claims_ledger.anchor_id("thm-trop-regions") == "ledger-thm-trop-regions"


@__import__("pytest").mark.skipif(not (HTML / "book" / "claims.html").exists(), reason="the book is not built")
def test_every_result_box_links_back_to_its_ledger_row_in_the_built_book():
    import re

    ledger = (HTML / "book" / "claims.html").read_text()
    results = [r for r in ledger_scan.scan_book() if r.chapter in claims_ledger.CHAPTER_TITLES]
    by_chapter = {}
    for r in results:
        by_chapter.setdefault(r.chapter, []).append(r)
    missing = []
    for chapter, rs in by_chapter.items():
        page = (HTML / "book" / f"{chapter}.html").read_text()
        links = re.findall(r'<a class="[^"]*ledger-backlink[^"]*" href="claims\.html#([^"]+)"', page)
        links += re.findall(r'<a [^>]*href="claims\.html#([^"]+)"[^>]*class="[^"]*ledger-backlink', page)
        for r in rs:
            anchor = claims_ledger.anchor_id(r.label)
            if anchor not in links:
                missing.append(f"{chapter}: no back-link for {r.label}")
            if f'id="{anchor}"' not in ledger:
                missing.append(f"ledger: no row id {anchor}")
    assert results and not missing, missing[:10]
