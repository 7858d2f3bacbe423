"""The zarr hierarchy as one IPLD tree, and how it is cut into blocks.

Layout.  A node is a DAG-CBOR map from one key component to a value.  Under a metadata
name (``.zgroup``, ``.zarray``, ``.zattrs``, ``.zmetadata``, ``zarr.json``) the value is
the JSON document itself, decoded, so IPLD tools can walk into it.  Under any other name
it is a chunk (a link to a raw block) or a deeper node (a map).  A zarr key ``a/c/0/1``
is the path ``root["a"]["c"]["0"]["1"]``.

Two escapes keep that readable at any size, and readers follow both transparently:

* any value may be a link to a DAG-CBOR block holding what would have been inline (a
  node, or under a metadata name the document); a document that JSON-to-CBOR cannot
  carry faithfully (``NaN``, huge integers) is kept as a raw block of its JSON bytes;
* a node too large for one block becomes a *shard index*: a list of
  ``[first_key, link]`` pairs in key order, each link naming a map (or, for very large
  nodes, another index) that holds the keys from ``first_key`` up to the next entry's.

Freezing emits one block when the whole tree fits in ``limit`` bytes.  Otherwise every
group and array gets its own block, and a node that is still too large moves its
biggest inline children out and finally shards its keys.  The cut depends only on the
tree, so equal hierarchies freeze to equal CIDs.
"""

from __future__ import annotations

import json
from bisect import bisect_right
from collections.abc import Iterator
from operator import itemgetter
from typing import Any

from ..errors import IntegrityError
from .blocks import Blocks
from .codec import DAG_CBOR, RAW, Link, decode, encode, links_in

__all__ = ["MAX_BLOCK_SIZE", "META_KEYS", "NODE_MARKERS", "Tree", "doc_bytes", "inline_doc"]

META_KEYS = frozenset({".zarray", ".zgroup", ".zattrs", ".zmetadata", "zarr.json"})
NODE_MARKERS = (".zarray", ".zgroup", "zarr.json")

#: Soft block size limit of IPFS; bitswap refuses blocks over 2 MiB.
MAX_BLOCK_SIZE = 1 << 20

_MAP_HEAD = 9  # the largest CBOR map or array head
_LINK_SIZE = 41  # tag 42, a byte-string head and 0x00 before a 36-byte CIDv1


def inline_doc(data: bytes) -> Any | None:
    """The decoded JSON document to inline, or ``None`` when it would not round-trip."""
    try:
        doc = json.loads(data)
        encode(doc)
    except (ValueError, TypeError, UnicodeDecodeError):
        return None
    return doc


def doc_bytes(doc: Any) -> bytes:
    """JSON bytes of an inlined document, as zarr reads them back."""
    return json.dumps(doc).encode()


class Tree:
    """A hierarchy held partly in memory, partly as blocks loaded on first use."""

    def __init__(self, blocks: Blocks, root: Link | None = None) -> None:
        self.blocks = blocks
        self.root = root  # the CID of the current content; None while unfrozen
        self._top: Any = {} if root is None else root
        self._loaded = root is None
        self._cache: dict[Link, Any] = {}

    def reset(self, root: Link | None) -> None:
        """Show the hierarchy under ``root`` (or an empty one) from now on."""
        self.root = root
        self._top = {} if root is None else root
        self._loaded = root is None

    def adopt(self, top: dict) -> None:
        """Show the fully loaded hierarchy ``top`` (unfrozen) from now on."""
        self.root = None
        self._top = top
        self._loaded = True

    # -- reading -----------------------------------------------------------------

    def load(self, link: Link) -> Any:
        """The decoded DAG-CBOR block ``link`` (verified, cached)."""
        try:
            return self._cache[link]
        except KeyError:
            pass
        if link.codec != DAG_CBOR:
            raise IntegrityError(f"{link} should be a DAG-CBOR block, not codec {link.codec:#x}")
        try:
            value = decode(self.blocks.get(link))
        except ValueError as exc:
            raise IntegrityError(f"block {link} is not valid DAG-CBOR: {exc}") from None
        self._cache[link] = value
        return value

    def _container(self, value: Any) -> dict | list | None:
        """The map or shard index a node value stands for; ``None`` for a chunk."""
        while isinstance(value, Link):
            if value.codec != DAG_CBOR:
                return None
            value = self.load(value)
        return value if isinstance(value, dict | list) else None

    def _child(self, container: dict | list, name: str) -> Any:
        while isinstance(container, list):
            index = bisect_right(container, name, key=itemgetter(0)) - 1
            if index < 0:
                return None
            shard = self._container(container[index][1])
            if shard is None:
                raise IntegrityError(f"shard {container[index][1]} is neither a map nor an index")
            container = shard
        return container.get(name)

    def entries(self, container: dict | list) -> Iterator[tuple[str, Any]]:
        """``(name, value)`` of a node, following shard indexes in key order."""
        if isinstance(container, dict):
            yield from list(container.items())
            return
        for _, link in container:
            shard = self._container(link)
            if shard is None:
                raise IntegrityError(f"shard {link} is neither a map nor an index")
            yield from self.entries(shard)

    def lookup(self, parts: list[str]) -> Any:
        """The value at a key path, or ``None``."""
        value = self._top
        for depth, part in enumerate(parts):
            if depth and parts[depth - 1] in META_KEYS:
                return None
            container = self._container(value)
            if container is None:
                return None
            value = self._child(container, part)
            if value is None:
                return None
        return value

    def node(self, parts: list[str]) -> dict | list | None:
        """The node at a key path (``[]`` is the root), or ``None``."""
        if parts and parts[-1] in META_KEYS:
            return None
        value = self.lookup(parts) if parts else self._top
        return None if value is None else self._container(value)

    def leaf_bytes(self, name: str, value: Any) -> bytes:
        """The bytes zarr reads for the leaf ``value`` stored under ``name``."""
        if name in META_KEYS:
            if isinstance(value, Link):
                if value.codec == RAW:
                    return self.blocks.get(value)
                value = self.load(value)
            return doc_bytes(value)
        if isinstance(value, Link) and value.codec == RAW:
            return self.blocks.get(value)
        raise IntegrityError(f"{name!r} is a node, not a chunk")

    def doc(self, parts: list[str]) -> Any:
        """The metadata document at ``parts`` as JSON values, or ``None``."""
        value = self.lookup(parts)
        if value is None:
            return None
        if isinstance(value, Link):
            return json.loads(self.leaf_bytes(parts[-1], value))
        return value

    def is_leaf(self, name: str, value: Any) -> bool:
        return name in META_KEYS or (isinstance(value, Link) and value.codec != DAG_CBOR)

    def keys(self, parts: list[str]) -> Iterator[str]:
        """Every key below the node at ``parts``, relative to it."""
        container = self.node(parts)
        if container is None:
            return
        for name, value in self.entries(container):
            if self.is_leaf(name, value):
                yield name
            else:
                for rest in self.keys([*parts, name]):
                    yield f"{name}/{rest}"

    def same_content(self, other: Tree) -> bool:
        """Whether ``other`` shows the same hierarchy: the same root CID when both are
        frozen, else the same keys and values (loading the hierarchy blocks to compare)."""
        if self.root is not None and other.root is not None:
            return self.root == other.root
        return self.materialize() == other.materialize()

    # -- writing -----------------------------------------------------------------

    def materialize(self) -> dict:
        """Load every hierarchy block (not the chunks) so the tree can be edited."""
        if not self._loaded:
            self._top = self._full(self._top, is_doc=False)
            self._loaded = True
        return self._top

    def _full(self, value: Any, is_doc: bool) -> Any:
        if is_doc:
            if isinstance(value, Link) and value.codec == DAG_CBOR:
                return self.load(value)
            return value
        container = self._container(value)
        if container is None:
            return value
        return {name: self._full(v, name in META_KEYS) for name, v in self.entries(container)}

    def set(self, parts: list[str], value: Any) -> None:
        """Put ``value`` (a ``Link`` or, under a metadata name, a document) at ``parts``."""
        node = self.materialize()
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict) or part in META_KEYS:
                raise ValueError(f"{'/'.join(parts[: depth + 1])!r} is a chunk, not a folder")
            node = child
        if isinstance(node.get(parts[-1]), dict) and parts[-1] not in META_KEYS:
            raise ValueError(f"{'/'.join(parts)!r} is a folder, not a chunk")
        node[parts[-1]] = value
        self.root = None

    def delete(self, parts: list[str]) -> bool:
        """Remove the leaf at ``parts`` and any folder it leaves empty; ``False`` if absent."""
        path = [self.materialize()]
        for part in parts[:-1]:
            child = path[-1].get(part)
            if not isinstance(child, dict):
                return False
            path.append(child)
        if parts[-1] not in path[-1]:
            return False
        del path[-1][parts[-1]]
        for depth in range(len(parts) - 1, 0, -1):
            if path[depth]:
                break
            del path[depth - 1][parts[depth - 1]]
        self.root = None
        return True

    # -- freezing ----------------------------------------------------------------

    def freeze(self, limit: int = MAX_BLOCK_SIZE) -> Link:
        """Write the hierarchy blocks and return the root's CID."""
        if self.root is not None:
            return self.root
        top = self.materialize()
        emitted: list[tuple[Link, bytes]] = []
        data = encode(top)
        if len(data) > limit:
            data = encode(self._pack(top, limit, emitted))
        root = Link.of(data, DAG_CBOR)
        emitted.append((root, data))
        self.blocks.put_many(emitted)
        self.root = root
        return root

    @staticmethod
    def _emit(value: Any, emitted: list[tuple[Link, bytes]]) -> Link:
        data = encode(value)
        link = Link.of(data, DAG_CBOR)
        emitted.append((link, data))
        return link

    def _pack(self, node: dict, limit: int, emitted: list) -> dict | list:
        out: dict[str, Any] = {}
        for name, value in node.items():
            if name in META_KEYS or not isinstance(value, dict):
                out[name] = value
                continue
            packed = self._pack(value, limit, emitted)
            if any(marker in value for marker in NODE_MARKERS):
                packed = self._emit(packed, emitted)  # one block per group or array
            out[name] = packed
        sizes = {name: len(encode(name)) + len(encode(value)) for name, value in out.items()}
        total = _MAP_HEAD + sum(sizes.values())
        if total <= limit:
            return out
        movable = sorted(
            ((size, name) for name, size in sizes.items() if isinstance(out[name], dict | list)),
            reverse=True,
        )
        for size, name in movable:
            if total <= limit:
                return out
            out[name] = self._emit(out[name], emitted)
            sizes[name] = len(encode(name)) + _LINK_SIZE
            total -= size - sizes[name]
        if total <= limit:
            return out
        return self._shard(out, sizes, limit, emitted)

    def _shard(self, out: dict, sizes: dict[str, int], limit: int, emitted: list) -> list:
        groups = _greedy(sorted(out), lambda name: sizes[name], limit - _MAP_HEAD)
        index = [[group[0], self._emit({n: out[n] for n in group}, emitted)] for group in groups]
        while len(encode(index)) > limit:
            groups = _greedy(index, lambda entry: len(encode(entry)), limit - _MAP_HEAD)
            index = [[group[0][0], self._emit(group, emitted)] for group in groups]
        return index

    # -- walking -----------------------------------------------------------------

    def walk(self, root: Link) -> Iterator[tuple[Link, bytes]]:
        """Every block reachable from ``root``, each once, depth first, parents first."""
        seen: set[Link] = set()
        stack = [root]
        while stack:
            link = stack.pop()
            if link in seen:
                continue
            seen.add(link)
            data = self.blocks.get(link)
            yield link, data
            if link.codec == DAG_CBOR:
                stack.extend(reversed(links_in(decode(data))))


def _greedy(items: list, size_of: Any, budget: int) -> list[list]:
    """Consecutive groups of ``items`` whose sizes add up to at most ``budget`` each."""
    groups: list[list] = [[]]
    used = 0
    for item in items:
        size = size_of(item)
        if groups[-1] and used + size > budget:
            groups.append([])
            used = 0
        groups[-1].append(item)
        used += size
    return groups
