"""Sphinx extension: key the notebook execution cache on the library's source too.

MyST-NB's cache (jupyter-cache) is keyed on a notebook's code cells only, so editing
``moe_theory`` would not re-execute the chapters that use it. At ``builder-inited`` this
extension hashes every ``moe_theory/**/*.py`` file and the saved results the library reads
(``results/**`` and ``benchmarks/*.json``: regenerating a full-scale result must refresh the
chapter that shows it); when the hash differs from the one stored beside the cache, it removes
the cached executions of notebooks whose code imports ``moe_theory``, so exactly those chapters
run again.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from sphinx.util import logging

logger = logging.getLogger(__name__)

LIBRARY = "moe_theory"
STAMP = "moe_theory.sha256"


#: What the chapters' outputs depend on besides their own code: (folder, glob) pairs under the root.
SOURCES = ((LIBRARY, "*.py"), ("results", "*"), ("benchmarks", "*.json"))


def library_hash(root: Path) -> str:
    """SHA-256 over the relative paths and bytes of the library's Python files and saved results."""
    h = hashlib.sha256()
    files = {p for folder, pattern in SOURCES for p in (root / folder).rglob(pattern) if p.is_file()}
    for path in sorted(files):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def invalidate_stale(cache_dir: Path, root: Path) -> list[int]:
    """Drop cached notebooks importing the library if its source changed; return dropped ids."""
    stamp = cache_dir / STAMP
    current = library_hash(root)
    if stamp.exists() and stamp.read_text().strip() == current:
        return []
    dropped: list[int] = []
    if cache_dir.exists() and any(cache_dir.iterdir()):
        from jupyter_cache import get_cache

        cache = get_cache(str(cache_dir))
        for record in cache.list_cache_records():
            nb = cache.get_cache_bundle(record.pk).nb
            code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
            if LIBRARY in code:
                cache.remove_cache(record.pk)
                dropped.append(record.pk)
    cache_dir.mkdir(parents=True, exist_ok=True)
    stamp.write_text(current)
    return dropped


def _on_builder_inited(app) -> None:
    app._library_changed = False
    if app.config.nb_execution_mode != "cache":
        return
    cache_path = Path(app.config.nb_execution_cache_path or Path(app.outdir).parent / ".jupyter_cache")
    if not cache_path.is_absolute():
        cache_path = Path(app.confdir) / cache_path
    stamp = cache_path / STAMP
    app._library_changed = stamp.exists() and stamp.read_text().strip() != library_hash(Path(app.confdir))
    dropped = invalidate_stale(cache_path, Path(app.confdir))
    if dropped:
        logger.info(f"[library_cache] {LIBRARY} changed: re-executing {len(dropped)} cached notebook(s)")


def _on_env_get_outdated(app, env, added, changed, removed):
    """Sphinx re-reads only changed sources: also mark pages that import the library."""
    if not getattr(app, "_library_changed", False):
        return []
    stale = []
    for docname in env.found_docs:
        if docname in added or docname in changed:
            continue
        source = Path(env.doc2path(docname))
        if source.suffix in {".md", ".ipynb"} and LIBRARY in source.read_text(errors="ignore"):
            stale.append(docname)
    return stale


def setup(app):
    app.connect("builder-inited", _on_builder_inited, priority=400)
    app.connect("env-get-outdated", _on_env_get_outdated)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
