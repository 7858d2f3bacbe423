"""Helpers for the book tests: building, the nbval tree, papermill runs, links, a local server.

The book is built by ``make book`` (``make test`` depends on it).  ``ensure_book_built`` lets
``pytest tests/test_book.py`` run on its own too: it builds the book the same way when there
is no successful build newer than every file the build reads.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import functools
import hashlib
import http.server
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import yaml

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
BUILD = ROOT / "_build"
HTML = BUILD / "html"
EXECUTED = BUILD / "jupyter_execute"
#: Written by ``make book`` (and by ``ensure_book_built``) only when the build succeeded.
STAMP = BUILD / ".book-ok"
#: The executed notebooks, copied into a tree where ``..`` means the same as in the repo.
NBVAL_TREE = BUILD / "nbval"
BUILD_FLAGS = ["-W", "-n", "--keep-going"]


# --- building ---------------------------------------------------------------------------


def jupyter_book() -> str:
    """The jupyter-book next to the running Python (the project's venv)."""
    return str(Path(sys.executable).with_name("jupyter-book"))


@functools.cache
def offline_prefix() -> list[str]:
    """A command prefix that runs a program with loopback as its only network, like make book.

    Empty where the machine cannot make a network namespace (unshare, ip, user namespaces).
    """
    try:
        probe = subprocess.run(
            ["unshare", "-rn", "ip", "link", "set", "lo", "up"], capture_output=True, timeout=30
        )
    except FileNotFoundError:
        return []
    if probe.returncode != 0:
        return []
    return ["unshare", "-rn", "sh", "-c", 'ip link set lo up && exec "$@"', "offline"]


def build_command(path: Path) -> list[str]:
    """The strict build of ``make book``, offline where possible."""
    return [*offline_prefix(), jupyter_book(), "build", str(path), *BUILD_FLAGS]


#: MathJax, copied from its npm package by ``make install`` (the build serves it itself).
MATHJAX = ROOT / ".mathjax" / "static" / "mathjax" / "tex-chtml.js"


def ensure_mathjax() -> None:
    """Run the Makefile rule that installs MathJax when it has not run yet."""
    if not MATHJAX.is_file():
        subprocess.run(
            ["make", MATHJAX.relative_to(ROOT).as_posix()], cwd=ROOT, check=True, timeout=600
        )


def book_inputs() -> list[Path]:
    """Every file whose change can change the built book."""
    files = [ROOT / "_config.yml", ROOT / "_toc.yml", *BOOK.rglob("*")]
    files += (ROOT / "src" / "howto").rglob("*.py")
    files += (ROOT / "catalogs").rglob("*")
    return [f for f in files if f.is_file() and "__pycache__" not in f.parts]


def book_is_fresh() -> bool:
    if not STAMP.exists():
        return False
    built = STAMP.stat().st_mtime
    return all(f.stat().st_mtime <= built for f in book_inputs())


#: Chapters that keep to one idea: two or three checkpoints along the main line instead of
#: a final exercise, and after the summary an "In depth" part that a first reading skips.
ONE_IDEA_CHAPTERS = ["04_cids", "07_pinned_catalogs", "10_cloud_buckets"]
#: The heading that opens that part.
IN_DEPTH = "## In depth"

#: The jupytext header every chapter starts with (MyST notebook, Python 3 kernel), for
#: tests that write chapters of their own.
CHAPTER_HEADER = """\
---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---
"""


def ensure_book_built() -> None:
    """Build the book (clean, strict) unless a successful build is newer than its inputs.

    A lock keeps two test sessions on the same checkout from building into ``_build`` at
    the same time (the second one waits, then finds the build fresh).
    """
    if book_is_fresh():
        return
    key = hashlib.sha256(str(ROOT).encode()).hexdigest()[:16]
    with open(Path(tempfile.gettempdir()) / f"howto-book-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if book_is_fresh():
            return
        ensure_mathjax()
        shutil.rmtree(BUILD, ignore_errors=True)
        started = time.time()
        result = subprocess.run(
            build_command(ROOT), cwd=ROOT, capture_output=True, text=True, timeout=900
        )
        if result.returncode != 0:
            raise AssertionError(
                f"the book does not build (exit {result.returncode}):\n{result.stdout[-6000:]}"
                f"\n{result.stderr[-6000:]}"
            )
        STAMP.touch()
        os.utime(STAMP, (started, started))  # an input edited during the build is newer


def toc_files(toc: Path = ROOT / "_toc.yml") -> list[str]:
    """The documents of ``_toc.yml`` in reading order, as paths without suffix."""
    doc = yaml.safe_load(toc.read_text())
    found = [doc["root"]]

    def walk(node: dict) -> None:
        for key in ("parts", "chapters", "sections"):
            for child in node.get(key, []):
                if "file" in child:
                    found.append(child["file"])
                walk(child)

    walk(doc)
    return found


def is_notebook(md: Path) -> bool:
    """A MyST markdown notebook: the jupytext header with a kernelspec."""
    text = md.read_text()
    if not text.startswith("---\n"):
        return False
    header = yaml.safe_load(text.split("---\n", 2)[1]) or {}
    return "kernelspec" in header


# --- nbval: a tree where the executed notebooks see the repository around them ----------


def prepare_nbval_tree(executed: Path = EXECUTED / "book", out: Path = NBVAL_TREE) -> list[Path]:
    """Copy the executed chapters to ``out/book/`` inside a mirror of the repository.

    nbval starts each kernel in the notebook's folder.  Chapters run with ``book/`` as their
    working directory during the build, and may use paths such as ``../catalogs/...``; so
    ``out`` gets a symlink to every top-level entry of the repository, and ``out/book`` a
    symlink to every file of ``book/`` that is not a chapter, next to the copies.
    """
    shutil.rmtree(out, ignore_errors=True)
    (out / "book").mkdir(parents=True)
    for entry in ROOT.iterdir():
        if entry.name not in {"book", "_build"} and not entry.name.startswith("."):
            (out / entry.name).symlink_to(entry)
    copies = []
    for nb in sorted(executed.glob("*.ipynb")):
        shutil.copy2(nb, out / "book" / nb.name)
        copies.append(out / "book" / nb.name)
    names = {c.stem for c in copies}
    for entry in BOOK.iterdir():
        if entry.stem not in names and not (out / "book" / entry.name).exists():
            (out / "book" / entry.name).symlink_to(entry)
    return copies


# --- papermill and the SUMMARY contract of the data-access chapter -----------------------


def run_chapter(md: Path, parameters: dict, workdir: Path, cwd: Path) -> dict:
    """Convert a MyST chapter to ipynb with jupytext, run it with papermill, return the result.

    Returns the executed notebook (as nbformat) after writing it to ``workdir``.
    """
    import jupytext
    import nbformat
    import papermill

    source = workdir / f"{md.stem}.ipynb"
    output = workdir / f"{md.stem}.out.ipynb"
    jupytext.write(jupytext.read(md), source)
    papermill.execute_notebook(
        str(source),
        str(output),
        parameters=parameters,
        cwd=str(cwd),
        kernel_name="python3",
        progress_bar=False,
        start_timeout=120,
        execution_timeout=300,
    )
    return nbformat.read(output, as_version=4)


def stream_text(nb) -> str:
    """Everything a notebook printed to stdout, in cell order."""
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and out.get("name") == "stdout":
                parts.append(out["text"])
    return "".join(parts)


def summary_lines(nb) -> list[dict]:
    """The JSON objects printed after ``SUMMARY `` at the start of a line."""
    found = []
    for line in stream_text(nb).splitlines():
        if line.startswith("SUMMARY "):
            found.append(json.loads(line[len("SUMMARY ") :], parse_constant=_reject_constant))
    return found


def _reject_constant(name: str):
    raise ValueError(f"SUMMARY line holds {name}, which is not JSON")


# Plausible ranges for fields whose name says what they measure (radiosonde data from the
# BCO).  A key matches when, lower-cased, one of its _-separated parts is the word (or, for
# words of five letters or more, it contains the word); a unit at the end of the key
# (``_k``, ``_degc``, ``_hpa``, ...) picks one range, otherwise any range of the word will do.
PLAUSIBLE: dict[str, dict[str, tuple[float, float]]] = {
    "temperature": {
        "k": (150.0, 330.0),
        "kelvin": (150.0, 330.0),
        "c": (-100.0, 60.0),
        "degc": (-100.0, 60.0),
        "celsius": (-100.0, 60.0),
    },
    "dewpoint": {"k": (100.0, 330.0), "c": (-170.0, 60.0), "degc": (-170.0, 60.0)},
    "pressure": {"hpa": (0.5, 1100.0), "pa": (50.0, 110000.0)},
    "altitude": {"m": (-100.0, 40000.0), "km": (-0.1, 40.0)},
    "alt": {"m": (-100.0, 40000.0), "km": (-0.1, 40.0)},
    "humidity": {"percent": (0.0, 120.0), "pct": (0.0, 120.0), "fraction": (0.0, 1.2)},
    "latitude": {"deg": (-90.0, 90.0)},
    "longitude": {"deg": (-180.0, 360.0)},
}


def plausibility_problem(key: str, value: float) -> str | None:
    leaf = key.rsplit(".", 1)[-1].lower()
    tokens = set(re.split(r"[^a-z0-9]+", leaf))
    for word, ranges in PLAUSIBLE.items():
        if word not in tokens and (len(word) < 5 or word not in leaf):
            continue
        unit = leaf.rsplit("_", 1)[-1] if "_" in leaf else ""
        candidates = [ranges[unit]] if unit in ranges else list(ranges.values())
        if not any(low <= value <= high for low, high in candidates):
            return f"{key} = {value} is implausible (expected within one of {candidates})"
    return None


def summary_problems(summary: object, cid: str) -> list[str]:
    """What is wrong with a SUMMARY object for the catalog version ``cid`` (empty: nothing)."""
    if not isinstance(summary, dict):
        return [f"SUMMARY is a {type(summary).__name__}, not a JSON object"]
    problems = []
    if summary.get("cid") != cid:
        problems.append(f"cid is {summary.get('cid')!r}, the notebook was run with {cid!r}")
    data = {k: v for k, v in summary.items() if k != "cid"}
    if not data:
        problems.append("no data fields besides cid")
    for key, value in _leaves(data):
        if value is None:  # null: "not available", e.g. a launch time that did not decode
            continue
        if value == "" or value == [] or value == {}:
            problems.append(f"{key} is empty ({value!r})")
        elif isinstance(value, bool):
            continue
        elif isinstance(value, str) and re.search(r"(^|_)(time|date)($|_)", key.lower()):
            try:
                dt.datetime.fromisoformat(value)
            except ValueError:
                problems.append(f"{key} = {value!r} is not an ISO 8601 time")
        elif isinstance(value, int | float):
            if not math.isfinite(value):
                problems.append(f"{key} = {value} is not finite")
                continue
            leaf = key.rsplit(".", 1)[-1].lower()
            if re.match(r"(n_|num|count|levels|size|length|len)", leaf) and value <= 0:
                problems.append(f"{key} = {value} counts nothing")
            problem = plausibility_problem(key, value)
            if problem:
                problems.append(problem)
    return problems


def _leaves(value: object, prefix: str = "") -> Iterator[tuple[str, object]]:
    if isinstance(value, dict) and value:
        for k, v in value.items():
            yield from _leaves(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(value, list) and value:
        for i, v in enumerate(value):
            yield from _leaves(v, f"{prefix}[{i}]")
    else:
        yield prefix, value


# --- static link check of the built HTML --------------------------------------------------


class _PageParser(HTMLParser):
    """Collects the ids of a page and the URLs it refers to."""

    URL_ATTRS = {"href", "src", "poster", "data"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.urls: list[tuple[str, str]] = []  # (tag, url)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value is None:
                continue
            if name == "id" or (tag == "a" and name == "name"):
                self.ids.add(value)
            elif name in self.URL_ATTRS:
                self.urls.append((tag, value))
            elif name == "srcset":
                for candidate in value.split(","):
                    if candidate.strip():
                        self.urls.append((tag, candidate.split()[0]))


@functools.cache
def parse_page(path: Path) -> _PageParser:
    parser = _PageParser()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    return parser


def is_local(url: str) -> bool:
    parts = urlsplit(url)
    return not parts.scheme and not parts.netloc


def html_pages(html: Path = HTML) -> list[Path]:
    """The pages of the book: every HTML file but theme templates and copied sources."""
    return sorted(
        p for p in html.rglob("*.html") if not p.relative_to(html).parts[0].startswith("_")
    )


def link_problems(page: Path, html: Path = HTML) -> list[str]:
    """Local hrefs/srcs of ``page`` that lead to no file, or to an anchor the target lacks."""
    problems = []
    for tag, url in parse_page(page).urls:
        if not is_local(url) or url == "#":
            continue
        parts = urlsplit(url)
        if parts.path:
            target = (page.parent / unquote(parts.path)).resolve()
            if target.is_dir():
                target = target / "index.html"
        else:
            target = page
        where = f"{page.relative_to(html)}: <{tag}> {url}"
        if not target.is_relative_to(html.resolve()):
            problems.append(f"{where} leaves the HTML folder")
        elif not target.is_file():
            problems.append(f"{where} -> no such file")
        elif parts.fragment and target.suffix == ".html":
            if unquote(parts.fragment) not in parse_page(target).ids:
                problems.append(f"{where} -> no id {parts.fragment!r} in {target.name}")
    return problems


# --- a loopback HTTP server for the built HTML ------------------------------------------


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@contextlib.contextmanager
def serve_directory(directory: Path) -> Iterator[str]:
    """Serve ``directory`` on 127.0.0.1 (a free port) in a thread; yield the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


# --- Chromium from Debian's packages ------------------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def ensure_chromium() -> None:
    """Install Debian's chromium and chromium-driver when either binary is missing."""
    if CHROMIUM.exists() and CHROMEDRIVER.exists():
        return
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        raise RuntimeError(
            "the browser tests need Debian's chromium and chromium-driver "
            f"({CHROMIUM} and {CHROMEDRIVER}); the test setup installs them with apt-get, "
            "which needs root and a Debian-like system. Install the two packages "
            "yourself (sudo apt-get install chromium chromium-driver) or run as root."
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "--no-install-recommends", "chromium", "chromium-driver"],
    ):
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1200)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        raise RuntimeError("apt-get installed chromium but /usr/bin/chromium(driver) is missing")
