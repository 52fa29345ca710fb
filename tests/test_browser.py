"""The built HTML book works offline, checked in headless Chromium.

The book is built into a temporary folder and served on 127.0.0.1. Chromium opens
every page of the table of contents with all traffic to other hosts blocked, and
each page must load without console or page errors, typeset its math, show its
sphinx-proof and sphinx-exercise blocks (worked solutions hidden until opened), load
its images, render its saved widgets and link only to pages that exist; its outputs
show no absolute path of the machine and never scroll sideways; in the light and the dark
theme the outputs' tables and text are legible (contrast at least 3) and no figure is
transparent on a dark background. The search page must find "ELBO". Full-page PNGs of
every page in both themes (<page>.light.png, <page>.dark.png) are saved to
$BROWSER_SCREENSHOTS, or else to _build/screenshots/ in the checkout.

Needs Debian's Chromium (`.ci/install-browser.sh`, or
`apt-get install chromium chromium-driver`) and the `playwright` Python package;
never run `playwright install`. Without Chromium the browser tests fail unless
MOPOE_SKIP_BROWSER=1 is set. MOPOE_BOOK_TOC=path/to/_toc.yml builds and checks
another table of contents (paths in it are relative to the repository root).
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import threading
import urllib.error
import urllib.request
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urldefrag, urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
TOC = Path(os.environ.get("MOPOE_BOOK_TOC") or ROOT / "_toc.yml").resolve()
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
INSTALL_HINT = (
    "the browser tests need Debian's Chromium: run `.ci/install-browser.sh` (as root), i.e. "
    "`apt-get install -y --no-install-recommends chromium chromium-driver`, and "
    "`pip install playwright` (never `playwright install`); "
    "set MOPOE_SKIP_BROWSER=1 to skip them explicitly"
)
SERVER_LIFETIME_S = 900  # the test server shuts itself down after this, whatever happens
PAGE_TIMEOUT_MS = 30_000
PROOF_DIRECTIVE = re.compile(r"^\s*(?::{3,}|`{3,})\{prf:(\w+)\}", re.MULTILINE)
EXERCISE_DIRECTIVE = re.compile(r"^\s*(?::{3,}|`{3,})\{(exercise|solution)\}", re.MULTILINE)
LOADED_TAGS = ("script", "link", "img", "iframe", "source", "video", "audio", "embed")
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def _toc_files(toc_path: Path) -> list[str]:
    """Document names (no suffix) of a jb-book table of contents, in reading order."""
    toc = yaml.safe_load(toc_path.read_text())
    files = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                files.append(entry["file"])
            elif "glob" in entry:
                matches = sorted(p for p in ROOT.glob(entry["glob"] + ".*") if p.is_file())
                files.extend(str(p.relative_to(ROOT).with_suffix("")) for p in matches)
            for key in ("parts", "chapters", "sections"):
                walk(entry.get(key))

    walk([toc])
    return [re.sub(r"\.(md|ipynb|rst)$", "", f) for f in files]


PAGES = _toc_files(TOC)


def _source_of(docname: str, root: Path = ROOT) -> str:
    """The markdown text of a page's source (.md or the markdown cells of an .ipynb)."""
    for suffix in (".md", ".ipynb", ".rst"):
        path = root / (docname + suffix)
        if path.exists():
            if suffix != ".ipynb":
                return path.read_text()
            cells = json.loads(path.read_text())["cells"]
            return "\n".join(
                "".join(c["source"]) if isinstance(c["source"], list) else c["source"]
                for c in cells
                if c["cell_type"] == "markdown"
            )
    raise FileNotFoundError(f"no source for {docname} listed in {TOC}")


class _Tags(HTMLParser):
    """Collects the start tags of an HTML page and the bodies of its <script> tags."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.scripts: list[tuple[dict[str, str], str]] = []
        self._script: dict[str, str] | None = None
        self._body: list[str] = []

    def handle_starttag(self, tag, attrs):
        attributes = {k: v or "" for k, v in attrs}
        self.tags.append((tag, attributes))
        if tag == "script":
            self._script, self._body = attributes, []

    def handle_data(self, data):
        if self._script is not None:
            self._body.append(data)

    def handle_endtag(self, tag):
        if tag == "script" and self._script is not None:
            self.scripts.append((self._script, "".join(self._body)))
            self._script = None


def _parse(html: str) -> _Tags:
    parser = _Tags()
    parser.feed(html)
    return parser


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def site(book_html):
    """Serve the built book on 127.0.0.1 on a free port; yields the base URL."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(book_html))
    handler.log_message = lambda *args: None  # keep pytest's output clean
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    watchdog = threading.Timer(SERVER_LIFETIME_S, server.shutdown)
    watchdog.daemon = True
    watchdog.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    watchdog.cancel()
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


@pytest.fixture(scope="session")
def chromium():
    """Headless Debian Chromium driven by Playwright (never a downloaded browser)."""
    if os.environ.get("MOPOE_SKIP_BROWSER") == "1":
        pytest.skip("MOPOE_SKIP_BROWSER=1: browser checks skipped on request")
    executable = os.environ.get("CHROMIUM") or shutil.which("chromium")
    if not executable or not os.access(executable, os.X_OK):
        pytest.fail(
            f"Chromium not found ({executable or 'chromium'}): {INSTALL_HINT}", pytrace=False
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(f"the playwright package is missing: {INSTALL_HINT}", pytrace=False)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def screenshot_dir() -> Path:
    path = Path(os.environ.get("BROWSER_SCREENSHOTS") or ROOT / "_build" / "screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


class _Visit:
    """A page opened in a fresh browser context that records everything that went wrong."""

    def __init__(self, browser, base_url: str):
        self.base = base_url
        self.problems: list[str] = []
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.context.route("**/*", self._only_local)
        self.page = self.context.new_page()
        self.page.set_default_timeout(PAGE_TIMEOUT_MS)
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda err: self.problems.append(f"page error: {err}"))
        self.page.on("response", self._response)

    def _only_local(self, route):
        url = route.request.url
        if url.startswith(self.base) or urlsplit(url).scheme in ("data", "blob", "about"):
            route.continue_()
        else:
            self.problems.append(f"blocked request to another host: {url}")
            route.abort()

    def _console(self, message):
        if message.type == "error":
            self.problems.append(f"console error: {message.text} ({message.location})")

    def _response(self, response):
        if response.status >= 400:
            self.problems.append(f"HTTP {response.status}: {response.url}")

    def close(self):
        self.context.close()


@pytest.fixture
def visit(chromium, site):
    visits = []

    def open_page(path: str) -> _Visit:
        v = _Visit(chromium, site)
        visits.append(v)
        v.page.goto(site + path, wait_until="load")
        return v

    yield open_page
    for v in visits:
        v.close()


# --------------------------------------------------------------------------- static HTML


def _html_pages(html_dir: Path) -> list[Path]:
    return sorted(p for p in html_dir.rglob("*.html") if "_static" not in p.parts)


@pytest.mark.slow
def test_pages_reference_no_other_host(book_html):
    """No <script src>, <link href>, <img src>... points off the site (CDNs, fonts)."""
    offenders = []
    for page in _html_pages(book_html):
        for tag, attrs in _parse(page.read_text()).tags:
            for attribute in ("src", "href") if tag in LOADED_TAGS else ():
                url = attrs.get(attribute, "")
                if re.match(r"^(https?:)?//", url):
                    offenders.append(f"{page.relative_to(book_html)}: <{tag} {attribute}={url}>")
    assert not offenders, "\n".join(offenders)


@pytest.mark.slow
def test_vendored_assets_are_in_the_build(book_html):
    static = book_html / "_static"
    for asset in (
        "vendor/mathjax/es5/tex-chtml-full.js",
        "vendor/mathjax/es5/output/chtml/fonts/woff-v2/MathJax_Main-Regular.woff",
        "vendor/requirejs/require.js",
        "vendor/html-manager/embed-amd.js",
        "widgets-offline.js",
    ):
        assert (static / asset).is_file(), asset


@pytest.mark.slow
@pytest.mark.parametrize("docname", PAGES)
def test_header_buttons_work_offline(book_html, book_source, docname):
    """Download buttons only: no launch (Binder, Colab, JupyterHub, Thebe), no repository,
    issue or edit buttons."""
    html = (book_html / f"{docname}.html").read_text()
    suffix = next(s for s in (".ipynb", ".md", ".rst") if (book_source / (docname + s)).exists())
    assert "dropdown-download-buttons" in html
    assert f'href="{"../" * docname.count("/")}_sources/{docname}{suffix}"' in html
    for button in (
        "launch-buttons",
        "btn-launch-binder",
        "btn-launch-colab",
        "btn-launch-jupyterhub",
        "btn-launch-thebe",
        "btn-source-repository-button",
        "btn-source-issues-button",
        "btn-source-edit-button",
    ):
        assert button not in html, f"{docname}: {button}"


# --------------------------------------------------------------------------- browser

# in-page waits give up after this many ms (page.evaluate itself has no timeout)
_GIVE_UP = """new Promise(done => setTimeout(() => done(false), 20000))"""
_WAIT_FOR_MATHJAX = f"""() => (window.MathJax && MathJax.startup && MathJax.startup.promise)
    ? Promise.race([MathJax.startup.promise.then(() => true), {_GIVE_UP}]) : false"""
_RAW_TEX = r"""() => {
    const copy = (document.querySelector('article') || document.body).cloneNode(true);
    copy.querySelectorAll('pre, code, script, style, textarea, mjx-container')
        .forEach(el => el.remove());
    const hit = copy.textContent.match(
        /(\$\$|\\\(|\\\[|\\begin\{|\\(mathcal|mathbb|mathrm|frac|sum|prod|left|right|mid)\b)[^]{0,60}/);
    return hit && hit[0].replace(/\s+/g, " ");
}"""
_IMAGES = f"""() => Promise.race([Promise.all(Array.from(document.images).map(img =>
    img.complete ? null : new Promise(done => {{ img.onload = img.onerror = done; }}))),
    {_GIVE_UP}]).then(() =>
    Array.from(document.images).map(img => [img.getAttribute('src'), img.naturalWidth]))"""
_EXERCISES = """() => {
    const body = el => Array.from(el.children).filter(c => !c.classList.contains('admonition-title'));
    const blocks = kind => Array.from(document.querySelectorAll('div.' + kind)).map(el => ({
        visible: el.offsetHeight > 0,
        hidden: el.classList.contains('toggle-hidden') && body(el).every(c => c.offsetHeight === 0),
    }));
    return {exercise: blocks('exercise'), solution: blocks('solution')};
}"""
_FIRST_SOLUTION_OPEN = """() => new Promise(done => setTimeout(() => {
    const el = document.querySelector('div.solution');
    done(Array.from(el.children).some(c => !c.classList.contains('admonition-title') && c.offsetHeight > 0));
}, 500))"""
_SIDEBAR = """() => Array.from(document.querySelectorAll('.bd-sidebar-primary a[href]'))
    .map(a => a.href)"""
_LINKS = """() => Array.from(document.querySelectorAll(
    '.bd-sidebar-primary a[href], .bd-toc a[href], .prev-next-area a[href], article a[href]'
)).map(a => a.href)"""


# outputs: text with an absolute path of this machine, and boxes that scroll sideways
_OUTPUT_TEXT = """() => Array.from(document.querySelectorAll('article .cell_output'))
    .map(el => el.textContent).join('\\n')"""
_SIDEWAYS = """() => Array.from(document.querySelectorAll('article .cell_output, article .cell_output *'))
    .filter(el => ['auto', 'scroll'].includes(getComputedStyle(el).overflowX)
                  && el.scrollWidth > el.clientWidth + 1)
    .map(el => el.tagName.toLowerCase() + '.' + el.className + ': ' + el.scrollWidth + ' > '
               + el.clientWidth)"""
# legibility in the current theme: text of outputs against the colour behind it (WCAG
# contrast >= 3), and figures with transparent pixels on a transparent background
_ILLEGIBLE = """() => {
    const rgba = s => (s.match(/[\\d.]+/g) || []).map(Number);
    const behind = el => {
        for (let e = el; e; e = e.parentElement) {
            const c = rgba(getComputedStyle(e).backgroundColor);
            if (c.length >= 3 && (c.length < 4 || c[3] > 0.5)) return c;
        }
        return rgba(getComputedStyle(document.body).backgroundColor || 'rgb(255,255,255)');
    };
    const lum = c => {
        const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
        return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]);
    };
    const contrast = (a, b) => (Math.max(lum(a), lum(b)) + 0.05) / (Math.min(lum(a), lum(b)) + 0.05);
    const bad = [];
    document.querySelectorAll('article .cell_output td, article .cell_output th, '
                              + 'article .cell_output caption, article .cell_output pre').forEach(el => {
        if (!el.textContent.trim() || el.offsetHeight === 0) return;
        const r = contrast(rgba(getComputedStyle(el).color), behind(el));
        if (r < 3) bad.push(`text "${el.textContent.trim().slice(0, 30)}" at contrast ${r.toFixed(2)}`);
    });
    document.querySelectorAll('article .cell_output img').forEach(img => {
        if (!img.naturalWidth) return;
        const canvas = document.createElement('canvas');
        canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
        const ctx = canvas.getContext('2d');
        ctx.drawImage(img, 0, 0);
        const corner = ctx.getImageData(0, 0, 1, 1).data;
        const bg = behind(img);
        if (corner[3] < 255 && lum(bg) < 0.5)
            bad.push(`figure ${img.getAttribute('src').slice(0, 40)} is transparent on a dark background`);
    });
    return bad;
}"""
ABSOLUTE_PATH = re.compile(r"(?<![\w.~:/…-])/(?:tmp|home|root|work|Users|mnt|var)/[\w.+@-]+")


def _check_links(links: list[str], base: str, cache: dict) -> list[str]:
    """Every same-site link answers 200 and its #fragment exists on the target page."""
    broken = []
    for link in links:
        if not link.startswith(base):
            continue  # external references (DOIs, arXiv) are not followed offline
        target, fragment = urldefrag(link)
        if target not in cache:
            try:
                with urllib.request.urlopen(target, timeout=10) as response:
                    body = response.read()
                cache[target] = body.decode("utf8", "replace") if target.endswith(".html") else ""
            except urllib.error.URLError as err:
                cache[target] = None
                broken.append(f"{link} ({err})")
                continue
        html = cache[target]
        if html is None:
            continue
        if fragment and html and not re.search(rf"""id=["']{re.escape(fragment)}["']""", html):
            broken.append(f"{link}: no element with id {fragment!r}")
    return broken


@pytest.mark.slow
@pytest.mark.parametrize("docname", PAGES)
def test_page_renders_offline(visit, book_html, book_source, screenshot_dir, site, docname):
    html = (book_html / f"{docname}.html").read_text()
    parsed = _parse(html)
    v = visit(f"{docname}.html")
    page = v.page
    checks: list[str] = []

    # math: every Sphinx math node becomes a MathJax container, without TeX errors
    n_math = len(re.findall(r'class="math notranslate', html))
    if n_math:
        if not page.evaluate(_WAIT_FOR_MATHJAX):
            checks.append("MathJax did not start")
        else:
            n_typeset = page.locator("mjx-container").count()
            if n_typeset < n_math:
                checks.append(f"{n_typeset} typeset formulas for {n_math} math nodes")
            if page.locator("mjx-merror").count():
                checks.append(f"TeX errors: {page.locator('mjx-merror').all_inner_texts()}")

    # no TeX is left as text (e.g. a $$ block that markdown did not parse as math)
    raw_tex = page.evaluate(_RAW_TEX)
    if raw_tex:
        checks.append(f"untypeset TeX in the text: {raw_tex!r}")

    # sphinx-proof blocks: as many rendered as the source declares, of each kind
    source = _source_of(docname, book_source)
    for kind in set(PROOF_DIRECTIVE.findall(source)):
        declared = len(re.findall(rf"\{{prf:{kind}\}}", source))
        shown = page.evaluate(
            # lemmas are `proof lemma admonition`, proofs plain `proof admonition`
            """kind => Array.from(document.querySelectorAll('div.proof')).filter(el => {
                const c = el.getAttribute('class').split(/\\s+/);
                return (c[1] === 'admonition' ? 'proof' : c[1]) === kind && el.offsetHeight > 0;
            }).length""",
            kind,
        )
        if shown < declared:
            checks.append(f"{shown} visible prf:{kind} blocks, the source has {declared}")

    # sphinx-exercise blocks: every exercise shown; every solution there, hidden by default
    # (sphinx-togglebutton's dropdown) and shown when its title is clicked
    kinds = EXERCISE_DIRECTIVE.findall(source)
    if kinds:
        blocks = page.evaluate(_EXERCISES)
        n_ex, n_sol = kinds.count("exercise"), kinds.count("solution")
        shown = sum(b["visible"] for b in blocks["exercise"])
        if shown < n_ex:
            checks.append(f"{shown} visible exercise blocks, the source has {n_ex}")
        if len(blocks["solution"]) < n_sol:
            checks.append(f"{len(blocks['solution'])} solution blocks, the source has {n_sol}")
        if any(not b["hidden"] for b in blocks["solution"]):
            checks.append("a worked solution is visible before it is opened")
        if blocks["solution"]:
            page.locator("div.solution > .admonition-title").first.click()
            if not page.evaluate(_FIRST_SOLUTION_OPEN):
                checks.append("clicking a solution's title does not show it")

    # images: all of them load
    for src, width in page.evaluate(_IMAGES):
        if not width:
            checks.append(f"image did not load: {src}")

    # widgets: every saved view is rendered from the embedded state
    if any(attrs.get("type") == WIDGET_STATE for attrs, _ in parsed.scripts):
        n_views = sum(attrs.get("type") == WIDGET_VIEW for attrs, _ in parsed.scripts)
        try:
            page.wait_for_function(
                "n => document.querySelectorAll('.widget-subarea > .jupyter-widgets').length >= n",
                arg=n_views,
            )
        except Exception as err:  # playwright's TimeoutError
            checks.append(f"{n_views} saved widget views, not all rendered: {err}")
        state = json.loads(
            next(body for attrs, body in parsed.scripts if attrs.get("type") == WIDGET_STATE)
        )["state"]
        shown_text = " ".join(page.locator(".widget-subarea").all_inner_texts())
        for model in state.values():
            s = model["state"]
            if s.get("description") and s["description"] not in shown_text:
                checks.append(f"widget label {s['description']!r} not shown")
            if model["model_name"] == "IntSliderModel" and s.get("readout", True):
                if not page.locator(f'.widget-readout:text-is("{s["value"]}")').count():
                    checks.append(f"slider {s.get('description')!r} does not show {s['value']}")

    # navigation, page contents and cross-references lead to existing pages and anchors
    checks += _check_links(page.evaluate(_LINKS), site, {})

    # every page of the table of contents is in the sidebar
    nav = {urldefrag(h)[0] for h in page.evaluate(_SIDEBAR)}
    missing = [d for d in PAGES if f"{site}{d}.html" not in nav]
    if missing:
        checks.append(f"sidebar lacks {missing}")

    # outputs: paths relative to the repository, nothing scrolls sideways
    shown = page.evaluate(_OUTPUT_TEXT)
    for path in {str(ROOT), str(book_source), *ABSOLUTE_PATH.findall(shown)}:
        if path in shown:
            checks.append(f"an output shows the absolute path {path!r}")
    for box in page.evaluate(_SIDEWAYS):
        checks.append(f"an output scrolls sideways: {box}")

    # a screenshot per theme; figures and tables legible in both
    name = docname.replace("/", "__")
    for theme in ("light", "dark"):
        page.evaluate("t => { document.documentElement.dataset.theme = t; "
                      "document.documentElement.dataset.mode = t; }", theme)  # fmt: skip
        page.wait_for_timeout(100)
        page.screenshot(path=str(screenshot_dir / f"{name}.{theme}.png"), full_page=True)
        checks += [f"{theme} theme: {problem}" for problem in page.evaluate(_ILLEGIBLE)]
    assert not (v.problems + checks), f"{docname}:\n" + "\n".join(v.problems + checks)


@pytest.mark.slow
def test_search_finds_elbo(visit):
    v = visit("search.html")
    box = v.page.locator("#search-results").locator("xpath=..").locator("input[name=q]")
    if not box.count():
        box = v.page.locator("form.bd-search input[name=q]").last
    box.fill("ELBO")
    box.press("Enter")
    v.page.wait_for_url(lambda url: "q=ELBO" in url)
    results = v.page.locator("#search-results ul.search li")
    results.first.wait_for()
    hrefs = [a.get_attribute("href") for a in results.locator("a").all()]
    assert any(h and h.split("#")[0].endswith(".html") for h in hrefs), hrefs
    assert not v.problems, "\n".join(v.problems)
