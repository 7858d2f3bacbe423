"""The book: strict builds, reproducible outputs, the data-access chapter, internal links.

``make test`` runs after ``make book`` (a clean, strict build into ``_build``); run alone,
these tests build the book first when no successful build is newer than its sources.

Where nbval runs: on copies of the executed chapters (``_build/jupyter_execute/book``)
placed in ``_build/nbval/book``, next to symlinks to the rest of the repository.  nbval
starts each kernel in the notebook's folder, and the chapters were executed in ``book/``,
so a chapter that reads ``../catalogs/...`` finds the same files under nbval as in the build.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from urllib.parse import urlsplit

import nbformat
import pytest
import yaml
from book_tools import (
    BOOK,
    BUILD_FLAGS,
    CHAPTER_HEADER,
    EXECUTED,
    HTML,
    IN_DEPTH,
    ONE_IDEA_CHAPTERS,
    ROOT,
    STAMP,
    build_command,
    ensure_book_built,
    ensure_mathjax,
    html_pages,
    is_notebook,
    link_problems,
    offline_prefix,
    prepare_nbval_tree,
    run_chapter,
    summary_lines,
    summary_problems,
    toc_files,
)

import howto

SANITIZE = ROOT / "tests" / "nbval_sanitize.cfg"
#: The reading order of the book; _toc.yml lists the ones that exist, in this order.
CHAPTER_ORDER = [
    "book/intro",
    "book/00_tour",
    "book/01_referencing_data",
    "book/02_hash_functions",
    "book/03_castore",
    "book/04_cids",
    "book/05_ipfs",
    "book/06_intake",
    "book/07_pinned_catalogs",
    "book/08_publishing",
    "book/10_cloud_buckets",
    "book/09_zarr_ipld",  # an optional appendix, after the data-access chapters
    "book/glossary",
    "book/api",
    "book/execution",
]
DATA_CHAPTER = BOOK / "06_intake.md"
NOTEBOOK_CHAPTERS = [
    f for f in toc_files() if (ROOT / f"{f}.md").exists() and is_notebook(ROOT / f"{f}.md")
]

HEADER = CHAPTER_HEADER


@pytest.fixture(scope="session")
def book() -> Path:
    ensure_book_built()
    return HTML


# --- configuration and table of contents ------------------------------------------------


def test_toc_lists_every_chapter_in_reading_order():
    listed = toc_files()
    assert listed[0] == "book/intro"
    assert len(set(listed)) == len(listed), "a file is listed twice"
    for entry in listed:
        assert (ROOT / f"{entry}.md").is_file(), f"_toc.yml lists {entry}, which does not exist"
        assert entry in CHAPTER_ORDER, f"{entry} has no place in the book's order"
    assert listed == sorted(listed, key=CHAPTER_ORDER.index)
    # only_build_toc_files silently drops a chapter that is not listed: refuse that
    on_disk = {f"book/{p.stem}" for p in BOOK.glob("*.md")}
    assert sorted(on_disk - set(listed)) == [], "chapters missing from _toc.yml"


def test_config_is_strict_and_offline_ready():
    """The Sphinx configuration Jupyter Book derives from _config.yml, as the build sees it."""
    from jupyter_book.config import get_final_config

    config, _ = get_final_config(
        user_yaml=ROOT / "_config.yml",
        sourcedir=ROOT,
        cli_config={"latex_individualpages": False},
    )
    assert config["external_toc_exclude_missing"] is True  # only_build_toc_files
    assert config["nb_execution_mode"] == "force"
    assert config["nb_execution_raise_on_error"] is True
    assert config["nb_execution_allow_errors"] is False
    assert 0 < config["nb_execution_timeout"] <= 180
    assert {"sphinx.ext.autodoc", "myst_nb", "sphinx_book_theme"} <= set(config["extensions"])
    assert "sphinx_thebe" not in config["extensions"]
    assert {".venv", "_build", ".pytest_cache"} <= set(config["exclude_patterns"])
    # MathJax comes from the built book itself, not from a CDN
    assert "://" not in config["mathjax_path"]
    assert ".mathjax/static" in config["html_static_path"]
    launch = config["html_theme_options"]["launch_buttons"]
    assert launch["binderhub_url"] == "https://mybinder.org"
    assert config["html_theme_options"]["repository_url"].startswith("https://github.com/")


# --- the build fails on errors and warnings -------------------------------------------------


def _tiny_book(tmp_path: Path, chapter: str) -> Path:
    """A book with the project's _config.yml, an intro and one chapter."""
    root = tmp_path / "book"
    (root / "book").mkdir(parents=True)
    shutil.copy(ROOT / "_config.yml", root / "_config.yml")
    # the static files the configuration names: the book's CSS and the local MathJax
    ensure_mathjax()
    (root / "book" / "_static").symlink_to(BOOK / "_static")
    (root / ".mathjax").symlink_to(ROOT / ".mathjax")
    (root / "_toc.yml").write_text(
        "format: jb-book\nroot: book/intro\nchapters:\n  - file: book/chapter\n"
    )
    (root / "book" / "intro.md").write_text("# A tiny book\n\nIt has one chapter.\n")
    (root / "book" / "chapter.md").write_text(HEADER + textwrap.dedent(chapter))
    return root


def test_offline_builds_see_loopback_only():
    """Builds run in a network namespace whose one interface is loopback, and it is up."""
    prefix = offline_prefix()
    assert prefix, "cannot make a network namespace (unshare -rn, ip) on this machine"
    links = subprocess.run(
        [*prefix, "ip", "-o", "link"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert len(links) == 1 and ": lo:" in links[0] and "UP" in links[0], links
    assert (
        subprocess.run(
            [*prefix, "ip", "-o", "route"], capture_output=True, text=True, check=True
        ).stdout.strip()
        == ""
    )


def _build(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        build_command(root), cwd=root, capture_output=True, text=True, timeout=300
    )


GOOD_CHAPTER = """
    # Chapter

    ```{code-cell} ipython3
    answer = 6 * 7
    print(answer)
    ```

    An expected failure, tagged so:

    ```{code-cell} ipython3
    :tags: [raises-exception]

    {}["missing"]
    ```
"""


def test_tiny_book_builds_with_the_same_config(tmp_path):
    """The control for the two tests below: nothing wrong, exit 0, output executed."""
    root = _tiny_book(tmp_path, GOOD_CHAPTER)
    result = _build(root)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    page = (root / "_build" / "html" / "book" / "chapter.html").read_text()
    assert "42" in page and "KeyError" in page


def test_failing_cell_fails_the_build(tmp_path):
    root = _tiny_book(
        tmp_path,
        GOOD_CHAPTER
        + """
    ```{code-cell} ipython3
    raise RuntimeError("this cell fails on purpose")
    ```
    """,
    )
    result = _build(root)
    assert result.returncode != 0
    assert "this cell fails on purpose" in result.stdout + result.stderr


def test_warning_fails_the_build(tmp_path):
    root = _tiny_book(tmp_path, GOOD_CHAPTER + "\nSee [a chapter nobody wrote](nowhere.md).\n")
    result = _build(root)
    assert result.returncode != 0
    assert "nowhere.md" in result.stdout + result.stderr


def test_makefile_builds_clean_strict_and_offline():
    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^book:.*\n((?:\t.*\n)+)", makefile, re.M)
    assert recipe, "no book target"
    lines = recipe.group(1)
    assert "rm -rf _build" in lines
    assert re.search(r"\$\(OFFLINE\) \S*jupyter-book build \. " + " ".join(BUILD_FLAGS), lines)
    assert "unshare -rn" in makefile
    assert re.search(r"^test:.*\bbook\b", makefile, re.M), "make test must build the book first"


# --- the built book -------------------------------------------------------------------------


def test_book_built_within_three_minutes(book):
    """From the start stamp of the last clean build to the last file it wrote."""
    started = STAMP.stat().st_mtime
    finished = max(p.stat().st_mtime for p in book.rglob("*") if p.is_file())
    assert 0 < finished - started <= 180, f"the book took {finished - started:.0f} s to build"


def test_every_toc_entry_has_a_page(book):
    for entry in toc_files():
        assert (book / f"{entry}.html").is_file(), f"no page for {entry}"
    assert (book / "index.html").is_file()


@pytest.mark.parametrize("chapter", NOTEBOOK_CHAPTERS)
def test_chapter_was_executed(book, chapter):
    nb = nbformat.read(EXECUTED / f"{chapter}.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, f"{chapter} has no code cells"
    assert all(c.execution_count for c in code), "a code cell was not executed"
    for cell in code:
        tags = cell.metadata.get("tags", [])
        errors = [o for o in cell.outputs if o.output_type == "error"]
        assert not errors or "raises-exception" in tags, f"unexpected error in {chapter}"


def test_buttons_come_from_the_one_repository_url(book):
    """Repository button, Binder launch button and downloads on every chapter page."""
    config_text = (ROOT / "_config.yml").read_text()
    config = yaml.safe_load(config_text)
    url = config["repository"]["url"]
    assert config_text.count("github.com") == 1, "a second repository URL in _config.yml"
    owner_repo = urlsplit(url).path.strip("/")
    binder = config["launch_buttons"]["binderhub_url"]
    branch = config["repository"]["branch"]
    for chapter in NOTEBOOK_CHAPTERS:
        page = book / f"{chapter}.html"
        hrefs = set(re.findall(r'href="([^"]+)"', page.read_text()))
        assert url in hrefs, f"{chapter}: no repository button"
        launch = f"{binder}/v2/gh/{owner_repo}/{branch}?urlpath=lab/tree/{chapter}.md"
        assert launch in hrefs, f"{chapter}: no Binder button opening {chapter}.md"
        for suffix in (".md", ".ipynb"):
            download = f"../_sources/{chapter}{suffix}"
            assert download in hrefs, f"{chapter}: no download of the {suffix} file"
            assert (page.parent / download).resolve().is_file()


def test_citation_file_matches_the_book_and_the_package():
    import tomllib

    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert citation["cff-version"] == "1.2.0"
    assert citation["title"] == config["title"]
    assert citation["repository-code"] == config["repository"]["url"]
    assert citation["version"] == project["version"]
    assert citation["license"] == project["license"]
    assert citation["authors"] and citation["message"]
    intro = (BOOK / "intro.md").read_text()
    assert "CITATION.cff" in intro and f"version {project['version']}" in intro


def test_execution_statistics_list_every_chapter(book):
    text = re.sub(r"<[^>]+>", " ", (book / "book" / "execution.html").read_text())
    for chapter in NOTEBOOK_CHAPTERS:
        row = re.search(rf"{re.escape(chapter)}\s+\S+ \S+\s+force\s+([\d.]+)\s+✅", text)
        assert row, f"no run time for {chapter}"
        assert 0 < float(row.group(1)) < 180


def test_api_page_documents_the_package(book):
    page = (book / "book" / "api.html").read_text()
    for name in [
        "howto.get_intake_catalog",
        "howto.CAStore",
        "howto.blocks.bundled.catalog_dir",
        "howto.formats.cids.parse_cid",
        "howto.formats.car.read_car",
        "howto.gateway.server.serve",
        "howto.ipld.IPLDStore",
    ]:
        assert f'id="{name}"' in page, f"{name} is not documented"


# --- internal links ---------------------------------------------------------------------


def test_internal_links_resolve(book):
    pages = html_pages(book)
    assert len(pages) >= len(toc_files())
    problems = [p for page in pages for p in link_problems(page, book)]
    assert problems == []


def test_link_check_finds_broken_links(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.html").write_text('<h1 id="there">B</h1>')
    (tmp_path / "a.html").write_text(
        '<p id="top"></p><a href="sub/b.html#there">ok</a> <a href="#top">ok</a>'
        '<a href="https://example.org/x">external</a> <img src="missing.png">'
        '<a href="sub/b.html#nowhere">bad anchor</a> <a href="#gone">bad</a>'
    )
    problems = link_problems(tmp_path / "a.html", tmp_path)
    assert len(problems) == 3, problems
    assert any("missing.png" in p for p in problems)
    assert any("'nowhere'" in p for p in problems)
    assert any("'gone'" in p for p in problems)


# --- every chapter teaches the same way: goals first, an exercise, a summary, what next ----
#
# The chapters that keep to one idea (ONE_IDEA_CHAPTERS) put checkpoints along the main line
# instead of a final exercise, and end with an "In depth" part after "What comes next";
# an optional exercise there has a hidden solution like any other.

GOALS_BOX = re.compile(
    r":::\{admonition\} In this chapter\n:class: chapter-goals\n(.*?)\n:::\n", re.S
)
CHAPTER_LINK = re.compile(r"\]\((\d\d)_[a-z_]+\.md\)")


def apparatus_problems(md: Path) -> list[str]:
    """What a chapter's markdown lacks of the book's teaching apparatus (empty: nothing)."""
    import jupytext

    text = md.read_text()
    number = int(md.stem[:2])
    problems = []
    box = GOALS_BOX.search(text)
    first_section = text.find("\n## ")
    if not box or box.start() > first_section:
        return ["no 'In this chapter' box before the first section"]
    goals = box.group(1)
    if not re.search(r"\*\*You will learn to\*\*\n\n(- .+\n)+", goals + "\n"):
        problems.append("no list of learning goals")
    prerequisites = re.search(r"\*\*Prerequisites:\*\* (.+?)(\n\n|$)", goals, re.S)
    if not prerequisites:
        problems.append("no prerequisites")
    else:
        earlier = [int(n) for n in CHAPTER_LINK.findall(prerequisites.group(1))]
        if number > 1 and not earlier:
            problems.append("prerequisites link no earlier chapter")
        if any(n >= number for n in earlier):
            problems.append(f"prerequisites link a chapter that is not earlier: {earlier}")
    if not re.search(r"\*\*Time to learn:\*\* about \d+ minutes", goals):
        problems.append("no time to learn")
    sections = re.findall(r"^## (.+)$", text, re.M)
    if md.stem in ONE_IDEA_CHAPTERS:
        problems += in_depth_problems(text, sections)
        # an exercise is optional here, at the end of the in-depth part
        exercise = text[text.find(f"\n{IN_DEPTH}\n") :] if f"\n{IN_DEPTH}\n" in text else ""
    else:
        tail = [s for s in sections if s in ("Exercise", "Summary", "What comes next")]
        if tail != ["Exercise", "Summary", "What comes next"] or sections[-1] != "What comes next":
            problems.append(f"sections should end Exercise, Summary, What comes next: {sections}")
        exercise = text[text.find("\n## Exercise\n") : text.find("\n## Summary\n")]
        if ":class: exercise" not in exercise:
            problems.append("no exercise box")
    cells = jupytext.reads(exercise, fmt="md:myst").cells
    solutions = [
        c
        for c in cells
        if c.cell_type == "code"
        and "hide-cell" in c.metadata.get("tags", [])
        and "assert " in c.source
    ]
    if ":class: exercise" in exercise and not solutions:
        problems.append("no hidden solution that asserts its result")
    for cell in jupytext.reads(text, fmt="md:myst").cells:
        if cell.cell_type == "code" and "plt.show()" in cell.source:
            if not {"hide-input", "hide-cell"} & set(cell.metadata.get("tags", [])):
                problems.append(f"plotting code shown in full: {cell.source[:60]!r}")
    return problems


def in_depth_problems(text: str, sections: list[str]) -> list[str]:
    """What is wrong with the layout of a one-idea chapter (its ``## `` sections given)."""
    problems = []
    end = ["Summary", "What comes next", IN_DEPTH.removeprefix("## ")]
    if sections[-3:] != end or sections.count(end[-1]) != 1:
        problems.append(f"sections should end Summary, What comes next, In depth: {sections}")
    if "Exercise" in sections:
        problems.append(
            "a final exercise on the main line: make it a checkpoint, or put it "
            "at the end of the in-depth part"
        )
    start = text.find(f"\n{IN_DEPTH}\n")
    if start < 0:
        return problems + ["no in-depth part"]
    part = text[start + len(IN_DEPTH) + 2 :].lstrip("\n")
    opening = part.split("\n\n", 1)[0]
    says_skip = re.search(r"\bskip", opening, re.I) and "first reading" in opening
    if opening.startswith(("#", ":::", "```", "(")) or not says_skip:
        problems.append(
            "the in-depth part does not open with a sentence saying a first reading can skip it"
        )
    if not re.search(r"^### \S", part, re.M):
        problems.append("the in-depth part has no ### sections")
    return problems


@pytest.mark.parametrize("chapter", NOTEBOOK_CHAPTERS)
def test_chapter_has_goals_exercise_summary_and_next(chapter):
    assert apparatus_problems(ROOT / f"{chapter}.md") == []


EXERCISE_CHAPTERS = [
    c for c in NOTEBOOK_CHAPTERS if ":class: exercise" in (ROOT / f"{c}.md").read_text()
]


def test_every_chapter_but_the_one_idea_chapters_has_an_exercise():
    assert set(NOTEBOOK_CHAPTERS) - set(EXERCISE_CHAPTERS) <= {
        f"book/{c}" for c in ONE_IDEA_CHAPTERS
    }


@pytest.mark.parametrize("chapter", EXERCISE_CHAPTERS)
def test_exercise_solution_is_folded_and_was_run(book, chapter):
    """The solution is behind a toggle on the page, and the build executed it."""
    page = (book / f"{chapter}.html").read_text()
    assert re.search(
        r'<details class="[^"]*hide[^"]*">\s*<summary[^>]*>\s*'
        r'<p class="collapsed admonition-title">Show a solution</p>',
        page,
    )
    nb = nbformat.read(EXECUTED / f"{chapter}.ipynb", as_version=4)
    solutions = [c for c in nb.cells if "hide-cell" in c.metadata.get("tags", [])]
    assert solutions and all(c.execution_count for c in solutions)


def test_every_glossary_term_is_linked_from_the_book():
    glossary = (BOOK / "glossary.md").read_text()
    terms = re.findall(r"^([A-Za-z][\w-]*)\n  \S", glossary, re.M)
    assert len(terms) >= 10, terms
    linked = set()
    for md in BOOK.glob("*.md"):
        if md.name != "glossary.md":
            for target in re.findall(r"\{term\}`([^`]+)`", md.read_text()):
                linked.add(re.sub(r".*<(.+)>$", r"\1", target).lower())
    assert sorted(t for t in terms if t.lower() not in linked) == []


def test_apparatus_check_finds_what_is_missing(tmp_path):
    good = (BOOK / "03_castore.md").read_text()
    assert apparatus_problems(BOOK / "03_castore.md") == []
    cases = {
        "no 'In this chapter' box": good.replace(":class: chapter-goals", ":class: note"),
        "no earlier chapter": good.replace("[Hash functions](02_hash_functions.md)", "hashes"),
        "not earlier": good.replace("[Hash functions](02_hash_functions.md)", "[x](05_ipfs.md)"),
        "no time to learn": good.replace("**Time to learn:**", "**Time:**"),
        "should end": good.replace("## What comes next", "## Next"),
        "no hidden solution": good.replace("tags: [hide-cell]", "tags: []"),
        "plotting code shown": good.replace("tags: [hide-input]\n", "tags: []\n", 1),
    }
    for expected, text in cases.items():
        assert text != good, expected
        md = tmp_path / "03_castore.md"
        md.write_text(text)
        assert any(expected in p for p in apparatus_problems(md)), expected


def test_in_depth_check_finds_a_broken_layout(tmp_path):
    """Chapter 4 passes; each way of breaking its main line and in-depth part is caught."""
    good = (BOOK / "04_cids.md").read_text()
    assert apparatus_problems(BOOK / "04_cids.md") == []
    summary = good.index("\n## Summary\n")
    in_depth = good.index(f"\n{IN_DEPTH}\n")
    skip_line = good[in_depth:].split("\n\n")[1]
    cases = {
        # the in-depth part before the summary, or missing
        "should end Summary, What comes next, In depth": good[:summary]
        + good[in_depth:]
        + good[summary:in_depth],
        "no in-depth part": good.replace(f"\n{IN_DEPTH}\n", "\n### In depth\n"),
        # a final exercise back on the main line
        "a final exercise on the main line": good.replace(
            "\n## Summary\n", "\n## Exercise\n\nDo it.\n\n## Summary\n"
        ),
        "a first reading can skip it": good.replace(skip_line, "More below."),
        "no ### sections": good[:in_depth] + good[in_depth:].replace("\n### ", "\n#### "),
        "no hidden solution": good[:in_depth]
        + good[in_depth:].replace("tags: [hide-cell]", "tags: []"),
    }
    for expected, text in cases.items():
        assert text != good, expected
        md = tmp_path / "04_cids.md"
        md.write_text(text)
        problems = apparatus_problems(md)
        assert any(expected in p for p in problems), (expected, problems)
    # the same layout in a chapter that is not one of them is refused: it wants an exercise
    md = tmp_path / "03_castore.md"
    md.write_text(good.replace("(03_castore.md)", "(02_hash_functions.md)"))
    assert any("should end Exercise" in p for p in apparatus_problems(md))


# --- the chapters use public APIs only ---------------------------------------------------

PRIVATE_NAME = re.compile(r"\.(_[A-Za-z]\w*)|\bimport\s+(_\w+)|\bimport\s+[^\n]*,\s*(_\w+)")


def private_names(code: str) -> list[str]:
    """Underscore names a piece of code reaches for (dunder names such as __name__ aside)."""
    return [
        name
        for match in PRIVATE_NAME.finditer(code)
        for name in match.groups()
        if name and not (name.startswith("__") and name.endswith("__"))
    ]


@pytest.mark.parametrize("chapter", NOTEBOOK_CHAPTERS)
def test_chapter_code_uses_public_names_only(chapter):
    import jupytext

    notebook = jupytext.read(ROOT / f"{chapter}.md")
    code = "\n".join(c.source for c in notebook.cells if c.cell_type == "code")
    assert private_names(code) == []


def test_private_name_check_finds_underscore_names():
    assert private_names("info = cat._entries[name].describe()") == ["_entries"]
    assert private_names("from howto.fs import _read_car") == ["_read_car"]
    assert private_names("from howto.fs import filesystem, _Blocks") == ["_Blocks"]
    assert private_names("print(type(err).__name__, cat[name].describe(), x_y)") == []


# --- what the pages show: no tracebacks, no machine paths, no throwaway ports -------------

#: Folders of the machine the book was built on (a reader's machine has other ones).  The
#: fictional colleague's ``/Users/maria/...`` in chapter 1 is an example, not a leak.
MACHINE_PATH = re.compile(
    r"(?<![\w.~$])/(home|root|tmp|work|usr|opt|var|srv|mnt)/|site-packages|"
    r"dist-packages|\.venv/"
)
LOOPBACK_PORT = re.compile(r"\b(127\.0\.0\.1|localhost|\[::1\]|0\.0\.0\.0):(\d+)")
#: Fixed, documented ports (kubo's gateway) may be named; any other one changes per run.
KNOWN_PORTS = {"8080"}
TRACEBACK = re.compile(
    r"Traceback \(most recent call last\)|class=\"[^\"]*\boutput (traceback|error)\b"
)


def leaks(html: str) -> list[str]:
    """Tracebacks, machine paths and ephemeral loopback ports in a page's HTML."""
    found = [f"traceback: {m.group(0)}" for m in TRACEBACK.finditer(html)]
    found += [f"machine path: {m.group(0)}" for m in MACHINE_PATH.finditer(html)]
    found += [
        f"ephemeral port: {m.group(0)}"
        for m in LOOPBACK_PORT.finditer(html)
        if m.group(2) not in KNOWN_PORTS
    ]
    return found


def test_pages_show_no_tracebacks_paths_or_ports(book):
    problems = {
        page.relative_to(book).as_posix(): found
        for page in html_pages(book)
        if (found := leaks(page.read_text()))
    }
    assert problems == {}


def test_leak_check_finds_what_it_looks_for():
    clean = (
        "<p>IPFS_GATEWAY=http://127.0.0.1:8080, see /Users/maria/Data and ~/.ipfs/gateway;"
        " make creates .venv</p>"
    )
    assert leaks(clean) == []
    for bad, kind in [
        ('<div class="output traceback highlight-ipythontb">', "traceback"),
        ("Traceback (most recent call last):", "traceback"),
        ("File /opt/x/src/howto/fs.py:110", "machine path"),
        ("/srv/env/lib/python3.11/site-packages/aiohttp", "machine path"),
        ("in .venv/lib/python3.11/", "machine path"),
        ("gateway http://127.0.0.1:40145, /ipfs/bafy", "ephemeral port"),
        ("http://localhost:34439/ipfs", "ephemeral port"),
    ]:
        assert [f.split(":")[0] for f in leaks(clean + bad)] != [], bad
        assert leaks(clean + bad)[0].startswith(kind), (bad, leaks(clean + bad))


# --- nbval: outputs reproduce from run to run --------------------------------------------


@pytest.fixture(scope="session")
def nbval_copies(book) -> dict[str, Path]:
    return {f"book/{p.stem}": p for p in prepare_nbval_tree()}


def _nbval(*paths: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-q",
            "-p",
            "tests.nbval_glue",
            "--nbval",
            "--nbval-current-env",
            "--nbval-sanitize-with",
            str(SANITIZE),
            *map(str, paths),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.mark.parametrize("chapter", NOTEBOOK_CHAPTERS)
def test_chapter_outputs_reproduce(nbval_copies, chapter):
    assert chapter in nbval_copies, f"no executed copy of {chapter}"
    result = _nbval(nbval_copies[chapter])
    assert result.returncode == 0, result.stdout[-8000:]
    assert re.search(r"\d+ passed", result.stdout)


def _write_notebook(path: Path, source: str, stored_output: str) -> Path:
    cell = nbformat.v4.new_code_cell(source, execution_count=1)
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=stored_output)]
    nb = nbformat.v4.new_notebook(cells=[cell])
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)
    return path


def test_nbval_forgives_addresses_and_timestamps_but_not_changes(tmp_path):
    volatile = _write_notebook(
        tmp_path / "volatile.ipynb",
        "import datetime, uuid\n"
        "print(object(), datetime.datetime.now().isoformat(), uuid.uuid4())\n",
        "<object object at 0x7f3a1c2b4e50> 2001-01-01T00:00:00.000001 "
        "0b9c7a4e-8a7d-4c0e-9f1a-3f5d0c2b1a99\n",
    )
    changed = _write_notebook(tmp_path / "changed.ipynb", "print(6 * 7)\n", "41\n")
    assert _nbval(volatile).returncode == 0
    result = _nbval(changed)
    assert result.returncode != 0 and "41" in result.stdout


# --- the data-access chapter, run by papermill for every pinned catalog version ------------
#
# The contract with book/06_intake.md: a cell tagged `parameters` defines `catalog_cid`;
# the chapter reads data from that catalog version and prints one line
# `SUMMARY {json}` whose "cid" is the catalog CID it used, plus fields describing the data
# it read: numbers finite, counts positive, physical values in plausible ranges, times
# in ISO 8601, no empty strings or lists (null is allowed: "not available").

VERSIONS = howto.list_catalog_versions()


def test_there_are_pinned_catalog_versions():
    assert VERSIONS, "catalogs/versions.json lists no version"
    assert len({v.cid for v in VERSIONS}) == len(VERSIONS)


def check_data_chapter(md: Path, cid: str, workdir: Path) -> dict:
    """Run ``md`` for catalog ``cid`` with papermill in book/ and check its SUMMARY."""
    import jupytext

    parameter_cells = [
        c
        for c in jupytext.read(md).cells
        if "parameters" in c.metadata.get("tags", []) and "catalog_cid" in c.source
    ]
    assert len(parameter_cells) == 1, "need one cell tagged parameters that sets catalog_cid"
    nb = run_chapter(md, {"catalog_cid": cid}, workdir, cwd=BOOK)
    summaries = summary_lines(nb)
    assert len(summaries) == 1, f"expected one SUMMARY line, got {len(summaries)}"
    assert summary_problems(summaries[0], cid) == []
    return summaries[0]


_data_summaries: dict[str, dict] = {}  # version -> SUMMARY of the data chapter


def _data_chapter_summary(version, workdir: Path) -> dict:
    if not DATA_CHAPTER.exists():
        pytest.skip("book/06_intake.md is not written yet (the stand-in test checks the runner)")
    if version.version not in _data_summaries:
        workdir.mkdir(parents=True, exist_ok=True)
        _data_summaries[version.version] = check_data_chapter(DATA_CHAPTER, version.cid, workdir)
    return _data_summaries[version.version]


@pytest.mark.parametrize("version", VERSIONS, ids=[v.version for v in VERSIONS])
def test_data_chapter_reads_every_pinned_version(version, tmp_path):
    _data_chapter_summary(version, tmp_path)


def test_data_chapter_summaries_describe_the_same_things(tmp_path):
    """Every version gets a summary with the same fields, each naming its own catalog."""
    summaries = [_data_chapter_summary(v, tmp_path / v.version) for v in VERSIONS]
    assert len({frozenset(s) for s in summaries}) == 1, [sorted(s) for s in summaries]
    assert [s["cid"] for s in summaries] == [v.cid for v in VERSIONS]


STAND_IN = """
    # Stand-in for the data-access chapter

    ```{code-cell} ipython3
    :tags: [parameters]

    catalog_cid = None
    ```

    ```{code-cell} ipython3
    import json

    import howto

    cid = catalog_cid or howto.get_latest_catalog_cid()
    ds = howto.get_intake_catalog(use_ipfs=cid).BCO.radiosondes.level2.to_dask()
    summary = {
        "cid": cid,
        "levels": ds.sizes["alt"],
        "top_altitude_m": float(ds["alt"].max()),
        "surface_temperature_degC": round(float(ds["temperature"][0]), 2),
    }
    print("SUMMARY", json.dumps(summary))
    ```
"""


@pytest.mark.parametrize("version", VERSIONS, ids=[v.version for v in VERSIONS])
def test_papermill_runner_with_a_stand_in_chapter(version, tmp_path):
    md = tmp_path / "stand_in.md"
    md.write_text(HEADER + textwrap.dedent(STAND_IN))
    summary = check_data_chapter(md, version.cid, tmp_path)
    assert summary["levels"] > 1000


def test_summary_check_rejects_wrong_or_implausible_data():
    cid = "bafybeicwhdfduwqbzvrdwvjcffwawlbmdhyiyxtvsycyoshyjg2roeunny"
    good = {"cid": cid, "levels": 2384, "surface_temperature_degC": 25.8, "top_altitude_m": 23860}
    assert summary_problems(good, cid) == []
    assert summary_problems({**good, "cid": "bafyother"}, cid)
    assert summary_problems({"cid": cid}, cid)
    assert summary_problems({**good, "levels": 0}, cid)
    assert summary_problems({**good, "surface_temperature_K": 25.8}, cid)
    assert summary_problems({**good, "surface_temperature_degC": 299.0}, cid)
    assert summary_problems({**good, "top_altitude_m": -5000}, cid)
    assert summary_problems({**good, "mean_temperature": 250.0}, cid) == []
    assert summary_problems({**good, "stats": {"mean_pressure": float("nan")}}, cid)
    assert summary_problems({**good, "variables": []}, cid)
    assert summary_problems({**good, "alt_max": 123456.0}, cid)
    assert summary_problems({**good, "launch_time": "yesterday"}, cid)
    assert summary_problems({**good, "launch_time": "2019-02-18T20:41:24Z"}, cid) == []
    assert summary_problems({**good, "launch_time": None}, cid) == []
    assert summary_problems([good], cid)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("")])
    nb.cells[0].outputs = [
        nbformat.v4.new_output(
            "stream", name="stdout", text="x\nSUMMARY " + json.dumps(good) + "\nSUMMARY: no\n"
        )
    ]
    assert summary_lines(nb) == [good]
