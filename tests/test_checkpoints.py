"""Checkpoints: short questions inside a chapter, each with a folded answer that checks itself.

A checkpoint is an admonition titled ``Checkpoint: ...`` with the class ``checkpoint``. The
next code cell is its answer: folded on the page (tag ``hide-cell``) and holding an
``assert``, so the build fails when the answer stops being true. Every chapter, 1 to 10,
carries two or three checkpoints, all on the main line: none of them in the "In depth"
part after the summary (chapters 4, 7 and 10), which a first reading skips.
"""

from __future__ import annotations

import ast
import re
import textwrap
from pathlib import Path

import jupytext
import pytest
from book_tools import BOOK, CHAPTER_HEADER, IN_DEPTH, toc_files

#: The numbered chapters of the table of contents, 01 to 10 (not the tour, not the appendices).
CHAPTERS = [
    entry.removeprefix("book/")
    for entry in toc_files()
    if re.match(r"book/(0[1-9]|10)_", entry)
]

CHECKPOINT = re.compile(r"^:::\{admonition\} Checkpoint: .+\n:class: checkpoint$", re.M)


def _asserts(source: str) -> bool:
    try:
        return any(isinstance(n, ast.Assert) for n in ast.walk(ast.parse(source)))
    except SyntaxError:
        return False


def checkpoints(md: Path) -> tuple[int, list[str]]:
    """How many checkpoints a chapter's main line has, and what is wrong with them."""
    cells = jupytext.read(md).cells
    in_depth_heading = re.compile(rf"^{re.escape(IN_DEPTH)}$", re.M)
    count, problems, in_depth = 0, [], False
    for i, cell in enumerate(cells):
        if cell.cell_type != "markdown":
            continue
        heading = in_depth_heading.search(cell.source)
        for match in CHECKPOINT.finditer(cell.source):
            title = match.group(0).splitlines()[0]
            if in_depth or (heading and heading.start() < match.start()):
                problems.append(f"{title}: in the in-depth part, not on the main line")
            else:
                count += 1
            # the answer is the first cell after the one that holds the question
            answer = cells[i + 1] if i + 1 < len(cells) else None
            if answer is None or answer.cell_type != "code":
                problems.append(f"{title}: no answer cell right after it")
            elif "hide-cell" not in answer.metadata.get("tags", []):
                problems.append(f"{title}: the answer is not folded (hide-cell)")
            elif not _asserts(answer.source):
                problems.append(f"{title}: the answer checks nothing (no assert)")
        in_depth = in_depth or heading is not None
    return count, problems


def test_the_chapters_are_one_to_ten():
    assert sorted(c[:2] for c in CHAPTERS) == [f"{n:02d}" for n in range(1, 11)]


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_has_two_or_three_checked_checkpoints(chapter):
    count, problems = checkpoints(BOOK / f"{chapter}.md")
    assert problems == []
    assert 2 <= count <= 3, f"{chapter} has {count} checkpoints"


def test_a_chapter_with_one_checkpoint_is_found(tmp_path):
    """Chapter 1 with its last checkpoint turned into a plain note has too few."""
    text = (BOOK / "01_referencing_data.md").read_text()
    last = text.rindex(":::{admonition} Checkpoint:")
    md = tmp_path / "01_referencing_data.md"
    md.write_text(text[:last] + text[last:].replace("Checkpoint:", "Note:", 1))
    count, problems = checkpoints(md)
    assert count == 1 and problems == []


@pytest.mark.parametrize("md", sorted(BOOK.glob("*.md")), ids=lambda p: p.stem)
def test_every_checkpoint_is_answered(md):
    assert checkpoints(md)[1] == []


QUESTION = CHAPTER_HEADER + textwrap.dedent("""\

    # A chapter

    :::{admonition} Checkpoint: a sum
    :class: checkpoint

    What is 6 * 7?
    :::

    ```{code-cell} ipython3
    ---
    tags: [hide-cell]
    ---
    assert 6 * 7 == 42
    ```
    """)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (None, None, None),
        ("tags: [hide-cell]", "tags: [hide-input]", "not folded"),
        ("assert 6 * 7 == 42", "print(6 * 7)", "checks nothing"),
        ("```{code-cell} ipython3", "```python", "no answer cell"),
    ],
)
def test_checkpoint_check_finds_what_is_missing(tmp_path, old, new, expected):
    md = tmp_path / "chapter.md"
    md.write_text(QUESTION if old is None else QUESTION.replace(old, new))
    count, problems = checkpoints(md)
    assert count == 1
    if expected is None:
        assert problems == []
    else:
        assert len(problems) == 1 and expected in problems[0], problems


def test_a_checkpoint_in_the_in_depth_part_does_not_count(tmp_path):
    md = tmp_path / "chapter.md"
    in_depth = "\n## In depth\n\nThis part can be skipped on a first reading.\n\n### More\n"
    md.write_text(QUESTION.replace("\n:::{admonition}", in_depth + "\n:::{admonition}"))
    count, problems = checkpoints(md)
    assert count == 0
    assert len(problems) == 1 and "in the in-depth part" in problems[0], problems
    # the same heading in the cell after the question leaves the checkpoint on the main line
    md.write_text(QUESTION + in_depth)
    assert checkpoints(md) == (1, [])


def test_a_checkpoint_after_the_in_depth_heading_is_found(tmp_path):
    """Chapter 4 with its in-depth part starting just before its last checkpoint."""
    text = (BOOK / "04_cids.md").read_text()
    count, problems = checkpoints(BOOK / "04_cids.md")
    assert 2 <= count <= 3 and problems == []
    last = text.rindex(":::{admonition} Checkpoint:")
    rest = text[last:].replace(f"\n{IN_DEPTH}\n", "\n### Later\n", 1)
    md = tmp_path / "04_cids.md"
    md.write_text(text[:last] + f"{IN_DEPTH}\n\nSkip it on a first reading.\n\n" + rest)
    count_after, problems_after = checkpoints(md)
    assert count_after == count - 1
    assert len(problems_after) == 1 and "in the in-depth part" in problems_after[0]
