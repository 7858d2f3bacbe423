"""Every demonstration in the book proves its claim, or the build fails.

The convention, checked here on the chapters' sources (read with jupytext, not executed):

- a code cell that demonstrates a claim carries the cell tag ``demo``;
- the next code cell carries the tags ``assert`` and ``remove-cell`` (run by the build, not
  shown on the page) and holds ``assert`` statements about what the demo produced;
- a chapter that runs code has at least one demo;
- a number quoted in the prose comes from an output through myst-nb's glue: every
  ``{glue:...}`` name in a chapter's prose is glued by a code cell of that chapter.
"""

from __future__ import annotations

import ast
import re
import textwrap
from pathlib import Path

import jupytext
import pytest
from book_tools import CHAPTER_HEADER, ROOT, toc_files

CHAPTERS = [f for f in toc_files() if (ROOT / f"{f}.md").exists()]

#: ``{glue}`name```, ``{glue:text}`name:.1f``` (the part after a colon is a format).
GLUE_ROLE = re.compile(r"\{glue(?::[a-z]+)?\}`([^`:]+)(?::[^`]*)?`")
#: ``{glue:figure} name`` and the other glue directives, fenced with backticks or colons.
GLUE_DIRECTIVE = re.compile(r"^(?:```|:::)\{glue(?::[a-z]+)?\}\s+(\S+)", re.M)
GLUED = re.compile(r"\bglue\(\s*[\"']([^\"']+)[\"']")


def _tags(cell) -> set[str]:
    return set(cell.metadata.get("tags", []))


def _has_assert(source: str) -> bool:
    """Whether the cell's code holds an ``assert`` statement (comments and strings aside)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return False
    return any(isinstance(node, ast.Assert) for node in ast.walk(tree))


def demonstration_problems(md: Path) -> list[str]:
    """What breaks the demonstration convention in one chapter (empty: nothing)."""
    notebook = jupytext.read(md)
    cells = notebook.cells
    # a page without a kernel (the intro) is not executed: its code blocks are examples
    executed = "kernelspec" in notebook.metadata
    code = [c for c in cells if c.cell_type == "code" and executed]
    problems = []
    for i, cell in enumerate(code):
        tags = _tags(cell)
        if "demo" in tags:
            after = code[i + 1] if i + 1 < len(code) else None
            if after is None or not {"assert", "remove-cell"} <= _tags(after):
                problems.append(
                    f"demo not followed by an assert/remove-cell cell: {cell.source[:60]!r}"
                )
        if "assert" in tags:
            if not _has_assert(cell.source):
                problems.append(f"assertion cell holds no assert: {cell.source[:60]!r}")
            if "remove-cell" not in tags:
                problems.append(f"assertion cell is not removed from the page: "
                                f"{cell.source[:60]!r}")
            if i == 0 or "demo" not in _tags(code[i - 1]):
                problems.append(f"assertion cell follows no demo: {cell.source[:60]!r}")
    if code and not any("demo" in _tags(c) for c in code):
        problems.append("the chapter runs code but has no demo")
    prose = "\n".join(c.source for c in cells if c.cell_type == "markdown")
    used = set(GLUE_ROLE.findall(prose)) | set(GLUE_DIRECTIVE.findall(prose))
    glued = {name for c in code for name in GLUED.findall(c.source)}
    problems += [f"{{glue}} name not glued in this chapter: {name}" for name in sorted(used - glued)]
    return problems


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_demo_is_checked_and_every_glued_number_exists(chapter):
    assert demonstration_problems(ROOT / f"{chapter}.md") == []


HEADER = CHAPTER_HEADER

GOOD = HEADER + textwrap.dedent("""\
    # A chapter

    ```{code-cell} ipython3
    from myst_nb import glue
    ```

    The answer is {glue:text}`answer:d`, and it has {glue}`digits` digits.

    ```{code-cell} ipython3
    :tags: [demo]

    answer = 6 * 7
    glue("answer", answer, display=False)
    glue('digits', len(str(answer)), display=False)
    ```

    ```{code-cell} ipython3
    :tags: [assert, remove-cell]

    assert answer == 42
    ```
    """)


def test_a_good_chapter_passes(tmp_path):
    md = tmp_path / "good.md"
    md.write_text(GOOD)
    assert demonstration_problems(md) == []


@pytest.mark.parametrize(
    ("expected", "old", "new"),
    [
        ("not followed", ":tags: [assert, remove-cell]", ":tags: [remove-cell]"),
        ("not removed from the page", ":tags: [assert, remove-cell]", ":tags: [assert]"),
        ("holds no assert", "assert answer == 42", "print(answer)  # assert answer == 42"),
        ("holds no assert", "assert answer == 42", "x = 'assert answer == 42'"),
        ("no demo", ":tags: [demo]", ":tags: [hide-input]"),
        ("not glued in this chapter: answer", 'glue("answer"', 'glue("other"'),
        ("not glued in this chapter: digits", "glue('digits'", "print('digits'"),
    ],
)
def test_a_bad_chapter_fails(tmp_path, expected, old, new):
    assert old in GOOD
    md = tmp_path / "bad.md"
    md.write_text(GOOD.replace(old, new))
    problems = demonstration_problems(md)
    assert any(expected in p for p in problems), problems


def test_a_demo_as_the_last_cell_fails(tmp_path):
    md = tmp_path / "bad.md"
    cut = GOOD[: GOOD.index("```{code-cell} ipython3\n:tags: [assert")]
    md.write_text(cut)
    assert any("not followed" in p for p in demonstration_problems(md))


def test_a_glue_directive_needs_its_name_glued(tmp_path):
    md = tmp_path / "bad.md"
    md.write_text(GOOD + "\n```{glue:figure} profile\n:name: fig-profile\n```\n")
    assert any("not glued in this chapter: profile" in p for p in demonstration_problems(md))


def test_a_chapter_without_code_needs_no_demo(tmp_path):
    md = tmp_path / "prose.md"
    md.write_text(HEADER + "# Prose only\n\nNo code here.\n")
    assert demonstration_problems(md) == []
