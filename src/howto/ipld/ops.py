"""Metadata-only operations on frozen datasets: concat, merge, attribute edits, renames.

Each reads the hierarchy of its input roots (never a chunk), writes new metadata, points
the new chunk keys at the *same* chunk links and freezes a new root.  The only blocks
written are DAG-CBOR hierarchy blocks (plus, rarely, the raw JSON of a metadata document
that DAG-CBOR cannot hold), so a concatenation of two 100 GB datasets costs kilobytes.

What can be combined this way is decided by the chunk grid: a chunk is a stored box of
values, and a metadata edit can only renumber boxes, never refill them.  Whenever an
operation would need a chunk that holds values from two inputs, or a partial chunk in
the middle of an array, it raises ``IncompatibleError`` saying which array and why.

The datasets are xarray-style zarr groups (format 2 or 3): arrays directly under the
root, each naming its dimensions (``_ARRAY_DIMENSIONS`` or ``dimension_names``).
Attributes of the result follow xarray's defaults: the group attributes of the first
input are kept (``combine_attrs="override"``).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from multiformats import CID

from ..errors import HowtoError
from .blocks import Backend, Blocks
from .codec import RAW, Link, as_link, encode
from .store import RootLike
from .tree import MAX_BLOCK_SIZE, META_KEYS, Tree, doc_bytes

__all__ = ["IncompatibleError", "concat", "merge", "rename", "update_attrs"]


class IncompatibleError(HowtoError, ValueError):
    """Datasets that cannot be combined without rewriting chunks (the message says why)."""


@dataclass
class _Array:
    """One zarr array of a dataset: metadata, attributes and chunk links by grid index."""

    fmt: int
    meta: dict
    attrs: dict
    chunks: dict[tuple[int, ...], Link] = field(default_factory=dict)

    @property
    def shape(self) -> list[int]:
        return list(self.meta["shape"])

    @property
    def chunk_shape(self) -> list[int]:
        if self.fmt == 2:
            return list(self.meta["chunks"])
        grid = self.meta["chunk_grid"]
        if grid.get("name") != "regular":
            raise IncompatibleError(f"chunk grid {grid.get('name')!r} is not supported")
        return list(grid["configuration"]["chunk_shape"])

    @property
    def dims(self) -> list[str]:
        names = (
            self.attrs.get("_ARRAY_DIMENSIONS")
            if self.fmt == 2
            else self.meta.get("dimension_names")
        )
        if names is None and not self.shape:
            return []  # zarr 3 leaves dimension_names out for 0-d arrays
        if names is None or None in names:
            raise IncompatibleError("an array does not name its dimensions (not an xarray dataset)")
        return list(names)

    def layout(self) -> dict:
        """Everything but shape, attributes and chunks: what must match to combine."""
        rest = {k: v for k, v in self.meta.items() if k not in ("shape", "attributes")}
        if self.fmt == 3:
            rest.pop("dimension_names", None)
        return rest

    def same(self, other: _Array) -> bool:
        return (self.meta, self.attrs, self.chunks) == (other.meta, other.attrs, other.chunks)

    def resized(self, shape: list[int], chunk_shape: list[int], dims: list[str]) -> _Array:
        """A copy with new shape, chunk shape and dimension names (and no chunks)."""
        meta, attrs = copy.deepcopy(self.meta), copy.deepcopy(self.attrs)
        meta["shape"] = shape
        if self.fmt == 2:
            meta["chunks"] = chunk_shape
            attrs["_ARRAY_DIMENSIONS"] = dims
        else:
            meta["chunk_grid"]["configuration"]["chunk_shape"] = chunk_shape
            if dims or "dimension_names" in meta:
                meta["dimension_names"] = dims
        return _Array(self.fmt, meta, attrs)

    # chunk keys: v2 "i.j" (or "i/j"), v3 default "c/i/j" (or the v2 style); 0-d: "0" / "c"
    def _key_style(self) -> tuple[str | None, str]:
        if self.fmt == 2:
            return None, self.meta.get("dimension_separator") or "."
        encoding = self.meta.get("chunk_key_encoding", {"name": "default"})
        default = encoding.get("name") == "default"
        separator = encoding.get("configuration", {}).get("separator", "/" if default else ".")
        return ("c" if default else None), separator

    def chunk_key(self, index: tuple[int, ...]) -> str:
        prefix, sep = self._key_style()
        body = sep.join(map(str, index))
        if prefix is None:
            return body or "0"
        return f"{prefix}{sep}{body}" if index else prefix

    def chunk_index(self, key: str) -> tuple[int, ...]:
        prefix, sep = self._key_style()
        body = key
        if prefix is not None:
            if key == prefix:
                return ()
            body = key.removeprefix(prefix + sep)
            if body == key:
                raise IncompatibleError(f"{key!r} is not a chunk key of this array")
        if not self.shape and body == "0":
            return ()
        try:
            return tuple(int(part) for part in body.split(sep))
        except ValueError:
            raise IncompatibleError(f"{key!r} is not a chunk key of this array") from None


@dataclass
class _Dataset:
    fmt: int
    group: dict  # the .zgroup or zarr.json document
    attrs: dict
    arrays: dict[str, _Array]
    subgroups: dict[str, Any]  # kept verbatim as hierarchy sub-trees
    consolidated: bool

    @property
    def dims(self) -> dict[str, int]:
        sizes: dict[str, int] = {}
        for name, array in self.arrays.items():
            for dim, size in zip(array.dims, array.shape, strict=True):
                if sizes.setdefault(dim, size) != size:
                    raise IncompatibleError(f"dimension {dim!r} has two sizes (see {name!r})")
        return sizes

    def coordinates(self) -> set[str]:
        """Names xarray treats as coordinates: dimension coordinates and listed ones."""
        names = {n for n, a in self.arrays.items() if a.dims == [n]}
        for attrs in [self.attrs, *(a.attrs for a in self.arrays.values())]:
            listed = attrs.get("coordinates")
            if isinstance(listed, str):
                names.update(listed.split())
        return names & set(self.arrays)


def _leaves(node: dict, prefix: str = "") -> Iterator[tuple[str, Any]]:
    for name, value in node.items():
        if name in META_KEYS:
            continue
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}{name}/")
        else:
            yield prefix + name, value


def _load(root: RootLike, blocks: Blocks) -> _Dataset:
    tree = Tree(blocks, as_link(root))
    top = tree.materialize()
    if "zarr.json" in top:
        fmt, group = 3, tree.doc(["zarr.json"])
        if group.get("node_type") != "group":
            raise IncompatibleError(f"root {root} is a zarr array, not a group")
        attrs = group.get("attributes", {})
        consolidated = group.get("consolidated_metadata") is not None
    elif ".zgroup" in top:
        fmt, group = 2, tree.doc([".zgroup"])
        attrs = tree.doc([".zattrs"]) or {}
        consolidated = ".zmetadata" in top
    else:
        raise IncompatibleError(f"root {root} is not a zarr group")
    arrays: dict[str, _Array] = {}
    subgroups: dict[str, Any] = {}
    for name, node in top.items():
        if name in META_KEYS:
            continue
        if not isinstance(node, dict):
            raise IncompatibleError(f"root {root} has a chunk {name!r} outside any array")
        meta = tree.doc([name, ".zarray" if fmt == 2 else "zarr.json"])
        if meta is None or (fmt == 3 and meta.get("node_type") != "array"):
            subgroups[name] = node
            continue
        if fmt == 2:
            array = _Array(fmt, meta, tree.doc([name, ".zattrs"]) or {})
        else:
            array = _Array(fmt, meta, meta.get("attributes", {}))
        for key, link in _leaves(node):
            array.chunks[array.chunk_index(key)] = link
        arrays[name] = array
    return _Dataset(fmt, group, attrs, arrays, subgroups, consolidated)


def _inline_or_raw(doc: Any, emitted: list[tuple[Link, bytes]]) -> Any:
    try:
        encode(doc)
        return doc
    except (ValueError, TypeError):  # NaN and friends: keep the JSON text as a raw block
        data = json.dumps(doc).encode()
        link = Link.of(data, RAW)
        emitted.append((link, data))
        return link


def _put_path(node: dict, key: str, value: Any) -> None:
    *folders, last = key.split("/")
    for folder in folders:
        node = node.setdefault(folder, {})
    node[last] = value


def _group_docs(node: dict, blocks: Blocks, prefix: str) -> Iterator[tuple[str, Any]]:
    """``(path, document)`` of every metadata document in a verbatim sub-tree."""
    for name, value in node.items():
        if name in META_KEYS:
            yield prefix + name, json.loads(blocks.get(value)) if isinstance(value, Link) else value
        elif isinstance(value, dict):
            yield from _group_docs(value, blocks, f"{prefix}{name}/")


def _save(ds: _Dataset, blocks: Blocks, limit: int = MAX_BLOCK_SIZE) -> CID:
    """Freeze ``ds`` as a new hierarchy over the same chunk links; return its root."""
    emitted: list[tuple[Link, bytes]] = []
    top: dict[str, Any] = {}
    docs: dict[str, Any] = {}  # for consolidated metadata: path -> document
    group = copy.deepcopy(ds.group)
    for name, array in sorted(ds.arrays.items()):
        node: dict[str, Any] = {}
        if ds.fmt == 2:
            docs[f"{name}/.zarray"], docs[f"{name}/.zattrs"] = array.meta, array.attrs
            node[".zarray"] = _inline_or_raw(array.meta, emitted)
            node[".zattrs"] = _inline_or_raw(array.attrs, emitted)
        else:
            meta = dict(array.meta, attributes=array.attrs)
            docs[name] = meta
            node["zarr.json"] = _inline_or_raw(meta, emitted)
        for index, link in array.chunks.items():
            _put_path(node, array.chunk_key(index), link)
        top[name] = node
    for name, sub in ds.subgroups.items():
        top[name] = sub
        for path, doc in _group_docs(sub, blocks, f"{name}/"):
            docs[path if ds.fmt == 2 else path.removesuffix("/zarr.json")] = doc
    if ds.fmt == 2:
        top[".zgroup"] = _inline_or_raw(group, emitted)
        top[".zattrs"] = _inline_or_raw(ds.attrs, emitted)
        if ds.consolidated:
            docs.update({".zgroup": group, ".zattrs": ds.attrs})
            consolidated = {"metadata": docs, "zarr_consolidated_format": 1}
            top[".zmetadata"] = _inline_or_raw(consolidated, emitted)
    else:
        group["attributes"] = ds.attrs
        if ds.consolidated:
            group["consolidated_metadata"] = {
                "kind": "inline",
                "must_understand": False,
                "metadata": docs,
            }
        top["zarr.json"] = _inline_or_raw(group, emitted)
    blocks.put_many(emitted)
    tree = Tree(blocks)
    tree.adopt(top)
    return tree.freeze(limit).cid


def _load_all(roots: Sequence[RootLike], blocks: Blocks) -> list[_Dataset]:
    if not roots:
        raise ValueError("no datasets given")
    datasets = [_load(root, blocks) for root in roots]
    formats = {ds.fmt for ds in datasets}
    if len(formats) > 1:
        raise IncompatibleError(f"cannot combine zarr formats {sorted(formats)} without rewriting")
    return datasets


def _difference(a: dict, b: dict) -> str:
    keys = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    return ", ".join(f"{k}: {a.get(k)!r} vs {b.get(k)!r}" for k in keys)


def _check_alike(name: str, arrays: Sequence[_Array], what: str) -> None:
    """Same layout and attributes in every input, or a message naming the difference."""
    first = arrays[0]
    for i, array in enumerate(arrays[1:], start=1):
        if array.dims != first.dims:
            raise IncompatibleError(
                f"cannot {what} {name!r}: its dimensions are {first.dims} in dataset 0 but "
                f"{array.dims} in dataset {i}"
            )
        if array.layout() != first.layout():
            raise IncompatibleError(
                f"cannot {what} {name!r}: its encoding differs between dataset 0 and dataset "
                f"{i} ({_difference(first.layout(), array.layout())}); the chunks would have "
                "to be re-encoded"
            )
        if array.attrs != first.attrs:
            raise IncompatibleError(
                f"cannot {what} {name!r}: its attributes differ between dataset 0 and dataset "
                f"{i} ({_difference(first.attrs, array.attrs)}); the stored values may mean "
                "different things"
            )


def _blocks(backend: Backend | None) -> Blocks:
    return backend if isinstance(backend, Blocks) else Blocks(backend)


def concat(roots: Sequence[RootLike], dim: str, *, backend: Backend | None = None) -> CID:
    """Concatenate datasets along ``dim`` by re-keying chunk links; return the new root.

    If ``dim`` is a dimension of the inputs, arrays along it are joined end to end; each
    input but the last must fill its last chunk along ``dim``.  Otherwise ``dim`` is a
    new leading dimension (one chunk per input): every data variable, and every
    coordinate that differs between inputs, is stacked; identical coordinates are kept
    once, as ``xarray.concat`` does.  Arrays without ``dim`` must be identical.
    """
    blocks = _blocks(backend)
    datasets = _load_all(roots, blocks)
    names = [set(ds.arrays) for ds in datasets]
    for i, these in enumerate(names[1:], start=1):
        if these != names[0]:
            raise IncompatibleError(
                f"dataset {i} has other variables than dataset 0 "
                f"(only in one of them: {sorted(these ^ names[0])})"
            )
    having = [i for i, ds in enumerate(datasets) if dim in ds.dims]
    if having and len(having) != len(datasets):
        raise IncompatibleError(f"dimension {dim!r} is in datasets {having} but not in the others")
    _check_subgroups(datasets)
    first = datasets[0]
    coords = set().union(*(ds.coordinates() for ds in datasets))
    result = _Dataset(first.fmt, first.group, first.attrs, {}, first.subgroups, first.consolidated)
    for name in sorted(names[0]):
        arrays = [ds.arrays[name] for ds in datasets]
        identical = all(a.same(arrays[0]) for a in arrays[1:])
        if having and dim not in arrays[0].dims:
            if not identical:
                raise IncompatibleError(
                    f"{name!r} does not have dimension {dim!r} but differs between datasets"
                )
            result.arrays[name] = arrays[0]
        elif having:
            result.arrays[name] = _join(name, arrays, arrays[0].dims.index(dim))
        elif identical and name in coords:
            result.arrays[name] = arrays[0]
        elif arrays[0].dims == [name]:
            raise IncompatibleError(
                f"the dimension coordinate {name!r} differs between datasets: xarray would "
                "align the datasets on it, and aligning means writing new chunks"
            )
        else:
            result.arrays[name] = _stack(name, arrays, dim)
    return _save(result, blocks)


def _join(name: str, arrays: list[_Array], axis: int) -> _Array:
    _check_alike(name, arrays, "concatenate")
    first = arrays[0]
    dim = first.dims[axis]
    size = first.chunk_shape[axis]
    for i, array in enumerate(arrays):
        other = [n for a, n in enumerate(array.shape) if a != axis]
        if other != [n for a, n in enumerate(first.shape) if a != axis]:
            raise IncompatibleError(
                f"cannot concatenate {name!r} along {dim!r}: its shape is {first.shape} in "
                f"dataset 0 but {array.shape} in dataset {i}, which differ along another axis"
            )
        if i < len(arrays) - 1 and array.shape[axis] % size:
            raise IncompatibleError(
                f"cannot concatenate {name!r} along {dim!r} without rewriting chunks: dataset "
                f"{i} has {array.shape[axis]} values along {dim!r}, not a multiple of the chunk "
                f"size {size}, so its last chunk is partial and the chunks of dataset {i + 1} "
                "would not line up with the grid"
            )
    shape = list(first.shape)
    shape[axis] = sum(a.shape[axis] for a in arrays)
    out = first.resized(shape, first.chunk_shape, first.dims)
    offset = 0
    for array in arrays:
        for index, link in array.chunks.items():
            moved = list(index)
            moved[axis] += offset
            out.chunks[tuple(moved)] = link
        offset += -(-array.shape[axis] // size)
    return out


def _stack(name: str, arrays: list[_Array], dim: str) -> _Array:
    _check_alike(name, arrays, "stack")
    first = arrays[0]
    for i, array in enumerate(arrays):
        if array.shape != first.shape:
            raise IncompatibleError(
                f"cannot stack {name!r} along the new dimension {dim!r}: its shape is "
                f"{first.shape} in dataset 0 but {array.shape} in dataset {i}; padding it "
                "would mean writing new chunks"
            )
    if dim in first.dims:
        raise IncompatibleError(f"{name!r} already has a dimension {dim!r}")
    out = first.resized([len(arrays), *first.shape], [1, *first.chunk_shape], [dim, *first.dims])
    if first.fmt == 3:
        out.meta["codecs"] = _codecs_with_leading_axis(name, out.meta["codecs"])
    for k, array in enumerate(arrays):
        for index, link in array.chunks.items():
            out.chunks[(k, *index)] = link
    return out


def _codecs_with_leading_axis(name: str, codecs: list) -> list:
    """zarr v3 codecs for a chunk that gains a leading axis of length 1.

    Such an axis does not move a single byte (in C or F order alike); only codecs that
    spell out the number of dimensions need adjusting.
    """
    out = []
    for codec in codecs:
        codec = copy.deepcopy(codec)
        kind = codec.get("name") if isinstance(codec, dict) else codec
        config = codec.get("configuration", {}) if isinstance(codec, dict) else {}
        if kind == "transpose":
            config["order"] = [0, *(axis + 1 for axis in config["order"])]
        elif kind == "sharding_indexed":
            config["chunk_shape"] = [1, *config["chunk_shape"]]
            config["codecs"] = _codecs_with_leading_axis(name, config.get("codecs", []))
        out.append(codec)
    return out


def _check_subgroups(datasets: list[_Dataset]) -> None:
    first = datasets[0].subgroups
    for i, ds in enumerate(datasets[1:], start=1):
        for group in first.keys() & ds.subgroups.keys():
            if ds.subgroups[group] != first[group]:
                raise IncompatibleError(f"subgroup {group!r} differs in dataset 0 and {i}")


def merge(roots: Sequence[RootLike], *, backend: Backend | None = None) -> CID:
    """One dataset with the variables of all; shared names must be identical arrays.

    Dimensions that several inputs use must have the same size.  Identical arrays are
    recognised by their chunk links, so a shared coordinate costs no comparison of data.
    """
    blocks = _blocks(backend)
    datasets = _load_all(roots, blocks)
    first = datasets[0]
    sizes: dict[str, tuple[int, int]] = {}
    for i, ds in enumerate(datasets):
        for dim, size in ds.dims.items():
            seen, where = sizes.setdefault(dim, (size, i))
            if seen != size:
                raise IncompatibleError(
                    f"dimension {dim!r} has size {seen} in dataset {where} but {size} in "
                    f"dataset {i}"
                )
    _check_subgroups(datasets)
    result = _Dataset(first.fmt, first.group, first.attrs, {}, {}, first.consolidated)
    owner: dict[str, int] = {}
    for i, ds in enumerate(datasets):
        result.subgroups.update(ds.subgroups)
        for name, array in ds.arrays.items():
            if name in result.arrays and not result.arrays[name].same(array):
                raise IncompatibleError(
                    f"variable {name!r} is in dataset {owner[name]} and dataset {i} with "
                    "different content; merge needs disjoint variables or identical copies"
                )
            result.arrays.setdefault(name, array)
            owner.setdefault(name, i)
    return _save(result, blocks)


def update_attrs(
    root: RootLike,
    attrs: Mapping[str, Any],
    variable: str | None = None,
    *,
    drop: Iterable[str] = (),
    backend: Backend | None = None,
) -> CID:
    """Set (and ``drop``) attributes of the dataset, or of one variable; return the new root."""
    blocks = _blocks(backend)
    ds = _load(root, blocks)
    if variable is not None and variable not in ds.arrays:
        raise KeyError(f"no variable {variable!r} in {root}")
    target = ds.attrs if variable is None else ds.arrays[variable].attrs
    if "_ARRAY_DIMENSIONS" in {*attrs, *drop} and variable is not None:
        raise ValueError("dimension names are changed with rename(), not as attributes")
    target.update(copy.deepcopy(dict(attrs)))
    for name in drop:
        target.pop(name, None)
    doc_bytes(target)  # attributes must be JSON
    return _save(ds, blocks)


def rename(root: RootLike, names: Mapping[str, str], *, backend: Backend | None = None) -> CID:
    """Rename variables and dimensions (as ``xarray.Dataset.rename``); return the new root."""
    blocks = _blocks(backend)
    ds = _load(root, blocks)
    unknown = set(names) - set(ds.arrays) - set(ds.dims)
    if unknown:
        raise KeyError(f"not a variable or dimension of {root}: {sorted(unknown)}")
    arrays: dict[str, _Array] = {}
    for name, array in ds.arrays.items():
        new = names.get(name, name)
        if new in arrays:
            raise ValueError(f"renaming would give two variables the name {new!r}")
        dims = [names.get(d, d) for d in array.dims]
        renamed = array.resized(array.shape, array.chunk_shape, dims)
        renamed.chunks = array.chunks
        _rename_coordinates(renamed.attrs, names)
        arrays[new] = renamed
    clash = set(arrays) & set(ds.subgroups)
    if clash:
        raise ValueError(f"renaming would clash with subgroups {sorted(clash)}")
    ds.arrays = arrays
    _rename_coordinates(ds.attrs, names)
    return _save(ds, blocks)


def _rename_coordinates(attrs: dict, names: Mapping[str, str]) -> None:
    listed = attrs.get("coordinates")
    if isinstance(listed, str):
        attrs["coordinates"] = " ".join(names.get(n, n) for n in listed.split())
