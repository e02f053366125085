"""The exercises a course can assign: every chapter's exercise section is complete and executable.

Static checks on the MyST sources under book/ (the chapters are the executable pages of the
table of contents outside the back matter, the notation page excepted):

- every ``{exercise}`` has exactly one solution with its label (``{solution}`` or a gated
  ``{solution-start}`` ... ``{solution-end}`` pair), and every solution answers an exercise;
- every exercise states its kind on its first line, ``**Computational.**``, ``**Proof.**`` or
  ``**By hand.**``; every chapter has >= 4 exercises and >= 2 computational ones, and the
  solution of a computational exercise executes code;
- solutions are hidden dropdowns, and code in a solution is an executed ``{code-cell}`` inside a
  gated solution, never a static ```` ```python ```` fence (which would show code that no build has run);
- exercise labels are unique book-wide.

Each check is shown to catch a defect planted in a real chapter. A last check, on a built book,
looks for the executed output inside the solution dropdowns.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
HTML = Path(os.environ.get("MOE_BOOK_HTML", ROOT / "_build" / "html")).resolve()
KINDS = ("Computational", "Proof", "By hand")
#: Characters of code that fit a solution dropdown without a sideways scroll (measured in
#: headless Chromium at 1280 px: lines of 69 characters fit the code box, 70 scroll).
SOLUTION_CODE_WIDTH = 69
_OPEN = re.compile(r"^(`{3,}|~{3,})\{(exercise|solution|solution-start|solution-end)\}[ \t]*(.*)$")
_KIND = re.compile(r"^\*\*(" + "|".join(KINDS) + r")\.\*\*")
_STATIC_CODE = re.compile(r"^[ \t]*(`{3,}|~{3,})[ \t]*(python3?|py|ipython3?|pycon)\b", re.M)
_CODE_CELL = re.compile(r"^[ \t]*(`{3,}|~{3,})\{code-cell\}", re.M)


def chapters() -> list[str]:
    """Names (under book/) of the chapters: executable pages of the toc outside the back matter."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    names = []
    for part in toc["parts"]:
        if "back matter" in part.get("caption", "").lower():
            continue
        for entry in part["chapters"]:
            name = Path(entry["file"]).name
            path = BOOK / f"{name}.md"
            if name != "notation" and path.exists() and "kernelspec" in path.read_text()[:400]:
                names.append(name)
    return names


def parse_exercises(text: str) -> dict:
    """Exercises and solutions of a MyST page.

    Returns ``{"exercises": [{"label", "kind", "body"}], "solutions": [{"label", "form", "body",
    "options"}], "errors": [...]}``, ``form`` being ``"directive"`` or ``"gated"``.
    """
    lines = text.splitlines()
    exercises, solutions, errors = [], [], []
    gated = None  # the open solution-start: (label, options, first body line)
    i = 0
    while i < len(lines):
        m = _OPEN.match(lines[i])
        if not m:
            i += 1
            continue
        fence, kind, arg = m.group(1), m.group(2), m.group(3).strip()
        j = i + 1
        while j < len(lines) and lines[j].strip() != fence:
            j += 1
        block = lines[i + 1:j]
        options = {}
        k = 0
        while k < len(block) and re.match(r"^:[\w-]+:", block[k]):
            key, _, value = block[k][1:].partition(":")
            options[key] = value.strip()
            k += 1
        body = "\n".join(block[k:]).strip()
        if kind == "exercise":
            first = body.splitlines()[0] if body else ""
            km = _KIND.match(first)
            exercises.append({"label": options.get("label", ""), "title": arg,
                              "kind": km.group(1) if km else None, "body": body})
        elif kind == "solution":
            solutions.append({"label": arg, "form": "directive", "body": body, "options": options})
        elif kind == "solution-start":
            if gated is not None:
                errors.append(f"solution-start {arg} opens before solution-end of {gated[0]}")
            gated = (arg, options, j + 1)
        else:  # solution-end
            if gated is None:
                errors.append(f"solution-end at line {i + 1} without a solution-start")
            else:
                solutions.append({"label": gated[0], "form": "gated", "options": gated[1],
                                  "body": "\n".join(lines[gated[2]:i]).strip()})
                gated = None
        i = j + 1
    if gated is not None:
        errors.append(f"solution-start {gated[0]} has no solution-end")
    return {"exercises": exercises, "solutions": solutions, "errors": errors}


def _code_lines(body: str) -> list[str]:
    """Source lines of the code cells shown in a solution's body (options excluded)."""
    lines = []
    for m in re.finditer(r"^(`{3,})\{code-cell\}[^\n]*\n(.*?)^\1[ \t]*$", body, re.S | re.M):
        if re.search(r"^:tags:.*remove-(cell|input)", m.group(2), re.M):
            continue  # not shown on the page
        lines += [line for line in m.group(2).splitlines() if not re.match(r"^:[\w-]+:", line)]
    return lines


def exercise_problems(text: str) -> list[str]:
    """Everything wrong with one chapter's exercises (an empty list when it is complete)."""
    parsed = parse_exercises(text)
    problems = list(parsed["errors"])
    exercises, solutions = parsed["exercises"], parsed["solutions"]
    labels = [e["label"] for e in exercises]
    for label, n in Counter(labels).items():
        if n > 1:
            problems.append(f"exercise label {label} is used {n} times")
    solved = Counter(s["label"] for s in solutions)
    for e in exercises:
        if not e["label"]:
            problems.append(f"exercise {e['title']!r} has no :label:")
        elif solved[e["label"]] != 1:
            problems.append(f"exercise {e['label']} has {solved[e['label']]} solutions, expected 1")
        if e["kind"] is None:
            problems.append(f"exercise {e['label']} does not start with its kind, one of "
                            f"{', '.join(f'**{k}.**' for k in KINDS)}")
    for s in solutions:
        if s["label"] not in labels:
            problems.append(f"solution {s['label']} answers no exercise of this page")
        if s["options"].get("class") != "dropdown":
            problems.append(f"solution {s['label']} is not a hidden dropdown (:class: dropdown)")
        if _STATIC_CODE.search(s["body"]):
            problems.append(f"solution {s['label']} has a static Python fence: its code is never run")
        wide = [len(line) for line in _code_lines(s["body"]) if len(line) > SOLUTION_CODE_WIDTH]
        if wide:
            problems.append(f"solution {s['label']} has code lines over {SOLUTION_CODE_WIDTH} "
                            f"characters (lengths {wide}): they scroll sideways in the dropdown")
        if s["form"] == "directive" and _CODE_CELL.search(s["body"]):
            problems.append(f"solution {s['label']} nests a code-cell in a directive (not executed):"
                            " use solution-start/solution-end")
    by_label = {s["label"]: s for s in solutions}
    for e in exercises:
        s = by_label.get(e["label"])
        if e["kind"] == "Computational" and s is not None and not (
                s["form"] == "gated" and _CODE_CELL.search(s["body"])):
            problems.append(f"computational exercise {e['label']} has no executed code in its solution")
    n_ex = len(exercises)
    n_comp = sum(e["kind"] == "Computational" for e in exercises)
    if n_ex < 4:
        problems.append(f"the chapter has {n_ex} exercises, expected >= 4")
    if n_comp < 2:
        problems.append(f"the chapter has {n_comp} computational exercises, expected >= 2")
    return problems


CHAPTERS = chapters()


def _text(name: str) -> str:
    return (BOOK / f"{name}.md").read_text()


def test_the_chapters_are_found():
    assert {"primer", "tropical", "manifold", "compositional", "bayes", "coherence",
            "discontinuity"} <= set(CHAPTERS)
    assert "notation" not in CHAPTERS and "bibliography" not in CHAPTERS


@pytest.mark.parametrize("name", CHAPTERS)
def test_chapter_exercises_are_complete(name):
    assert exercise_problems(_text(name)) == []


def test_exercise_labels_are_unique_book_wide():
    labels = Counter(e["label"] for md in sorted(BOOK.glob("*.md"))
                     for e in parse_exercises(md.read_text())["exercises"])
    assert labels and not [label for label, n in labels.items() if n > 1]


def test_parser_reads_both_solution_forms():
    text = ("```{exercise} A\n:label: ex-a\n\n**Proof.** Show it.\n```\n\n"
            "```{solution} ex-a\n:class: dropdown\n\nBecause.\n```\n\n"
            "```{exercise} B\n:label: ex-b\n\n**Computational.** Compute it.\n```\n\n"
            "````{solution-start} ex-b\n:class: dropdown\n````\n\n"
            "```{code-cell} ipython3\nprint(1)\n```\n\nIt prints 1.\n\n````{solution-end}\n````\n")
    parsed = parse_exercises(text)
    assert [(e["label"], e["kind"]) for e in parsed["exercises"]] == [("ex-a", "Proof"),
                                                                       ("ex-b", "Computational")]
    assert [(s["label"], s["form"]) for s in parsed["solutions"]] == [("ex-a", "directive"),
                                                                      ("ex-b", "gated")]
    assert "print(1)" in parsed["solutions"][1]["body"] and parsed["errors"] == []


# Planted defects: each check must fail on a chapter that breaks it.
PLANT = "primer"


def _planted(old: str, new: str, count: int = 1) -> str:
    text = _text(PLANT)
    assert old in text, f"the planted defect needs {old!r} in {PLANT}.md"
    return text.replace(old, new, count)


def _first_gated_solution(text: str) -> tuple[str, str]:
    m = re.search(r"(`{3,})\{solution-start\} (\S+)\n:class: dropdown\n\1\n(.*?)\n(`{3,})"
                  r"\{solution-end\}\n\4\n", text, re.S)
    assert m, f"{PLANT}.md has no gated solution to plant a defect in"
    return m.group(0), m.group(2)


def test_planted_missing_solution_is_caught():
    block, label = _first_gated_solution(_text(PLANT))
    problems = exercise_problems(_planted(block, ""))
    assert f"exercise {label} has 0 solutions, expected 1" in problems


def test_planted_duplicate_solution_is_caught():
    block, label = _first_gated_solution(_text(PLANT))
    problems = exercise_problems(_planted(block, block + "\n" + block))
    assert f"exercise {label} has 2 solutions, expected 1" in problems


def test_planted_orphan_solution_and_unclosed_gate_are_caught():
    block, label = _first_gated_solution(_text(PLANT))
    orphan = block.replace(label, "ex-nowhere")
    assert "solution ex-nowhere answers no exercise of this page" in \
        exercise_problems(_planted(block, block + "\n" + orphan))
    unclosed = re.sub(r"(`{3,})\{solution-end\}\n\1\n$", "", block)
    assert any(p.startswith("solution-start") and label in p
               for p in exercise_problems(_planted(block, unclosed)))


def test_planted_static_python_fence_is_caught():
    block, label = _first_gated_solution(_text(PLANT))
    static = re.sub(r"```\{code-cell\} ipython3\n", "```python\n", block)
    assert static != block
    problems = exercise_problems(_planted(block, static))
    assert f"solution {label} has a static Python fence: its code is never run" in problems


def test_planted_code_cell_in_directive_solution_is_caught():
    text = _text(PLANT)
    m = re.search(r"```\{solution\} (\S+)\n:class: dropdown\n", text)
    assert m, f"{PLANT}.md has no directive solution"
    label = m.group(1)
    planted = text.replace(m.group(0), "````{solution} " + label + "\n:class: dropdown\n\n"
                           "```{code-cell} ipython3\nprint(1)\n```\n````\n\n```{note}\n", 1)
    assert any(p.startswith(f"solution {label} nests a code-cell") for p in exercise_problems(planted))


def test_planted_wide_solution_code_is_caught():
    block, label = _first_gated_solution(_text(PLANT))
    wide = block.replace("```{code-cell} ipython3\n", "```{code-cell} ipython3\nx = 1" +
                         " " * SOLUTION_CODE_WIDTH + "# wide\n", 1)
    assert any(p.startswith(f"solution {label} has code lines over") for p in
               exercise_problems(_planted(block, wide)))


def test_planted_missing_dropdown_is_caught():
    block, label = _first_gated_solution(_text(PLANT))
    problems = exercise_problems(_planted(block, block.replace(":class: dropdown\n", "", 1)))
    assert f"solution {label} is not a hidden dropdown (:class: dropdown)" in problems


def test_planted_missing_kind_and_too_few_computational_are_caught():
    text = _text(PLANT)
    planted = text.replace("**Computational.** ", "")
    problems = exercise_problems(planted)
    assert any("does not start with its kind" in p for p in problems)
    assert any(p.startswith("the chapter has 0 computational exercises") for p in problems)


def test_planted_computational_without_code_is_caught():
    text = _text(PLANT)
    parsed = parse_exercises(text)
    no_code = {s["label"] for s in parsed["solutions"] if not _CODE_CELL.search(s["body"])}
    proof = next(e for e in parsed["exercises"] if e["label"] in no_code)
    planted = text.replace(proof["body"], proof["body"].replace(
        f"**{proof['kind']}.**", "**Computational.**", 1), 1)
    assert (f"computational exercise {proof['label']} has no executed code in its solution"
            in exercise_problems(planted))


def test_planted_too_few_exercises_and_duplicate_label_are_caught():
    parsed = parse_exercises(_text(PLANT))
    first, second = parsed["exercises"][0]["label"], parsed["exercises"][1]["label"]
    text = _text(PLANT).replace(f":label: {second}\n", f":label: {first}\n", 1)
    assert f"exercise label {first} is used 2 times" in exercise_problems(text)
    short = "\n".join(_text(PLANT).split("## Exercises")[0:1]) + "## Exercises\n"
    assert "the chapter has 0 exercises, expected >= 4" in exercise_problems(short)


# On a built book: the executed output of a gated solution is inside its dropdown.
def _solution_blocks(html: str) -> list[str]:
    """HTML of each gated solution: from a solution's opening to the next exercise, solution,
    or section heading."""
    starts = [m.start() for m in re.finditer(r'<div class="solution dropdown[^"]*"', html)]
    ends = [m.start() for m in re.finditer(
        r'<div class="(exercise|solution)[ "]|<h2|<section id="(?!solution-content)', html)]
    blocks = []
    for s in starts:
        e = min((x for x in ends if x > s), default=len(html))
        blocks.append(html[s:e])
    return blocks


@pytest.mark.parametrize("name", CHAPTERS)
def test_built_solutions_show_their_executed_output(name):
    page = HTML / "book" / f"{name}.html"
    if not page.exists():
        pytest.skip(f"no built page {page}")
    html = page.read_text(errors="ignore")
    if 'class="cell_output' not in html:  # a one-chapter build leaves the others unexecuted
        pytest.skip(f"{page.name} was not executed in this build")
    gated = [s for s in parse_exercises(_text(name))["solutions"]
             if s["form"] == "gated" and _CODE_CELL.search(s["body"])]
    with_output = [b for b in _solution_blocks(html) if 'class="cell_output' in b]
    assert len(with_output) >= len(gated), (
        f"{page.name}: {len(gated)} solutions run code but {len(with_output)} dropdowns show output")


def test_planted_solution_without_output_is_caught_in_html():
    shown = ('<div class="solution dropdown admonition" id="s1"><p class="admonition-title">S</p>'
             '<section id="solution-content"><div class="cell docutils container">'
             '<div class="cell_output docutils container">1</div></div></section></div>')
    empty = shown.replace('<div class="cell_output docutils container">1</div>', "")
    page = shown + '<div class="exercise admonition">' + empty + '<section id="further-reading">'
    blocks = _solution_blocks(page)
    assert len(blocks) == 2
    assert ['class="cell_output' in b for b in blocks] == [True, False]
