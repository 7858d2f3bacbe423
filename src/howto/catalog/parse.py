"""Catalog YAML as plain, bounded data: the parser every catalog file goes through.

libyaml (PyYAML's C parser) builds the node tree; before anything is constructed from it,
one pass over the nodes refuses aliases (the root of "billion laughs" bombs) and nesting
deeper than ``MAX_DEPTH``.  Construction then keeps every scalar cheap: integers written
in base 60 (``1:2:3``, which PyYAML turns into big numbers digit by digit) and very long
digit strings stay strings, and so do timestamps.
"""

from __future__ import annotations

import yaml

from ..errors import CatalogError

#: A catalog file larger than this is refused unread (EUREC4A's largest is about 60 kB).
MAX_CATALOG_BYTES = 1 << 20
#: Nesting depth of YAML collections in one catalog file.
MAX_DEPTH = 32
#: Characters that can start a YAML node (``: - , [ { ?``); their count bounds the number
#: of nodes a text can hold, so it bounds the work of parsing it (see ``structure_marks``).
MARKS = ":-,[{?"
#: Longest digit string read as a number; longer ones stay text.
MAX_NUMBER_DIGITS = 64

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class CatalogLoader(_Loader):  # type: ignore[misc, valid-type]
    """A safe loader whose numbers and dates cost constant time to build."""

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int | str:
        text = str(node.value)
        if ":" in text or len(text) > MAX_NUMBER_DIGITS:
            return text
        return super().construct_yaml_int(node)

    def construct_yaml_float(self, node: yaml.ScalarNode) -> float | str:
        text = str(node.value)
        if ":" in text or len(text) > MAX_NUMBER_DIGITS:
            return text
        return super().construct_yaml_float(node)

    def construct_yaml_timestamp(self, node: yaml.ScalarNode) -> str:
        return str(node.value)


CatalogLoader.add_constructor("tag:yaml.org,2002:int", CatalogLoader.construct_yaml_int)
CatalogLoader.add_constructor("tag:yaml.org,2002:float", CatalogLoader.construct_yaml_float)
CatalogLoader.add_constructor("tag:yaml.org,2002:timestamp", CatalogLoader.construct_yaml_timestamp)


def structure_marks(text: str) -> int:
    """An upper bound, up to a factor of two, on the YAML nodes in ``text``.

    Every node but the document's root follows one of ``MARKS`` (a key's colon, a list's
    dash or comma, an opening bracket), so counting those characters, which runs at C
    speed, bounds what parsing will cost before any parsing starts.
    """
    return sum(text.count(mark) for mark in MARKS)


def _check_nodes(root: yaml.Node) -> None:
    """Refuse aliases (a node reached twice) and nesting deeper than ``MAX_DEPTH``."""
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if id(node) in seen:
            raise CatalogError(f"YAML aliases are not allowed (line {node.start_mark.line + 1})")
        seen.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            continue
        if depth > MAX_DEPTH:
            raise CatalogError(
                f"YAML nested deeper than {MAX_DEPTH} (line {node.start_mark.line + 1})"
            )
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                stack += [(key, depth + 1), (value, depth + 1)]
        else:
            stack += [(item, depth + 1) for item in node.value]


def load_catalog_text(data: bytes, where: str) -> dict:
    """Parse one catalog file: bounded, plain data only, a mapping with ``sources``."""
    if len(data) > MAX_CATALOG_BYTES:
        raise CatalogError(f"{where}: {len(data)} bytes, more than a catalog may have")
    try:
        text = data.decode("utf-8")
        loader = CatalogLoader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                doc = None
            else:
                _check_nodes(node)
                doc = loader.construct_document(node)
        finally:
            loader.dispose()
    except CatalogError as exc:
        raise CatalogError(f"{where}: {exc}") from None
    except UnicodeDecodeError:
        raise CatalogError(f"{where}: not UTF-8 text") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise CatalogError(f"{where}: invalid YAML{line}: {problem}") from None
    except (ValueError, TypeError, RecursionError) as exc:
        raise CatalogError(f"{where}: invalid YAML: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("sources"), dict):
        raise CatalogError(f"{where}: not an intake catalog (no 'sources' mapping)")
    return doc


__all__ = [
    "MARKS",
    "MAX_CATALOG_BYTES",
    "MAX_DEPTH",
    "MAX_NUMBER_DIGITS",
    "CatalogLoader",
    "load_catalog_text",
    "structure_marks",
]
