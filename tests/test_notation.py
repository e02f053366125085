"""One symbol, one meaning: no symbol is defined twice in the tables of book/notation.md, and
every symbol a chapter's math uses is listed there (book-wide or in the chapter's section; see
the second half of this file).

The check reads every table row of the notation page whose first cell holds math. The first cell
may define several symbols (``$u$, $\\nu$``); each ``$...$`` piece defines one. The *defined
symbol* of a piece is what stands before its first relation (``=``, ``\\in``, ``\\ge``, ``<``,
``:`` ...) with a trailing argument list removed, so ``$g(x) = Wx + b$`` defines ``g``,
``$\\mu(A)$`` defines ``\\mu`` and ``$t \\in \\mathbb{R}^D$`` defines ``t``; subscripts and
decorations are kept, so ``$g_i$``, ``$\\bar p_i$`` and ``$\\eta_{\\rm raw}$`` are symbols of their
own. Spacing commands are ignored and runs of spaces count as one. A symbol defined in two rows (of one table or of two
sections) fails the test, with both rows named.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTATION = ROOT / "book" / "notation.md"

_RELATION = re.compile(r"\s*(=|\\in\b|\\ge\b|\\le\b|\\geq\b|\\leq\b|<|>|:|\\subset\b|\\approx\b)")
_SPACING = re.compile(r"\\[,;:! ]|\\quad|\\qquad")


def _strip_argument(head: str) -> str:
    """Remove one trailing top-level ``(...)`` group: ``\\mu(A)`` -> ``\\mu``, ``g_{(1)}`` stays."""
    if not head.endswith(")"):
        return head
    depth = 0
    for pos in range(len(head) - 1, -1, -1):
        depth += {")": 1, "(": -1}.get(head[pos], 0)
        if depth == 0:
            stripped = head[:pos]
            return stripped if stripped and stripped.count("{") == stripped.count("}") else head
    return head


def defined_symbols(first_cell: str) -> list[str]:
    """The symbols a first cell of a notation table defines, normalised (see the module doc)."""
    symbols = []
    for piece in re.findall(r"\$([^$]+)\$", first_cell):
        head = _RELATION.split(piece, maxsplit=1)[0]
        head = _strip_argument(" ".join(_SPACING.sub(" ", head).split()))
        if head:
            symbols.append(head)
    return symbols


def notation_rows(page: str) -> list[tuple[str, str]]:
    """``(section, first cell)`` of every table row whose first cell holds math."""
    rows, section = [], ""
    for line in page.splitlines():
        if line.startswith("#"):
            section = line.lstrip("#").strip()
        elif line.startswith("| $"):
            rows.append((section, line.split("|")[1].strip()))
    return rows


def duplicated_symbols(page: str) -> dict[str, list[str]]:
    """Each symbol defined in more than one row, with the rows (``section: cell``) defining it."""
    where: dict[str, list[str]] = {}
    for section, cell in notation_rows(page):
        for symbol in set(defined_symbols(cell)):
            where.setdefault(symbol, []).append(f"{section}: {cell}")
    return {s: rows for s, rows in where.items() if len(rows) > 1}


@pytest.mark.parametrize("cell, expected", [
    (r"$g(x) = Wx + b$, $g_i$", ["g", "g_i"]),
    (r"$t \in \mathbb{R}^D$", ["t"]),
    (r"$\mu(A)$", [r"\mu"]),
    (r"$g_{(1)} \ge g_{(2)} \ge \dots \ge g_{(N)}$", ["g_{(1)}"]),
    (r"$H(\cdot)$, $I(\cdot\,;\cdot)$, $\mathrm{KL}(q\,\Vert\,p)$", ["H", "I", r"\mathrm{KL}"]),
    (r"$\eta_{\rm raw}$", [r"\eta_{\rm raw}"]),
    (r"$\mathbf 1_S \in \{0,1\}^N$", [r"\mathbf 1_S"]),
])
def test_defined_symbols_reads_the_symbol_before_the_relation(cell, expected):
    assert defined_symbols(cell) == expected


def test_a_page_with_a_symbol_defined_twice_is_caught():
    page = ("## A\n\n| Symbol | Meaning |\n|---|---|\n| $\\beta$, $\\xi$ | a perturbation |\n"
            "| $r$ | an order |\n\n## B\n\n| Symbol | Meaning |\n|---|---|\n"
            "| $\\beta \\in \\mathbb{R}^N$ | coefficients |\n| $r_i(x, t)$ | a posterior |\n")
    assert duplicated_symbols(page) == {
        r"\beta": [r"A: $\beta$, $\xi$", r"B: $\beta \in \mathbb{R}^N$"]}


def test_notation_page_defines_every_symbol_once():
    page = NOTATION.read_text()
    assert len(notation_rows(page)) > 80  # the page's tables are read at all
    duplicates = duplicated_symbols(page)
    assert not duplicates, "symbols defined twice on the notation page:\n" + "\n".join(
        f"  {symbol}: {rows}" for symbol, rows in duplicates.items())


# --- Every symbol a chapter uses in its math is listed on the notation page --------------------
#
# A practical extractor, not a TeX parser. The math of a MyST page is what stands in ``$...$``,
# ``$$...$$``, ``{math}`...``` and ```` ```{math} ```` blocks, also inside directives (theorem
# boxes, exercises, dropdowns); code cells, literal includes and inline code are skipped. A
# *symbol* of a formula is a single Latin letter or a Greek letter command; subscripts,
# superscripts and accents (``\bar``, ``\hat``, ``\tilde``) are not part of it, so ``g_{(k)}``,
# ``\bar p_i`` and ``g`` are all the symbol ``g`` (the ``k`` and ``i`` count on their own); ``\mathcal M``, ``\mathbb P``, ``\mathbf 1``
# are symbols of their own. Words in ``\mathrm``/``\text``/``\operatorname``/``\rm`` are names
# (softmax, KL, hit), not symbols. A chapter's symbols must be listed in the general sections of
# the page or in the chapter's own section: in the first cell of a table row, on the section's
# "Also uses:" line, which names symbols defined in another section (each must be), or on its
# "Local:" line, letters bound in one proof or example and named where they appear (never a
# letter with a book-wide meaning).

CHAPTER_SECTIONS = {
    "primer": "A mixture of experts in one page",
    "tropical": "Top-k routing as tropical geometry",
    "manifold": "Shallow MoE on low-dimensional manifolds",
    "compositional": "Deep MoE and compositional sparsity",
    "bayes": "Bayesian and information-theoretic routing",
    "coherence": "The coherence barrier",
    "discontinuity": "Discontinuities of sparse MoE",
    "appendix_performance": "Appendix: how fast is the MoE layer",
    "intro": None,  # the introduction uses book-wide symbols only
    "instructors": None,
    "claims": None,
    "glossary": None,  # quotes every chapter's symbols, each with its chapter's meaning: not checked
}
#: Back-matter pages that quote the chapters' symbols rather than define their own.
QUOTING_PAGES = {"glossary"}
GENERAL_SECTIONS = ("Experts and routing", "Training", "Geometry of the data", "Depth")

#: Letters a chapter may use without a row on the page: bound indices of sums, products and
#: families (i, j, l, n), Euler's number e, the number pi (unsubscripted), and Landau's O.
BOUND_OR_CONSTANT = {"i", "j", "l", "n", "e", r"\pi", "O"}

_GREEK = set(r"""alpha beta gamma delta epsilon varepsilon zeta eta theta vartheta iota kappa lambda
    mu nu xi pi varpi rho varrho sigma varsigma tau upsilon phi varphi chi psi omega Gamma Delta
    Theta Lambda Xi Pi Sigma Upsilon Phi Psi Omega""".split())
_FONTS = {"mathcal", "mathbb", "mathbf", "boldsymbol", "mathscr", "mathfrak"}
_NAMES = {"mathrm", "text", "operatorname", "textrm", "textit", "mbox", "texttt", "mathsf",
          "label", "tag", "begin", "end", "rm", "mathit"}
_FENCE = re.compile(r"^(`{3,}|~{3,})\s*(.*)$")
_TOKEN = re.compile(r"\\([A-Za-z]+)\s*|([A-Za-z])|\\.|[^A-Za-z\\]", re.S)


def math_segments(text: str) -> list[str]:
    """The TeX of every formula of a MyST page (code cells and literal includes skipped)."""
    lines, out, prose, i = text.splitlines(), [], [], 0
    if lines and lines[0] == "---" and "---" in lines[1:]:
        i = lines.index("---", 1) + 1  # front matter
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if not fence:
            prose.append(lines[i])
            i += 1
            continue
        marker, info = fence.groups()
        end = i + 1
        while end < len(lines) and not lines[end].startswith(marker):
            end += 1
        body = lines[i + 1:end]
        if info.startswith("{math}"):
            out.append("\n".join(line for line in body if not line.startswith(":")))
        elif info.startswith("{") and not info.startswith(("{code-cell}", "{literalinclude}")):
            out.extend(math_segments("\n".join(line for line in body if not line.startswith(":"))))
        i = end + 1
    rest = "\n".join(prose)
    out += re.findall(r"\{math\}`([^`]*)`", rest)
    rest = re.sub(r"\{math\}`[^`]*`|``[^`]*``|`[^`\n]*`", " ", rest)
    out += re.findall(r"\$\$(.+?)\$\$", rest, re.S)
    rest = re.sub(r"\$\$(.+?)\$\$", " ", rest, flags=re.S)
    out += re.findall(r"(?<!\\)\$((?:[^$\n]|\n(?!\s*\n))+?)(?<!\\)\$", rest)
    return out


def math_symbols(tex: str) -> set[str]:
    """The symbols of a formula (see above): ``"g_i(x) = \\mathbb P(\\mathrm{hit})"`` -> g, x, \\mathbb P."""
    tex = re.sub(r"\\rm\b(?:[^{}]|\{[^{}]*\})*", " ", tex)  # {\rm TK\text{-}SM}: a name to the group's end
    tokens = [(m.group(1), m.group(2), m.group(0).strip()) for m in _TOKEN.finditer(tex)]
    found, k = set(), 0

    def group(k):  # the next argument: a braced group or one token -> (its tokens' text, next k)
        while k < len(tokens) and tokens[k][2] == "":
            k += 1
        if k < len(tokens) and tokens[k][2] == "{":
            depth, start = 0, k
            while k < len(tokens):
                depth += {"{": 1, "}": -1}.get(tokens[k][2], 0)
                k += 1
                if depth == 0:
                    break
            return "".join(t[2] for t in tokens[start + 1:k - 1]), k
        return (tokens[k][2], k + 1) if k < len(tokens) else ("", k)

    while k < len(tokens):
        command, letter, _ = tokens[k]
        if command in _NAMES:
            if command == "rm":  # {\rm hit}: the letters that follow are a name
                k += 1
                while k < len(tokens) and (tokens[k][1] or tokens[k][2] == ""):
                    k += 1
            else:
                k = group(k + 1)[1]
        elif command in _FONTS:
            name, k = group(k + 1)
            found.add(f"\\{command} {name}")
        else:
            if command in _GREEK:
                found.add("\\" + command)
            elif letter:
                found.add(letter)
            k += 1
    return found


def page_symbols(text: str) -> set[str]:
    """Every symbol in the math of a MyST page."""
    return set().union(set(), *(math_symbols(tex) for tex in math_segments(text)))


def sections(page: str) -> dict[str, str]:
    """The notation page's ``##`` sections: title -> text."""
    parts = re.split(r"^## (.+)$", page, flags=re.M)
    return {title.strip(): body for title, body in zip(parts[1::2], parts[2::2])}


def _line_symbols(body: str, head: str) -> set[str]:
    found = set()
    for line in re.findall(rf"^{head}:(.*)$", body, flags=re.M):
        found |= set().union(set(), *(math_symbols(tex) for tex in re.findall(r"\$([^$]+)\$", line)))
    return found


def listed_symbols(body: str) -> tuple[set[str], set[str], set[str]]:
    """Symbols of a section's table rows (first cells), its "Also uses:" and its "Local:" line."""
    rows = set().union(set(), *(math_symbols(tex) for _, cell in notation_rows(body)
                                for tex in re.findall(r"\$([^$]+)\$", cell)))
    return rows, _line_symbols(body, "Also uses"), _line_symbols(body, "Local")


def unlisted_symbols(chapter_text: str, page: str, section: str | None) -> set[str]:
    """Symbols of a chapter's math that the notation page lists neither book-wide nor in ``section``."""
    parts = sections(page)
    allowed = set(BOUND_OR_CONSTANT)
    for title in GENERAL_SECTIONS:
        allowed |= listed_symbols(parts[title])[0]
    if section is not None:
        rows, also, local = listed_symbols(parts[section])
        allowed |= rows | also | local
    return page_symbols(chapter_text) - allowed


@pytest.mark.parametrize("tex, expected", [
    (r"g_i(x) = \mathbb P(\mathrm{hit})", {"g", "i", "x", r"\mathbb P"}),
    (r"\bar p_i \ge \hat\rho_{(k)}^{\rm trop}", {"p", "i", r"\rho", "k"}),
    (r"\mathcal W_{ij} = \{x : g_i = g_j\}", {r"\mathcal W", "i", "j", "x", "g"}),
    (r"\operatorname{softmax}(g)_i + \text{for all } \lambda", {"g", "i", r"\lambda"}),
    (r"\tfrac1T\sum_{n=1}^T \mathbf 1_S", {"T", "n", r"\mathbf 1", "S"}),
    (r"\pi_*^{\rm SM\text{-}TK} + s_{\rm hit}", {r"\pi", "s"}),
])
def test_math_symbols_reads_letters_and_greek_but_not_names(tex, expected):
    assert math_symbols(tex) == expected


def test_math_segments_reads_prose_math_and_boxes_but_not_code():
    text = ("---\nkernelspec: {x: 1}\n---\n# T\nInline $a + b$ and\n$$\nc\n$$\n"
            "```{prf:theorem} Title\n:label: thm-x\nWith {math}`\\delta` and $u$.\n```\n"
            "```{code-cell} ipython3\nq = '$z$'\n```\nA `$y$` in code, and $v$ over a\nline $w$.\n")
    assert [tex.strip() for tex in math_segments(text)] == ["\\delta", "u", "c", "a + b", "v", "w"]
    assert page_symbols(text) & {"z", "y", "q"} == set()


def test_an_unlisted_symbol_in_a_chapter_is_caught():
    """A planted symbol the page does not list fails; the same symbol listed passes."""
    page = NOTATION.read_text()
    chapter = (ROOT / "book" / "primer.md").read_text()
    planted = chapter + "\nA planted formula: $\\Upsilon_i = \\mathscr Z$.\n"
    assert unlisted_symbols(planted, page, CHAPTER_SECTIONS["primer"]) == {r"\Upsilon", r"\mathscr Z"}
    listed = page.replace("## A mixture of experts in one page\n",
                          "## A mixture of experts in one page\n\nAlso uses: $\\Upsilon$, $\\mathscr Z$.\n")
    assert unlisted_symbols(planted, listed, CHAPTER_SECTIONS["primer"]) == set()


def test_every_chapter_is_mapped_to_a_notation_section():
    page_titles = set(sections(NOTATION.read_text()))
    chapters = {p.stem for p in (ROOT / "book").glob("*.md")} - {"notation", "bibliography"}
    assert chapters == set(CHAPTER_SECTIONS)
    assert {s for s in CHAPTER_SECTIONS.values() if s} <= page_titles
    assert set(GENERAL_SECTIONS) <= page_titles


@pytest.mark.parametrize("chapter", sorted(set(CHAPTER_SECTIONS) - QUOTING_PAGES))
def test_notation_page_lists_every_symbol_of_the_chapter(chapter):
    page = NOTATION.read_text()
    text = (ROOT / "book" / f"{chapter}.md").read_text()
    assert len(page_symbols(text)) >= 3 or CHAPTER_SECTIONS[chapter] is None
    missing = unlisted_symbols(text, page, CHAPTER_SECTIONS[chapter])
    assert not missing, (f"book/{chapter}.md uses symbols that book/notation.md does not list "
                         f"(book-wide or in its section {CHAPTER_SECTIONS[chapter]!r}): {sorted(missing)}")


def test_also_uses_names_only_symbols_defined_on_the_page():
    page = NOTATION.read_text()
    defined = set()
    for body in sections(page).values():
        defined |= listed_symbols(body)[0]
    for title, body in sections(page).items():
        also = listed_symbols(body)[1]
        assert also <= defined | BOUND_OR_CONSTANT, f"{title}: 'Also uses' names undefined {also - defined}"


def test_local_letters_never_shadow_a_book_wide_symbol():
    parts = sections(NOTATION.read_text())
    book_wide = set().union(*(listed_symbols(parts[title])[0] for title in GENERAL_SECTIONS))
    for title, body in parts.items():
        shadowed = listed_symbols(body)[2] & book_wide
        assert not shadowed, f"{title}: 'Local' letters with a book-wide meaning: {sorted(shadowed)}"
