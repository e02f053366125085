"""Sphinx extension: the ``{nb-exec-table}`` status column in words, not emoji.

MyST-NB writes a check mark or a cross emoji in the table's status column; without an emoji font
the browser shows an empty box. This extension makes the column say ``ran`` or ``failed``.
"""

from __future__ import annotations

from myst_nb.ext import execution_tables


def status_text(succeeded) -> str:
    """The status cell: ``"ran"`` for a notebook that executed without error, else ``"failed"``."""
    return "ran" if succeeded is True else "failed"


def setup(app):
    execution_tables._key2transform["succeeded"] = status_text
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
