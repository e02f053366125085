"""The execution cache is keyed on the library's source: editing moe_theory re-executes its chapters."""

import importlib.util
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("library_cache", ROOT / "_ext" / "library_cache.py")
library_cache = importlib.util.module_from_spec(spec)
spec.loader.exec_module(library_cache)

jupyter_cache = pytest.importorskip("jupyter_cache")


def _notebook(code: str):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(code, execution_count=1)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def test_library_change_drops_only_notebooks_that_import_it(tmp_path):
    root = tmp_path / "book"
    (root / "moe_theory").mkdir(parents=True)
    module = root / "moe_theory" / "core.py"
    module.write_text("X = 1\n")
    cache_dir = tmp_path / "cache"
    assert library_cache.invalidate_stale(cache_dir, root) == []  # first build: just stamps

    cache = jupyter_cache.get_cache(str(cache_dir))
    uses = cache.cache_notebook_bundle(jupyter_cache.base.CacheBundleIn(_notebook("import moe_theory"), "a.ipynb"))
    plain = cache.cache_notebook_bundle(jupyter_cache.base.CacheBundleIn(_notebook("print(1)"), "b.ipynb"))
    assert library_cache.invalidate_stale(cache_dir, root) == []  # nothing changed: nothing dropped

    module.write_text("X = 2\n")
    assert library_cache.invalidate_stale(cache_dir, root) == [uses.pk]
    remaining = {r.pk for r in jupyter_cache.get_cache(str(cache_dir)).list_cache_records()}
    assert remaining == {plain.pk}
    assert library_cache.invalidate_stale(cache_dir, root) == []  # stamp updated


def test_library_hash_changes_with_content_and_new_files(tmp_path):
    (tmp_path / "moe_theory").mkdir()
    (tmp_path / "moe_theory" / "a.py").write_text("A = 1\n")
    h1 = library_cache.library_hash(tmp_path)
    (tmp_path / "moe_theory" / "b.py").write_text("")
    h2 = library_cache.library_hash(tmp_path)
    (tmp_path / "moe_theory" / "a.py").write_text("A = 2\n")
    h3 = library_cache.library_hash(tmp_path)
    assert len({h1, h2, h3}) == 3


def test_library_hash_changes_with_saved_results(tmp_path):
    """Regenerating a full-scale result file must re-execute the chapters that show it."""
    (tmp_path / "moe_theory").mkdir()
    (tmp_path / "moe_theory" / "a.py").write_text("A = 1\n")
    h1 = library_cache.library_hash(tmp_path)
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "exp.json").write_text("{}")
    h2 = library_cache.library_hash(tmp_path)
    (tmp_path / "results" / "exp.json").write_text('{"x": 1}')
    h3 = library_cache.library_hash(tmp_path)
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "results.json").write_text("{}")
    h4 = library_cache.library_hash(tmp_path)
    (tmp_path / "benchmarks" / "bench.py").write_text("")  # benchmark code is not a chapter input
    h5 = library_cache.library_hash(tmp_path)
    assert len({h1, h2, h3, h4}) == 4 and h5 == h4
