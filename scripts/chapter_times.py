"""Print the execution time of every notebook (chapter) of the last book build.

MyST-NB records, per document, how it was executed and how long it took: in the Sphinx
environment (``<build>/.doctrees/environment.pickle``, the data behind ``{nb-exec-table}``)
and, for cached executions, in the jupyter-cache database (``execution_seconds``). For a
document taken from the cache the time is that of the execution that filled the cache::

    .venv/bin/python scripts/chapter_times.py                  # the full build, _build
    .venv/bin/python scripts/chapter_times.py _build_chapters/tropical/_build
    .venv/bin/python scripts/chapter_times.py _build --json times.json   # also save them

Exit status 0; a chapter over the limit (``--limit``, 60 s) is flagged in the table.
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def from_environment(build: Path) -> dict[str, dict]:
    """``{docname: {"seconds", "method", "succeeded", "when"}}`` from Sphinx's pickled environment.

    ``method`` is MyST-NB's: ``"cache"`` (executed into the cache, by this build or an earlier
    one) or ``"direct"``/``"inline"``.
    """
    pickled = build / ".doctrees" / "environment.pickle"
    if not pickled.exists():
        return {}
    with open(pickled, "rb") as fh:
        env = pickle.load(fh)
    out = {}
    for doc, meta in getattr(env, "nb_metadata", {}).items():  # MyST-NB's per-document data
        data = meta.get("exec_data") if isinstance(meta, dict) else None
        if data:
            when = data.get("mtime")
            out[doc] = {"seconds": data.get("runtime"), "method": data.get("method"),
                        "succeeded": data.get("succeeded"),
                        "when": datetime.fromtimestamp(when).isoformat(timespec="seconds") if when else None}
    return out


def from_cache(build: Path) -> dict[str, dict]:
    """The same from the jupyter-cache database (``<build>/.jupyter_cache`` or ``<build>/../.jupyter_cache``)."""
    for cache_dir in (build / ".jupyter_cache", build.parent / ".jupyter_cache"):
        if (cache_dir / "global.db").exists():
            break
    else:
        return {}
    from jupyter_cache import get_cache

    out = {}
    for record in get_cache(str(cache_dir)).list_cache_records():
        uri = Path(record.uri)
        try:
            doc = str(uri.relative_to(ROOT).with_suffix(""))
        except ValueError:
            doc = str(uri.with_suffix(""))
        out[doc] = {"seconds": (record.data or {}).get("execution_seconds"), "method": "cache record",
                    "succeeded": True, "when": record.created.isoformat(timespec="seconds")}
    return out


def chapter_times(build: Path) -> dict[str, dict]:
    """Per-notebook execution records of the build in ``build`` (environment first, cache as fallback)."""
    times = from_cache(build)
    times.update(from_environment(build))
    return dict(sorted(times.items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("build", nargs="?", default="_build", help="build folder (default _build)")
    parser.add_argument("--limit", type=float, default=60.0, help="flag chapters slower than this (s)")
    parser.add_argument("--json", default=None, help="also write the records to this JSON file")
    args = parser.parse_args(argv)
    build = Path(args.build)
    if not build.is_absolute():
        build = (Path.cwd() / build).resolve()
    times = chapter_times(build)
    if not times:
        print(f"no execution records under {build} (no .doctrees/environment.pickle or .jupyter_cache)")
        return 1
    print(f"notebook execution times of the build in {build}")
    print(f"  {'document':32s} {'seconds':>8s}  {'method':12s} {'ok':3s} executed")
    total = 0.0
    for doc, rec in times.items():
        sec = rec["seconds"]
        total += sec or 0.0
        flag = "  <-- over the limit" if sec is not None and sec > args.limit else ""
        sec_s = "-" if sec is None else f"{sec:8.1f}"
        ok = "yes" if rec["succeeded"] else "NO"
        print(f"  {doc:32s} {sec_s:>8s}  {str(rec['method']):12s} {ok:3s} {rec['when']}{flag}")
    slowest = max(times, key=lambda d: times[d]["seconds"] or 0.0)
    print(f"  total execution {total:.1f} s over {len(times)} notebooks; slowest {slowest} "
          f"({times[slowest]['seconds'] or 0:.1f} s; limit {args.limit:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps({"build": str(build), "notebooks": times, "total_seconds": total},
                                              indent=1))
        print(f"  saved {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
