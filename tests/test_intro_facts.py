"""What the intro, the README and CITATION.cff say about the book agrees with the book.

The reading times are the chapters' own "time to learn" lines added up; the data's source
is the one SOURCE.md records next to the files; figures made by code carry a description.
"""

from __future__ import annotations

import re

import jupytext
import pytest
import yaml
from book_tools import BOOK, ROOT, toc_files

INTRO = (BOOK / "intro.md").read_text()
SOURCE = (ROOT / "catalogs" / "data" / "BCO" / "radiosondes" / "SOURCE.md").read_text()
CHAPTERS = [entry.removeprefix("book/") for entry in toc_files() if re.match(r"book/\d\d_", entry)]
MY_CHAPTERS = ["01_referencing_data", "02_hash_functions", "03_castore", "04_cids"]


def minutes_to_learn(chapter: str) -> int:
    text = (BOOK / f"{chapter}.md").read_text()
    match = re.search(r"\*\*Time to learn:\*\* about (\d+) minutes", text)
    assert match, f"{chapter}: no time to learn"
    return int(match.group(1))


def stated_minutes(text: str) -> int:
    """'about 6 hours', 'about 2 h 20 min' or 'about 40 min' in minutes."""
    match = re.search(r"about \**(?:(\d+) (?:hours?|h))?\s*(?:(\d+) min)?", text)
    assert match and (match.group(1) or match.group(2)), f"no time in {text[:80]!r}"
    return 60 * int(match.group(1) or 0) + int(match.group(2) or 0)


def reading_path(name: str) -> str:
    match = re.search(rf"^- \*\*{name} path, [^\n]*(?:\n  [^\n]*)*", INTRO, re.M)
    assert match, f"no {name.lower()} path in the intro"
    return match.group(0)


def test_total_time_is_the_sum_of_the_chapters():
    total = sum(minutes_to_learn(c) for c in CHAPTERS)
    section = INTRO[INTRO.index("## Time and reading paths") :]
    stated = stated_minutes(section)
    assert abs(stated - total) <= 15, f"intro says {stated} min, chapters add up to {total}"
    assert abs(stated_minutes(reading_path("Full")) - total) <= 15


def test_short_path_time_is_the_sum_of_its_chapters():
    path = reading_path("Short")
    linked = re.findall(r"\]\((\d\d_\w+)\.md\)", path)
    assert len(linked) >= 3 and set(linked) <= set(CHAPTERS)
    total = sum(minutes_to_learn(c) for c in linked)
    assert abs(stated_minutes(path) - total) <= 5, (linked, total)


def test_time_check_reads_what_it_should():
    assert stated_minutes("about 2 h 20 min") == 140
    assert stated_minutes("about **6 hours** in all") == 360
    assert stated_minutes("about 40 min") == 40
    with pytest.raises(AssertionError):
        stated_minutes("a while")


def test_intro_names_the_true_source_of_the_sounding():
    launch = re.search(r"on (\d{4})-(\d\d)-(\d\d) at (\d\d):(\d\d)", SOURCE)
    assert launch and launch.groups()[:3] == ("2019", "02", "18")
    assert "18 February 2019 at 20:41 UTC" in INTRO
    assert "eurec4a-snd" in INTRO and "2.1.5" in INTRO and "eurec4a_snd-2.1.5" in SOURCE
    assert "real measurements from the EUREC4A" not in INTRO
    readme = (ROOT / "README.md").read_text()
    assert "2019-02-18 at 20:41 UTC" in readme and "eurec4a-snd" in readme
    assert "real data from the EUREC4A field campaign" not in readme


def test_intro_states_scope_and_practice():
    assert "## What runs where" in INTRO and "127.0.0.1" in INTRO and "offline" in INTRO
    practice = INTRO[INTRO.index("## Doing this for real") : INTRO.index("## How to run it")]
    for word in ["kubo", "IPFS Desktop", "unixfs-v1-2025", "trustless", "pinning service",
                 "ms"]:  # fmt: skip
        assert word in practice, word
    for command in ["howto add", "howto serve", "howto key gen"]:
        assert command in practice


def test_citation_credits_eurec4a_snd_and_the_method_paper():
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert "EUREC4A field campaign" not in citation["abstract"]
    refs = {ref["title"]: ref for ref in citation["references"]}
    software = refs["eurec4a-snd"]
    assert software["version"] == "2.1.5" and software["license"] == "MIT"
    assert software["version"] in SOURCE
    (paper,) = [ref for ref in refs.values() if ref.get("doi")]
    assert paper["doi"] == "10.5194/essd-13-491-2021" and "method" in paper["abstract"]
    assert paper["authors"][0]["family-names"] == "Stephan"


#: A code cell that makes a matplotlib figure (and so an image on the page).
DRAWS = re.compile(r"plt\.(?:show|subplots|figure)\(")


def code_figures_without_description(chapter: str) -> list[str]:
    """Cells that draw a figure with neither alt text nor a sentence about it right after."""
    cells = jupytext.reads((BOOK / f"{chapter}.md").read_text(), fmt="md:myst").cells
    missing = []
    for i, cell in enumerate(cells):
        if cell.cell_type != "code" or not DRAWS.search(cell.source):
            continue
        alt = cell.metadata.get("mystnb", {}).get("image", {}).get("alt", "")
        following = next((c for c in cells[i + 1 :] if c.cell_type == "markdown"), None)
        described = following is not None and following.source.startswith("The figure")
        if len(alt.split()) < 8 and not described:
            missing.append(cell.source.splitlines()[0])
    return missing


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_code_figures_are_described(chapter):
    assert code_figures_without_description(chapter) == []


#: ``{figure}`` and ``{image}`` directives (backtick or colon fences) with their options.
IMAGE_DIRECTIVE = re.compile(r"^(?:```|:::)\{(?:figure|image)\}\s+(\S+)\n((?::[^\n]*\n)*)", re.M)
MARKDOWN_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)")


def images_without_alt(text: str) -> list[str]:
    """Images of a page (directives and markdown images) whose alt text says too little."""
    missing = []
    for target, options in IMAGE_DIRECTIVE.findall(text):
        alt = re.search(r"^:alt:\s*(.*)$", options, re.M)
        if alt is None or len(alt.group(1).split()) < 8:
            missing.append(target)
    missing += [target for alt, target in MARKDOWN_IMAGE.findall(text) if len(alt.split()) < 8]
    return missing


@pytest.mark.parametrize("page", sorted(p.name for p in BOOK.glob("*.md")))
def test_images_have_alt_text(page):
    assert images_without_alt((BOOK / page).read_text()) == []


def test_alt_check_finds_images_without_alt():
    described = ":alt: A map of the chapters: two columns of boxes joined by arrows\n"
    good = "```{figure} images/map.svg\n" + described + ":width: 100%\n\nCaption.\n```\n"
    assert images_without_alt(good) == []
    assert images_without_alt(good.replace(described, "")) == ["images/map.svg"]
    assert images_without_alt(good.replace(described, ":alt: map\n")) == ["images/map.svg"]
    assert images_without_alt("Text ![](images/a.png) and ![a b](images/b.png).") == [
        "images/a.png", "images/b.png"]
    assert images_without_alt("![" + "word " * 8 + "](images/c.png)") == []


def test_figure_check_finds_a_figure_without_description(tmp_path, monkeypatch):
    text = (BOOK / "03_castore.md").read_text()
    bare = re.sub(r"  image:\n    alt: \"[^\"]*\"\n", "  image: {}\n", text, count=1)
    assert bare != text
    monkeypatch.setattr("test_intro_facts.BOOK", tmp_path)
    (tmp_path / "03_castore.md").write_text(bare)
    assert len(code_figures_without_description("03_castore")) == 1


@pytest.mark.parametrize(
    "name", ["intro.md", "glossary.md", "00_tour.md", *(f"{c}.md" for c in MY_CHAPTERS)]
)
def test_pin_means_a_node_keeping_blocks(name):
    """A notebook that fixes a version by CID locks it; "pin" is kept for nodes."""
    text = (BOOK / name).read_text()
    for phrase in ["pinned version", "pinned to", "pin down", "pins down", "pinned catalog",
                   "pinned reference", "notebook pins"]:  # fmt: skip
        assert phrase not in text.lower(), f"{name}: {phrase!r}"
