"""The book shows the library's real code: every ``literalinclude`` with ``:pyobject:`` in book/
names an existing function or class whose body is more than a delegation (> 3 statements)."""

import ast
import re
from pathlib import Path

import pytest

BOOK = Path(__file__).resolve().parent.parent / "book"
_INCLUDE = re.compile(r"```\{literalinclude\}[ \t]+(\S+)[ \t]*\n((?:[ \t]*:[\w-]+:.*\n)*)")


def literalinclude_pyobjects(text: str, base: Path) -> list[tuple[Path, str]]:
    """``(file, dotted name)`` of each ``literalinclude`` directive with a ``:pyobject:`` option."""
    found = []
    for match in _INCLUDE.finditer(text):
        options = dict(re.findall(r":([\w-]+):[ \t]*(.*)", match.group(2)))
        if "pyobject" in options:
            found.append(((base / match.group(1)).resolve(), options["pyobject"].strip()))
    return found


def find_pyobject(tree: ast.Module, dotted: str):
    """The class or function ``dotted`` (``Class.method`` allowed) in a parsed module, or None."""
    nodes = tree.body
    node = None
    for part in dotted.split("."):
        node = next((n for n in nodes if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                     and n.name == part), None)
        if node is None:
            return None
        nodes = node.body
    return node


def statement_count(node) -> int:
    """Statements in a function's or class's body, nested ones included, its docstring excluded."""
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
            and isinstance(body[0].value.value, str):
        body = body[1:]
    return sum(isinstance(n, ast.stmt) for stmt in body for n in ast.walk(stmt))


_TARGETS = [(md.name, path, name) for md in sorted(BOOK.glob("*.md"))
            for path, name in literalinclude_pyobjects(md.read_text(), md.parent)]


def test_the_book_has_literalinclude_targets_and_the_parser_finds_them():
    assert len(_TARGETS) >= 4
    text = "```{literalinclude} ../moe_theory/layers.py\n:pyobject: MoE.forward\n:lines: 1-3\n```\n"
    assert literalinclude_pyobjects(text, BOOK) == [((BOOK / "../moe_theory/layers.py").resolve(), "MoE.forward")]


def test_statement_count_flags_a_delegation_and_counts_a_real_body():
    tree = ast.parse('def f(x):\n    """Doc."""\n    return g(x)\n\n'
                     'class A:\n    def m(self, x):\n        y = x + 1\n        if y:\n            y = 2\n'
                     '        z = y * 3\n        return z\n')
    assert statement_count(find_pyobject(tree, "f")) == 1
    assert statement_count(find_pyobject(tree, "A.m")) == 5
    assert find_pyobject(tree, "A.missing") is None


@pytest.mark.parametrize("chapter,path,name", _TARGETS, ids=[f"{c}:{n}" for c, _, n in _TARGETS])
def test_literalinclude_target_exists_and_is_more_than_a_delegation(chapter, path, name):
    assert path.exists(), f"{chapter}: {path} does not exist"
    node = find_pyobject(ast.parse(path.read_text()), name)
    assert node is not None, f"{chapter}: no {name} in {path.name}"
    assert statement_count(node) > 3, f"{chapter}: {name} is a delegation ({statement_count(node)} statements)"


def test_exec_table_status_column_is_text_not_emoji():
    import importlib.util

    spec = importlib.util.spec_from_file_location("exec_table_text", BOOK.parent / "_ext" / "exec_table_text.py")
    ext = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ext)
    from myst_nb.ext import execution_tables

    original = dict(execution_tables._key2transform)
    try:
        ext.setup(type("App", (), {})())
        cells = [execution_tables._key2transform["succeeded"](v) for v in (True, False, None)]
    finally:
        execution_tables._key2transform.clear()
        execution_tables._key2transform.update(original)
    assert cells == ["ran", "failed", "failed"] and all(c.isascii() for c in cells)


def unlabelled_displays(text: str) -> list[int]:
    """Line numbers of display equations (``$$`` ... ``$$``) whose closing line carries no ``(label)``."""
    out, opened, in_code = [], False, False
    for i, line in enumerate(text.split("\n"), start=1):
        if line.startswith("```{code-cell}"):
            in_code = True
        elif in_code and line.startswith("```"):
            in_code = False
        if in_code or not line.startswith("$$"):
            continue
        if opened and not re.fullmatch(r"\$\$ \([\w-]+\)\s*", line):
            out.append(i)
        opened = not opened
    return out


def test_every_display_equation_is_labelled_so_html_and_pdf_number_it():
    missing = {p.name: unlabelled_displays(p.read_text()) for p in sorted(BOOK.glob("*.md"))}
    assert not {k: v for k, v in missing.items() if v}, missing
    assert unlabelled_displays("a\n$$\nx = 1\n$$\n\n$$\ny\n$$ (eq-y)\n") == [4]
