"""Open every built page in headless Chromium with the network off, as a reader would.

Fails if math is left as raw TeX, a cell output holds a traceback or a bare ``<function ...>``
repr, a widget area is empty, moving a widget control does not change its figure, a page
loads anything from outside the book, the JavaScript console reports an error, an element of
the article is wider than the text column without being inside its own horizontal scroll box
(``overflow-x: auto`` or ``scroll``), or a figure is wider than the column at its natural size
(the browser then shrinks it and its labels with it), or a code block whose lines are all at most
88 characters (the book's rule) does not show them without scrolling. Saves a full-page screenshot of every page
to ``_build/shots/``. Needs the built book (``make book``) and Debian's ``chromium`` and
``chromium-driver``. Each check is proved by a test on a small fixture page built to fail it
(no book build needed for those).
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# MOE_BOOK_HTML points the check at another build (scripts/build_chapter.py builds one chapter).
HTML = Path(os.environ.get("MOE_BOOK_HTML", ROOT / "_build" / "html")).resolve()
SHOTS = HTML.parent / "shots"
SKIP_PAGES = {"genindex.html", "search.html", "index.html", "prf-prf.html"}

pytestmark = pytest.mark.browser

selenium = pytest.importorskip("selenium")
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402


def _pages() -> list[Path]:
    if not HTML.is_dir():
        return []
    return sorted(p for p in HTML.rglob("*.html") if p.name not in SKIP_PAGES and "_static" not in p.parts
                  and "_sources" not in p.parts)


@pytest.fixture(scope="module")
def server():
    if not (HTML / "book" / "intro.html").exists():
        pytest.fail(f"the book is not built in {HTML}: run `make book` (or `make test`) before the browser test")
    handler = functools.partial(_QuietHandler, directory=str(HTML))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_bin = shutil.which("chromedriver")
    if not chromium or not driver_bin:
        pytest.fail("headless Chromium is needed: apt-get install chromium chromium-driver (make browser-deps)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1280,1000", "--hide-scrollbars",
                 # network off: every request but those to the book server (127.0.0.1) goes to a dead proxy
                 "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=127.0.0.1"):
        opts.add_argument(flag)
    # Console messages (errors, uncaught exceptions, SyntaxErrors) are read with get_log("browser").
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(options=opts, service=Service(driver_bin))
    drv.set_page_load_timeout(60)
    drv.set_script_timeout(60)
    yield drv
    drv.quit()


WAIT_MATHJAX = """
const done = arguments[arguments.length - 1];
if (!window.MathJax || !MathJax.startup) { done('no-mathjax'); return; }
MathJax.startup.promise.then(() => done('ok')).catch(e => done('error: ' + e));
"""

INSPECT = r"""
const article = document.querySelector('article') || document.body;
const out = {};
out.unrendered = Array.from(document.querySelectorAll('span.math, div.math'))
    .filter(el => !el.querySelector('mjx-container')).map(el => el.textContent.slice(0, 80));
out.mathErrors = Array.from(document.querySelectorAll('mjx-merror')).map(el => el.textContent.slice(0, 80));
const clone = article.cloneNode(true);
clone.querySelectorAll('mjx-container, pre, code, script, style, .highlight').forEach(el => el.remove());
const text = clone.innerText;
out.rawTex = (text.match(/\$\$|\\\(|\\\)|\\\[|\\\]|\\begin\{|\\frac|\\mathbb|\\sum_|(^|[^\w$])\$[^$\n]{1,40}\$/g) || []);
out.outputs = Array.from(document.querySelectorAll('.cell_output')).map(el => el.innerText);
out.widgets = Array.from(document.querySelectorAll('.moe-explore')).map(el => {
  const img = el.querySelector('img.moe-explore-figure');
  return {controls: el.querySelectorAll('[data-param]').length,
          imgOk: !!img && img.complete && img.naturalWidth > 0 && img.naturalHeight > 0};
});
out.emptyWidgets = Array.from(document.querySelectorAll('.jupyter-widgets, .widget-subarea, .output_widget_view'))
    .filter(el => el.innerText.trim() === '' && !el.querySelector('img, canvas, svg')).length;
out.external = performance.getEntriesByType('resource').map(e => e.name)
    .filter(n => !n.startsWith(location.origin) && !n.startsWith('data:'));
out.height = document.documentElement.scrollHeight;
return out;
"""

#: The text column: the article's content box. Everything in it must fit that width, unless it sits
#: inside a box that scrolls horizontally by itself and fits (a wide table in ``moe-table-scroll``,
#: a long code line in a ``pre`` with ``overflow-x: auto``). Margin notes and full-width blocks of
#: the theme are made to leave the column and are skipped. Only the outermost offender is reported.
MEASURE_WIDTH = r"""
const TOL = 2;
const article = document.querySelector('article.bd-article') || document.querySelector('article')
    || document.querySelector('main') || document.body;
const a = article.getBoundingClientRect(), cs = getComputedStyle(article);
const left = a.left + parseFloat(cs.paddingLeft), right = a.right - parseFloat(cs.paddingRight);
const column = right - left;
const ALLOWED = '.margin, aside.sidebar, .sidebar, .full-width, .tag_margin, .tag_full-width, '
    + 'mjx-assistive-mml, .MJX_Assistive_MathML, script, style, template';
function describe(el) {
  let d = el.tagName.toLowerCase();
  if (el.id) d += '#' + el.id;
  if (el.classList.length) d += '.' + Array.from(el.classList).slice(0, 3).join('.');
  let sec = el.closest('section[id]');
  const txt = (el.innerText || el.getAttribute('alt') || el.getAttribute('src') || '')
      .replace(/\s+/g, ' ').trim().slice(0, 60);
  return d + (sec ? ' in section #' + sec.id : '') + (txt ? ' "' + txt + '"' : '');
}
function scrolls(el) {
  const ox = getComputedStyle(el).overflowX;
  return ox === 'auto' || ox === 'scroll';
}
// The right edge of what an element shows: its box, or, when its own text runs out of a box that
// does not clip or scroll (overflow: visible), the end of that text. Only elements with text of
// their own are measured so: overflow of a descendant is reported on the descendant.
function contentRight(el, r, st) {
  if (st.overflowX !== 'visible' || el.clientWidth === 0 || el.scrollWidth <= el.clientWidth + TOL) return r.right;
  const ownText = Array.from(el.childNodes).some(n => n.nodeType === 3 && n.textContent.trim() !== '');
  return ownText ? r.left + el.clientLeft + el.scrollWidth : r.right;
}
const wide = [], reported = new Set();
for (const el of article.querySelectorAll('*')) {
  if (el.closest(ALLOWED)) continue;
  const st = getComputedStyle(el);
  if (st.position === 'fixed' || st.display === 'none' || st.visibility === 'hidden') continue;
  const r = el.getBoundingClientRect();
  if (r.width === 0 || r.height === 0) continue;
  const end = contentRight(el, r, st);
  if (end <= right + TOL && r.left >= left - TOL) continue;
  // Inside a horizontal scroll box that itself fits the column: the reader scrolls that box only.
  let inScroll = false;
  for (let p = el.parentElement; p && p !== article; p = p.parentElement) {
    if (scrolls(p)) {
      const pr = p.getBoundingClientRect();
      if (pr.right <= right + TOL && pr.left >= left - TOL) { inScroll = true; break; }
    }
  }
  if (inScroll) continue;
  let ancestorReported = false;
  for (let p = el.parentElement; p && p !== article; p = p.parentElement)
    if (reported.has(p)) { ancestorReported = true; break; }
  if (ancestorReported) continue;
  reported.add(el);
  wide.push(describe(el) + ': ' + Math.round(end - r.left) + ' px wide, ends ' +
            Math.round(end - right) + ' px right of the column');
}
// Figures: wider than the column at their natural size means the browser shrinks them (and
// every label in them); at the book's 100 dpi the limit of about 6.5 in is the column.
const figures = [];
const dpr = window.devicePixelRatio || 1;
for (const img of article.querySelectorAll('img')) {
  if (img.closest(ALLOWED) || !img.complete || img.naturalWidth === 0) continue;
  if (img.naturalWidth / dpr > column + TOL)
    figures.push(describe(img) + ': ' + img.naturalWidth + ' px wide at natural size, column ' +
                 Math.round(column) + ' px');
}
return {column: column, wide: wide, figures: figures};
"""

#: Code fits the column at the book's code font size: a code block (cell input, listing or output)
#: whose lines are all at most ``MAX_CODE_WIDTH`` characters (the book's rule, enforced on the
#: sources by tests/test_book_code_width.py) must show them without scrolling; a block with longer
#: lines (a library listing) may scroll, inside its own box only (checked by MEASURE_WIDTH).
MAX_CODE_WIDTH = 88
MEASURE_CODE = r"""
const MAX = arguments[0], TOL = 2;
const article = document.querySelector('article.bd-article') || document.querySelector('article')
    || document.querySelector('main') || document.body;
const out = [];
for (const pre of article.querySelectorAll('div.highlight pre, .cell_output pre')) {
  if (pre.clientWidth === 0) continue;
  const lines = pre.textContent.replace(/\n$/, '').split('\n');
  const longest = Math.max(0, ...lines.map(l => l.length));
  if (longest <= MAX && pre.scrollWidth > pre.clientWidth + TOL) {
    const sec = pre.closest('section[id]');
    out.push('a code block of ' + longest + '-character lines' + (sec ? ' in section #' + sec.id : '')
             + ' scrolls: ' + pre.scrollWidth + ' px of text in a ' + pre.clientWidth + '-px box ("'
             + pre.textContent.trim().slice(0, 50).replace(/\s+/g, ' ') + '")');
  }
}
return out;
"""

MOVE_CONTROLS = r"""
const results = [];
document.querySelectorAll('.moe-explore').forEach((root, w) => {
  const img = root.querySelector('img.moe-explore-figure');
  root.querySelectorAll('[data-param]').forEach(el => {
    const n = el.tagName === 'SELECT' ? el.options.length : parseInt(el.max, 10) + 1;
    if (n < 2) return;
    const before = img.src, frameBefore = root.getAttribute('data-frame');
    const old = el.value;
    el.value = String((parseInt(old, 10) + 1) % n);
    el.dispatchEvent(new Event('input', {bubbles: true}));
    el.dispatchEvent(new Event('change', {bubbles: true}));
    results.push({widget: w, param: el.getAttribute('data-param'),
                  changed: img.src !== before && root.getAttribute('data-frame') !== frameBefore});
    el.value = old;
    el.dispatchEvent(new Event('input', {bubbles: true}));
  });
});
return results;
"""


def _console_errors(browser) -> list[str]:
    """Errors the page wrote to the JavaScript console since the last call (read and cleared).

    Chromium asks every site for ``/favicon.ico`` by itself; the book has none, and that 404 is
    not the page's doing. Any other failed request (a missing image or script) counts.
    """
    return [e["message"] for e in browser.get_log("browser")
            if e.get("level") == "SEVERE" and "/favicon.ico" not in e["message"]]


def _check_page(browser, server, page: Path, root: Path = HTML) -> list[str]:
    rel = page.relative_to(root).as_posix()
    browser.set_window_size(1280, 1000)
    _console_errors(browser)  # drop what an earlier page left
    browser.get(f"{server}/{rel}")
    problems = []
    status = browser.execute_async_script(WAIT_MATHJAX)
    report = browser.execute_script(INSPECT)
    has_math = "class=\"math" in page.read_text(errors="ignore")
    if has_math and status != "ok":
        problems.append(f"MathJax did not start ({status})")
    if report["unrendered"]:
        problems.append(f"math left unrendered: {report['unrendered'][:3]}")
    if report["mathErrors"]:
        problems.append(f"TeX errors: {report['mathErrors'][:3]}")
    if report["rawTex"]:
        problems.append(f"raw TeX in the text: {report['rawTex'][:5]}")
    for text in report["outputs"]:
        if "Traceback (most recent call last)" in text or re.search(r"\w*Error: ", text):
            problems.append(f"a cell output holds an error: {text[:200]!r}")
        if re.search(r"<(function|bound method|module|built-in function) [^>]*>", text) or \
                re.search(r"<[\w.]+ object at 0x[0-9a-f]+>", text):
            problems.append(f"a cell output is a bare repr: {text[:200]!r}")
    for i, w in enumerate(report["widgets"]):
        if not w["imgOk"] or w["controls"] == 0:
            problems.append(f"widget {i} is empty (controls={w['controls']}, image ok={w['imgOk']})")
    if report["emptyWidgets"]:
        problems.append(f"{report['emptyWidgets']} empty ipywidgets area(s)")
    for move in browser.execute_script(MOVE_CONTROLS):
        if not move["changed"]:
            problems.append(f"moving control {move['param']!r} of widget {move['widget']} did not change its figure")
    if report["external"]:
        problems.append(f"loaded from outside the book: {report['external'][:3]}")
    width = browser.execute_script(MEASURE_WIDTH)
    for item in width["wide"][:8]:
        problems.append(f"wider than the {width['column']:.0f}-px text column and not in a scroll box: {item}")
    for item in width["figures"][:8]:
        problems.append(f"figure wider than the text column: {item}")
    for item in browser.execute_script(MEASURE_CODE, MAX_CODE_WIDTH)[:8]:
        problems.append(f"code of at most {MAX_CODE_WIDTH} characters a line does not fit the column: {item}")
    for message in _console_errors(browser)[:5]:
        problems.append(f"JavaScript console error: {message[:300]}")
    _screenshot(browser, rel, int(report["height"]), root)
    return problems


#: Chromium cannot capture a window much taller than this; longer pages are shot in parts.
SHOT_HEIGHT = 12000


def _screenshot(browser, rel: str, height: int, root: Path = HTML) -> None:
    """Full-page screenshot(s): ``<page>.png``, and ``<page>.2.png``, ... for pages taller than SHOT_HEIGHT."""
    shots = root.parent / "shots"
    shots.mkdir(parents=True, exist_ok=True)
    stem = rel.replace("/", "__").removesuffix(".html")
    browser.set_window_size(1280, min(height, SHOT_HEIGHT))
    for part, top in enumerate(range(0, height, SHOT_HEIGHT), start=1):
        browser.execute_script("window.scrollTo(0, arguments[0]);", top)
        name = f"{stem}.png" if part == 1 else f"{stem}.{part}.png"
        browser.save_screenshot(str(shots / name))


def test_every_page_renders_math_outputs_and_widgets_offline(browser, server):
    pages = _pages()
    assert len(pages) >= 3, f"expected the built book's pages under {HTML}, found {len(pages)}"
    failures = {}
    for page in pages:
        problems = _check_page(browser, server, page)
        if problems:
            failures[page.relative_to(HTML).as_posix()] = problems
    assert not failures, "\n".join(f"{p}:\n  " + "\n  ".join(v) for p, v in failures.items())
    assert len(list(SHOTS.glob("*.png"))) >= len(pages)


def test_primer_widget_moves_in_the_static_page(browser, server):
    primer = HTML / "book" / "primer.html"
    # Only a one-chapter build (MOE_BOOK_HTML set by scripts/build_chapter.py) may leave the primer
    # unexecuted; in the full build a primer without its widget fails below.
    if os.environ.get("MOE_BOOK_HTML") and "moe-explore" not in primer.read_text(errors="ignore"):
        pytest.skip("the primer was not executed in this build (scripts/build_chapter.py of another chapter)")
    browser.get(f"{server}/book/primer.html")
    browser.execute_async_script(WAIT_MATHJAX)
    moves = browser.execute_script(MOVE_CONTROLS)
    assert moves, "the primer has no widget control to move"
    assert all(m["changed"] for m in moves), moves


# --- The checker's own tests: small fixture pages, each built to fail one check (no book build) ---

def _png(width: int, height: int) -> bytes:
    """A blank grey PNG of the given size (a stand-in for a matplotlib figure)."""
    import struct
    import zlib

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))
    raw = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


#: The theme's layout in miniature: a 650-px text column in a wider page.
FIXTURE = """<!DOCTYPE html><html><head><meta charset="utf-8"><style>
body {{ margin: 0; font: 16px sans-serif; }}
main {{ width: 1000px; }}
article.bd-article {{ width: 650px; padding: 0 20px; box-sizing: content-box; }}
.moe-table-scroll {{ overflow-x: auto; max-width: 100%; }}
img {{ max-width: 100%; }}
</style>{head}</head><body><main><article class="bd-article"><section id="fixture">
<h1>Fixture</h1><p>Some text.</p>{body}</section></article></main></body></html>"""


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args, **kwargs):
        pass


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    """A folder of fixture pages served on its own port: ``(url, root)``."""
    root = tmp_path_factory.mktemp("browser_fixtures") / "html"
    root.mkdir()
    (root / "small.png").write_bytes(_png(600, 40))
    (root / "big.png").write_bytes(_png(1300, 40))
    handler = functools.partial(_QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    httpd.shutdown()


def _check_fixture(browser, fixtures, name: str, body: str, head: str = "") -> list[str]:
    url, root = fixtures
    page = root / f"{name}.html"
    page.write_text(FIXTURE.format(head=head, body=body))
    return _check_page(browser, url, page, root)


WIDE_TABLE = "<table><tr>" + "".join(f"<td>column&nbsp;number&nbsp;{i}</td>" for i in range(12)) + "</tr></table>"
LONG_LINE = "x = " + " + ".join(f"term_{i}" for i in range(40))


def test_browser_check_passes_a_page_that_fits(browser, fixtures):
    """No false alarms: wide content inside its own scroll box, a fitting figure, a margin note."""
    problems = _check_fixture(browser, fixtures, "good", f"""
        <div class="moe-table-scroll">{WIDE_TABLE}</div>
        <div class="highlight"><pre style="overflow-x: auto">{LONG_LINE}</pre></div>
        <img src="small.png" alt="a figure that fits">
        <div class="margin" style="position: relative; left: 500px; width: 300px">a margin note</div>
        <script>const THEBE_JS_URL = "local.js";</script>""")
    assert problems == []


def test_browser_check_catches_console_errors(browser, fixtures):
    """A constant declared by two scripts (as THEBE_JS_URL once was) and an uncaught exception."""
    problems = _check_fixture(browser, fixtures, "console", "<p>Looks fine.</p>", head="""
        <script>const THEBE_JS_URL = "a.js";</script>
        <script>const THEBE_JS_URL = "b.js";</script>
        <script>document.querySelector('#missing').click();</script>""")
    errors = [p for p in problems if p.startswith("JavaScript console error")]
    assert len(errors) == 2, problems
    assert "THEBE_JS_URL" in errors[0] and "already been declared" in errors[0]
    assert "null" in errors[1]
    missing = _check_fixture(browser, fixtures, "missing", "<img src='no-such-figure.png' alt='x'>")
    assert any("no-such-figure.png" in p and "404" in p for p in missing), missing


@pytest.mark.parametrize("name, body, named", [
    ("code", f"<div class='highlight'><pre style='overflow: visible'>{LONG_LINE}</pre></div>", "pre"),
    ("table", WIDE_TABLE, "table"),
    ("math", "<div class='math' style='width: 900px'>a display formula</div>", "div.math"),
    ("clipped", f"<div style='overflow: hidden; width: 900px'><pre>{LONG_LINE}</pre></div>", "div"),
    ("clipped-text", f"<div style='overflow: hidden'><pre>{LONG_LINE}</pre></div>", "pre"),
    ("scrollbox-too-wide", f"<div style='overflow-x: auto; width: 900px'>{WIDE_TABLE}</div>", "div"),
    ("image", "<img src='small.png' style='width: 900px; max-width: none' alt='stretched'>", "img"),
])
def test_browser_check_catches_elements_wider_than_the_column(browser, fixtures, name, body, named):
    """Code, tables, display math and images wider than the column, outside a scroll box that fits."""
    problems = _check_fixture(browser, fixtures, f"wide-{name}", body)
    wide = [p for p in problems if p.startswith("wider than the 650-px text column")]
    assert len(wide) == 1, problems  # only the outermost offender, once
    assert f": {named}" in wide[0] and "in section #fixture" in wide[0], wide[0]


def test_browser_check_catches_a_figure_wider_than_the_column(browser, fixtures):
    """A 1300-px figure shown shrunk to the 650-px column (its labels at half size) fails."""
    problems = _check_fixture(browser, fixtures, "figure", "<img src='big.png' alt='too wide'>")
    assert problems == ["figure wider than the text column: img in section #fixture \"too wide\": "
                        "1300 px wide at natural size, column 650 px"], problems


def test_browser_check_detects_raw_tex_and_bare_reprs(browser, fixtures):
    """The checker itself can fail: a page with raw TeX, a bare repr and an empty widget is caught."""
    problems = " | ".join(_check_fixture(browser, fixtures, "selftest",
        "<p>Raw $x^2$ and \\(y\\)</p>"
        "<span class='math notranslate'>\\(z\\)</span>"
        "<div class='cell_output'><pre>&lt;function f at 0x7f00&gt;</pre></div>"
        "<div class='moe-explore'><img class='moe-explore-figure' src=''></div>"))
    assert "raw TeX" in problems and "bare repr" in problems and "widget 0 is empty" in problems
    assert "math left unrendered" in problems


LINE_88 = "x = " + "1 + " * 20 + "1000"  # 88 characters
BOOK_CSS = ROOT / "_static" / "moe.css"


def test_browser_check_catches_88_character_code_that_scrolls(browser, fixtures):
    """Without the book's code rule, an 88-character line at the theme's 16-px monospace scrolls."""
    assert len(LINE_88) == MAX_CODE_WIDTH
    problems = _check_fixture(browser, fixtures, "code-88-scrolls",
                              f"<div class='highlight'><pre style='overflow-x: auto'>{LINE_88}</pre></div>")
    assert len(problems) == 1 and problems[0].startswith(
        "code of at most 88 characters a line does not fit the column: a code block of 88-character lines"
        " in section #fixture scrolls"), problems
    # a longer line (a library listing) may scroll in its own box: not this check's business
    assert _check_fixture(browser, fixtures, "code-89-scrolls",
                          f"<div class='highlight'><pre style='overflow-x: auto'>{LINE_88}x</pre></div>") == []


def test_book_css_fits_88_characters_in_the_column(browser, fixtures):
    """The rule in _static/moe.css makes the same 88-character line fit the 650-px column."""
    problems = _check_fixture(browser, fixtures, "code-88-fits",
                              f"<div class='highlight'><pre>{LINE_88}</pre></div>"
                              f"<div class='cell_output'><pre>{LINE_88}</pre></div>",
                              head=f"<style>{BOOK_CSS.read_text()}</style>")
    assert problems == []
