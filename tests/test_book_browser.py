"""Every page of the built book in a real browser: headless Chromium over loopback HTTP.

A page fails on a same-origin image that did not load (naturalWidth 0), a same-origin link
whose target or #anchor is missing, or a JavaScript error (a SEVERE console entry) coming
from the book's own origin.  The book builds offline, but a page may still ask other
hosts for things (MathJax from its CDN, launch buttons); those fail here without network and
are not the book's fault, so only errors from the local server count.  A screenshot of
every page goes to ``_build/screenshots/`` (``*__figure.png``: the page scrolled to its first
image, where it has one).

Two checks are about reading.  The window is 1280 px wide, and no element of the article may
hold content wider than its own box (a code block, an output or a table that would need
sideways scrolling, or that spills out of its box).  And Chromium resolves no host name
but 127.0.0.1, so the network is off for the page: every formula must still be typeset
(MathJax is part of the built book), leaving no element with raw TeX in it.

Chromium comes from Debian's packages (installed by the fixture when missing); selenium
talks to /usr/bin/chromedriver directly, so selenium-manager never downloads anything.
"""

from __future__ import annotations

import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urldefrag, urlsplit

import pytest
from book_tools import (
    BUILD,
    CHROMEDRIVER,
    CHROMIUM,
    HTML,
    ensure_book_built,
    ensure_chromium,
    html_pages,
    parse_page,
    serve_directory,
    toc_files,
)
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

SCREENSHOTS = BUILD / "screenshots"
EXTRA_PAGES = ["index.html", "genindex.html", "py-modindex.html", "search.html"]
PAGES = [f"{entry}.html" for entry in toc_files()] + EXTRA_PAGES
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--window-size=1280,900",
    # the network is off for the pages: every host name but the book's server fails
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]

# Waits (up to 10 s) for every image to finish loading, then reports the same-origin images
# that have no pixels, and the absolute URL of every link on the page.
INSPECT_PAGE = r"""
const done = arguments[arguments.length - 1];
const images = Array.from(document.images);
images.forEach(img => { img.loading = "eager"; });
const settled = images.map(img => img.complete ? Promise.resolve() :
    new Promise(resolve => { img.onload = img.onerror = resolve; }));
const timeout = new Promise(resolve => setTimeout(resolve, 10000));
const typeset = (window.MathJax && MathJax.startup && MathJax.startup.promise)
    || Promise.resolve();
const describe = el => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "")
    + (el.className && typeof el.className === "string" ? "." + el.className.trim()
        .split(/\s+/).join(".") : "");
// MathJax puts a copy of each formula as MathML beside it for screen readers, positioned
// absolutely and clipped to nothing on purpose; it is left out of the measurement.
const measureClipped = () => {
    const hide = document.createElement("style");
    hide.textContent = "mjx-assistive-mml { display: none !important; }";
    document.head.appendChild(hide);
    const found = Array.from(document.querySelectorAll("article, article *"))
        .filter(el => el.clientWidth > 0 && el.scrollWidth > el.clientWidth + 1)
        .map(el => `${describe(el)} is ${el.scrollWidth} px wide inside ${el.clientWidth} px: `
                   + JSON.stringify(el.innerText.slice(0, 80)));
    hide.remove();
    return found;
};
Promise.race([Promise.all([...settled, typeset]), timeout]).then(() => done({
    clipped: measureClipped(),
    rawTex: Array.from(document.querySelectorAll(".math"))
        .filter(el => el.querySelector("mjx-container") === null)
        .map(el => el.textContent.trim().slice(0, 80)),
    mathCount: document.querySelectorAll(".math mjx-container").length,
    brokenImages: images
        .filter(img => new URL(img.currentSrc || img.src, location.href).origin
                       === location.origin)
        .filter(img => !img.complete || img.naturalWidth === 0)
        .map(img => img.currentSrc || img.src || img.outerHTML),
    imageCount: images.length,
    links: Array.from(document.querySelectorAll("a[href]")).map(a => a.href),
    title: document.title,
    hasIcon: document.querySelector("link[rel~='icon']") !== null,
}));
"""


SCROLL_TO_FIGURE = """
const figure = document.querySelector("article .cell_output img, article figure img");
if (figure) { figure.scrollIntoView({block: "center"}); }
return figure !== null;
"""


@pytest.fixture(scope="module")
def site():
    ensure_book_built()
    with serve_directory(HTML) as base:
        yield base


@pytest.fixture(scope="module")
def browser():
    ensure_chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    with tempfile.TemporaryDirectory(prefix="howto-chromium-") as profile:
        options.add_argument(f"--user-data-dir={profile}")
        driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
        driver.set_page_load_timeout(60)
        driver.set_script_timeout(30)
        try:
            yield driver
        finally:
            driver.quit()


class LinkChecker:
    """Fetches same-origin link targets once each and knows the ids of every page."""

    def __init__(self, base: str, root: Path) -> None:
        self.base = base
        self.root = root
        self.status: dict[str, int] = {}

    def problem(self, url: str) -> str | None:
        page, fragment = urldefrag(url)
        if page not in self.status:
            try:
                with urllib.request.urlopen(page, timeout=10) as response:
                    self.status[page] = response.status
            except urllib.error.HTTPError as error:
                self.status[page] = error.code
        if self.status[page] != 200:
            return f"{url} -> HTTP {self.status[page]}"
        path = urlsplit(page).path
        if fragment and (path.endswith(".html") or path.endswith("/")):
            local = self.root / path.lstrip("/")
            if local.is_dir():
                local = local / "index.html"
            if fragment not in parse_page(local).ids:
                return f"{url} -> no element with id {fragment!r}"
        return None


def check_page(
    driver, base: str, page: str, screenshot: Path | None, root: Path = HTML
) -> list[str]:
    """Open ``base/page`` (``root`` served) and return what is wrong with it (empty: nothing)."""
    driver.get_log("browser")  # forget what earlier pages logged
    driver.get(f"{base}/{page}")
    found = driver.execute_async_script(INSPECT_PAGE)
    problems = [f"image did not load: {src}" for src in found["brokenImages"]]
    problems += [f"clipped: {element}" for element in found["clipped"]]
    problems += [f"raw TeX, not typeset: {tex}" for tex in found["rawTex"]]
    checker = LinkChecker(base, root)
    for link in sorted(set(found["links"])):
        if link.startswith(base + "/"):
            problem = checker.problem(link)
            if problem:
                problems.append(f"broken link: {problem}")
    for entry in driver.get_log("browser"):
        message = entry["message"]
        from_elsewhere = message.startswith(("http://", "https://")) and not message.startswith(
            base + "/"
        )
        # Chromium asks every site for /favicon.ico by itself when a page names no icon
        implicit_icon = message.startswith(f"{base}/favicon.ico ") and not found["hasIcon"]
        if entry["level"] == "SEVERE" and not from_elsewhere and not implicit_icon:
            problems.append(f"console: {message}")
    if screenshot is not None:
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(screenshot))
        # and the first figure of the page, for a person to look at
        if driver.execute_script(SCROLL_TO_FIGURE):
            driver.save_screenshot(str(screenshot.with_name(f"{screenshot.stem}__figure.png")))
    return problems


def test_every_page_is_visited():
    """PAGES (collected from _toc.yml) must cover every page the build wrote."""
    ensure_book_built()
    built = {p.relative_to(HTML).as_posix() for p in html_pages()}
    assert built == set(PAGES)


@pytest.mark.parametrize("page", PAGES)
def test_page_in_browser(browser, site, page):
    screenshot = SCREENSHOTS / page.replace("/", "__").replace(".html", ".png")
    assert check_page(browser, site, page, screenshot) == []
    assert screenshot.stat().st_size > 10_000  # a rendered page, not an empty canvas


#: Pages with formulas, and how many each has at least (so the raw-TeX check has work).
FORMULAS = {
    "book/02_hash_functions.html": 5,
    "book/05_ipfs.html": 2,
    "book/08_publishing.html": 4,
}


@pytest.mark.parametrize("page", sorted(FORMULAS))
def test_formulas_are_typeset_offline(browser, site, page):
    """MathJax comes with the book: with the network off, formulas still become MathJax."""
    browser.get(f"{site}/{page}")
    found = browser.execute_async_script(INSPECT_PAGE)
    assert found["rawTex"] == []
    assert found["mathCount"] >= FORMULAS[page]
    scripts = browser.execute_script(
        "return Array.from(document.scripts).map(s => s.src).filter(s => s.includes('mathjax'))"
    )
    assert scripts and all(s.startswith(site + "/") for s in scripts), scripts


def test_page_check_catches_broken_pages(browser, tmp_path):
    """The checks above can fail: a page with each kind of fault is caught."""
    (tmp_path / "target.html").write_text('<h1 id="here">Target</h1>')
    (tmp_path / "bad.html").write_text(
        "<html><head><title>bad</title></head><body>"
        '<a href="target.html#here">fine</a>'
        '<a href="target.html#not-here">missing anchor</a>'
        '<a href="absent.html">missing page</a>'
        '<img src="absent.png" alt="missing image">'
        "<script>undefinedFunction();</script>"
        "<article><p id='fits'>fits</p>"
        '<pre style="width: 200px; overflow: auto">' + "x" * 400 + "</pre>"
        '<div style="width: 200px"><table><tr><td>' + "y" * 400 + "</td></tr></table></div>"
        '<span class="math">\\(x^2\\)</span></article>'
        "</body></html>"
    )
    with serve_directory(tmp_path) as base:
        problems = check_page(browser, base, "bad.html", None, tmp_path)
    assert any("absent.png" in p and p.startswith("image") for p in problems), problems
    assert any("not-here" in p for p in problems), problems
    assert any("absent.html" in p and "404" in p for p in problems), problems
    assert any("undefinedFunction" in p for p in problems), problems
    assert any(p.startswith("clipped: pre ") for p in problems), problems
    assert any(p.startswith("clipped: div ") and "yyy" in p for p in problems), problems
    assert not any(p.startswith("clipped: p#fits") for p in problems), problems
    assert any(p.startswith("raw TeX") and "x^2" in p for p in problems), problems
