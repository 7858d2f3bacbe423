"""A pytest plugin for the nbval runs of tests/test_book.py: glued values are not outputs.

myst-nb's ``glue`` records a value as a display output of MIME type
``application/papermill.record/…``, which the book build keeps out of the executed copies
(the value goes into the page instead).  When nbval runs a chapter again, those records
appear as output the copy does not have; they are left out of the comparison.  What a
glued value says is checked by the chapter's own assertion cells.
"""

from __future__ import annotations

from nbval.plugin import IPyNbFile

GLUE_PREFIX = "application/papermill.record/"
GLUE_TYPES = tuple(
    GLUE_PREFIX + kind
    for kind in ("text/plain", "text/html", "text/markdown", "image/png", "image/svg+xml")
)

_init = IPyNbFile.__init__


def _with_glue_skipped(self: IPyNbFile, *args: object, **kwargs: object) -> None:
    _init(self, *args, **kwargs)
    self.skip_compare = (*self.skip_compare, *GLUE_TYPES)


IPyNbFile.__init__ = _with_glue_skipped
