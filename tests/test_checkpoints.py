"""Checkpoints: short questions inside a chapter, each with a folded answer that checks itself.

A checkpoint is an admonition titled ``Checkpoint: ...`` with the class ``checkpoint``. The
next code cell is its answer: folded on the page (tag ``hide-cell``) and holding an
``assert``, so the build fails when the answer stops being true. The chapters that the
reading path asks to keep to one idea carry two or three checkpoints each.
"""

from __future__ import annotations

import ast
import re
import textwrap
from pathlib import Path

import jupytext
import pytest
from book_tools import BOOK, CHAPTER_HEADER

WITH_CHECKPOINTS = ["04_cids", "07_pinned_catalogs", "10_cloud_buckets"]
CHECKPOINT = re.compile(r"^:::\{admonition\} Checkpoint: .+\n:class: checkpoint$", re.M)


def _asserts(source: str) -> bool:
    try:
        return any(isinstance(n, ast.Assert) for n in ast.walk(ast.parse(source)))
    except SyntaxError:
        return False


def checkpoints(md: Path) -> tuple[int, list[str]]:
    """How many checkpoints a chapter has, and what is wrong with them."""
    cells = jupytext.read(md).cells
    count, problems = 0, []
    for i, cell in enumerate(cells):
        if cell.cell_type != "markdown":
            continue
        for match in CHECKPOINT.finditer(cell.source):
            count += 1
            title = match.group(0).splitlines()[0]
            # the answer is the first cell after the one that holds the question
            answer = cells[i + 1] if i + 1 < len(cells) else None
            if answer is None or answer.cell_type != "code":
                problems.append(f"{title}: no answer cell right after it")
            elif "hide-cell" not in answer.metadata.get("tags", []):
                problems.append(f"{title}: the answer is not folded (hide-cell)")
            elif not _asserts(answer.source):
                problems.append(f"{title}: the answer checks nothing (no assert)")
    return count, problems


@pytest.mark.parametrize("chapter", WITH_CHECKPOINTS)
def test_chapter_has_two_or_three_checked_checkpoints(chapter):
    count, problems = checkpoints(BOOK / f"{chapter}.md")
    assert problems == []
    assert 2 <= count <= 3, f"{chapter} has {count} checkpoints"


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
