"""Sphinx extension: bibliography labels in the style the text cites, "Fedus et al., 2022".

The book cites author-year (``bibtex_reference_style: author_year``), but pybtex's default ``alpha``
labels made the bibliography list read "[FZS22]", in the HTML and in the PDF, so a reader could not
match a citation to its entry by eye. This registers a pybtex label style giving each entry the label
its citations show (last name of a single author, "A and B" for two, "A et al." for more, then the
year field, which carries the a/b of two papers of one year), and the formatting style
``moe_author_year``: pybtex's ``alpha`` (sorted by author, year, title) with those labels.
"""

from __future__ import annotations

from pybtex.plugin import register_plugin
from pybtex.richtext import Text
from pybtex.style.formatting.alpha import Style as AlphaStyle
from pybtex.style.labels import BaseLabelStyle


def _last(person) -> str:
    return Text.from_latex(" ".join(person.prelast_names + person.last_names)).render_as("text")


def author_year_label(entry) -> str:
    """``"Fedus et al., 2022"``: the label of ``entry`` as the book's author-year citations write it."""
    persons = entry.persons.get("author") or entry.persons.get("editor") or []
    names = [_last(p) for p in persons]
    if not names:
        who = Text.from_latex(entry.fields.get("key", entry.key)).render_as("text")
    elif len(names) == 1:
        who = names[0]
    elif len(names) == 2:
        who = f"{names[0]} and {names[1]}"
    else:
        who = f"{names[0]} et al."
    return f"{who}, {entry.fields.get('year', 'n.d.')}"


class AuthorYearLabelStyle(BaseLabelStyle):
    def format_labels(self, sorted_entries):
        for entry in sorted_entries:
            yield author_year_label(entry)


class AuthorYearStyle(AlphaStyle):
    default_label_style = "moe_author_year"


register_plugin("pybtex.style.labels", "moe_author_year", AuthorYearLabelStyle)
register_plugin("pybtex.style.formatting", "moe_author_year", AuthorYearStyle)


def setup(app):
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
