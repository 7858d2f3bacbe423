"""Opening a catalog locked by CID as data: every file parsed once, every entry judged on its own.

A catalog reached by CID is never given to intake as YAML.  Its files are read through
the verified ``ipfs://`` file system, parsed by ``parse`` (bounded, no aliases), and each
entry gets a verdict from ``policy``: verified, location, or refused.  The tree becomes
intake ``Catalog`` objects with environment and shell access switched off, in which

- a verified entry opens as intake would open it, reading only checked bytes;
- a location entry opens only when the catalog was opened with ``verified_only=False``,
  marked ``metadata["howto"] = {"verified": False}``;
- a refused entry stays listed, and opening it raises a one-line ``CatalogError`` that
  names the file, the entry and the reason.

Sub-catalogs are followed depth first; a file reached again is parsed and built once and
shared, and an entry that would close a cycle is refused on its own.  The tree as a whole
is bounded (``MAX_FILES`` files, ``MAX_TOTAL_BYTES`` bytes, ``MAX_TOTAL_MARKS`` YAML
structure marks, ``MAX_TOTAL_ENTRIES`` entries): a sub-catalog past a limit is refused.
"""

from __future__ import annotations

import posixpath
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

from intake.catalog import Catalog
from intake.catalog.entry import CatalogEntry
from intake.catalog.local import LocalCatalogEntry

from ..errors import CatalogError, HowtoError, UnavailableError, UnverifiedDataWarning
from .parse import MAX_CATALOG_BYTES, MAX_DEPTH, load_catalog_text, structure_marks
from .policy import (
    LOCATION,
    MAX_REFERENCE_BYTES,
    REFUSED,
    VERIFIED,
    Judged,
    entry_error,
    judge,
    plain,
    reference_targets,
)

#: Catalog files in one tree (EUREC4A has 148).
MAX_FILES = 1024
#: Bytes of all catalog files of one tree together (EUREC4A has about 0.5 MiB).
MAX_TOTAL_BYTES = 16 << 20
#: YAML structure marks (``parse.structure_marks``) of one tree: this bounds the parsing
#: work, as bytes alone do not (EUREC4A has about 22 000).
MAX_TOTAL_MARKS = 1 << 17
#: Entries in one catalog file.
MAX_ENTRIES = 4096
#: Entries in one tree (EUREC4A has about 1600).
MAX_TOTAL_ENTRIES = 1 << 14

#: ``read(url, limit)``: a file's verified bytes, refused if larger than ``limit``.
Reader = Callable[[str, int], bytes]


@dataclass
class CatalogFile:
    """One parsed catalog file: its own fields and the verdict on each entry."""

    url: str
    name: str
    description: str
    metadata: dict
    entries: dict[str, Judged] = field(default_factory=dict)


@dataclass
class Tree:
    """Every catalog file reached from ``root``, children before parents."""

    root: str
    files: dict[str, CatalogFile]

    def entries(self) -> Iterator[tuple[str, Judged]]:
        """(file URL, verdict) for every entry of every file, each file once."""
        for url, doc in self.files.items():
            for judged in doc.entries.values():
                yield url, judged


class TreeBudget:
    """What is left of the tree's limits while it is read."""

    def __init__(self) -> None:
        self.files = self.bytes = self.marks = self.entries = 0

    def take(self, url: str, data: bytes, text_marks: int, entries: int) -> None:
        limits = [
            (self.bytes + len(data), MAX_TOTAL_BYTES, "bytes of catalog files"),
            (self.marks + text_marks, MAX_TOTAL_MARKS, "YAML structure marks"),
            (self.entries + entries, MAX_TOTAL_ENTRIES, "entries"),
        ]
        for total, limit, what in limits:
            if total > limit:
                raise CatalogError(f"{url}: the catalog tree would pass {limit} {what}")
        self.files += 1
        self.bytes += len(data)
        self.marks += text_marks
        self.entries += entries


def read_catalog_file(url: str, read: Reader, budget: TreeBudget) -> CatalogFile:
    """One catalog file, parsed and judged entry by entry (``CatalogError`` if unusable)."""
    if budget.files >= MAX_FILES:
        raise CatalogError(f"{url}: the catalog tree would pass {MAX_FILES} files")
    data = read(url, MAX_CATALOG_BYTES)
    marks = structure_marks(data.decode("utf-8", errors="replace"))
    if marks > MAX_TOTAL_MARKS:
        raise CatalogError(f"{url}: more than {MAX_TOTAL_MARKS} YAML structure marks")
    doc = load_catalog_text(data, url)
    sources = doc["sources"]
    if len(sources) > MAX_ENTRIES:
        raise CatalogError(f"{url}: more than {MAX_ENTRIES} entries")
    budget.take(url, data, marks, len(sources))
    folder = posixpath.dirname(url)
    name, description, metadata = doc.get("name"), doc.get("description"), doc.get("metadata")
    found = CatalogFile(
        url,
        name if isinstance(name, str) and not plain(name) else posixpath.basename(folder),
        description if isinstance(description, str) and not plain(description) else "",
        metadata if isinstance(metadata, dict) and not plain(metadata) else {},
    )
    for key, source in sources.items():
        judged = judge(key, source, folder)
        found.entries.setdefault(judged.name, judged)
    return found


def load_tree(url: str, read: Reader) -> Tree:
    """Every catalog file under the root catalog ``url``, each read and judged once.

    A problem with the root file raises ``CatalogError``; a problem with a sub-catalog
    (unreadable, invalid, past a limit, closing a cycle) refuses the entry naming it.
    """
    budget = TreeBudget()
    files: dict[str, CatalogFile] = {}
    failed: dict[str, str] = {}
    opened = {url: read_catalog_file(url, read, budget)}
    on_path = {url}
    stack = [(url, iter(list(opened[url].entries.values())))]
    while stack:
        current, pending = stack[-1]
        judged = next(pending, None)
        if judged is None:
            stack.pop()
            on_path.discard(current)
            files[current] = opened[current]
            continue
        if not judged.is_catalog or judged.verdict != VERIFIED:
            continue
        target = judged.args["path"]
        reason = ""
        if target in on_path:
            reason = f"sub-catalog {target} includes itself through its sub-catalogs"
        elif target in failed:
            reason = failed[target]
        elif target not in opened:
            try:
                opened[target] = read_catalog_file(target, read, budget)
            except (HowtoError, OSError) as exc:  # invalid, unavailable, forged: this entry
                failed[target] = reason = f"sub-catalog {_one_line(exc, target)}"
            else:
                on_path.add(target)
                stack.append((target, iter(list(opened[target].entries.values()))))
        if reason:
            opened[current].entries[judged.name] = replace(judged, verdict=REFUSED, reason=reason)
    return Tree(url, files)


def _one_line(exc: BaseException, url: str) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if text.startswith(url) else f"{url}: {text}"


class SubcatalogEntry(CatalogEntry):
    """An entry whose source is a catalog already checked and built."""

    def __init__(self, name: str, description: str, catalog: Catalog) -> None:
        super().__init__(getenv=False, getshell=False)
        self._name = name
        self._description = description
        self._catalog_object = catalog
        self._container = "catalog"
        self._user_parameters: list = []
        self._metadata: dict = {}

    @property
    def name(self) -> str:
        return self._name

    def describe(self) -> dict:
        return {
            "name": self._name,
            "container": "catalog",
            "description": self._description,
            "direct_access": True,
            "user_parameters": [],
            "metadata": {},
            "args": {},
        }

    def get(self, **user_parameters: object) -> Catalog:
        if user_parameters:
            raise CatalogError(f"sub-catalog {self._name!r} takes no parameters")
        return self._catalog_object


class ClosedEntry(CatalogEntry):
    """A refused entry, or a location one while ``verified_only``: listed, never opened.

    Its container is ``None``, so ``Catalog.walk`` lists it without trying to open it.
    """

    def __init__(self, where: str, judged: Judged) -> None:
        super().__init__(getenv=False, getshell=False)
        self._judged = judged
        self._error = entry_error(where, judged)
        self._container = None
        self._user_parameters: list = []
        self._metadata = {**judged.metadata, "howto": _verdict(judged)}

    @property
    def name(self) -> str:
        return self._judged.name

    def describe(self) -> dict:
        return {
            "name": self._judged.name,
            "container": None,
            "description": self._judged.description,
            "direct_access": False,
            "user_parameters": [],
            "metadata": self._metadata,
            "args": {},
        }

    def get(self, **user_parameters: object) -> None:
        raise self._error


class ReferenceEntry(LocalCatalogEntry):
    """A kerchunk entry: its reference file is read and its targets judged on opening,
    and the judged references (not the file again) are handed to fsspec.

    A reference file in the DAG is read verified; one at a location (only with
    ``verified_only=False``) is read as its server sends it, and the entry is unverified.
    """

    def __init__(self, where: str, judged: Judged, read: Reader, verified_only: bool) -> None:
        super().__init__(
            judged.name,
            judged.description,
            judged.driver,
            args=judged.args,
            metadata=judged.metadata,
            catalog_dir=posixpath.dirname(where),
            getenv=False,
            getshell=False,
        )
        self._where, self._judged = where, judged
        self._read, self._verified_only = read, verified_only

    def get(self, **user_parameters: object) -> object:
        judged = self._judged
        options = dict(self._open_args.get("storage_options") or {})
        try:
            if judged.references.startswith("ipfs://"):
                data = self._read(judged.references, MAX_REFERENCE_BYTES)
            else:
                data = _read_location(judged.references, options.get("target_options") or {})
            refs, outside = reference_targets(data, options.get("remote_protocol"))
        except (CatalogError, UnavailableError, OSError) as exc:
            raise CatalogError(
                f"{self._where}: entry {judged.name!r}: {_one_line(exc, judged.references)}"
            ) from None
        metadata = dict(judged.metadata)
        if judged.verdict == LOCATION or outside:
            metadata["howto"] = {"verified": False}
        if outside and judged.verdict == VERIFIED:
            located = replace(
                judged,
                verdict=LOCATION,
                url=outside[0],
                reason=f"{len(outside)} kerchunk targets are locations",
            )
            if self._verified_only:
                raise entry_error(self._where, located)
            warnings.warn(
                f"{self._where}: entry {judged.name!r}: {len(outside)} kerchunk targets are "
                "read unverified (verified_only=False)",
                UnverifiedDataWarning,
                stacklevel=2,
            )
        options["fo"] = refs
        if judged.references.startswith("ipfs://"):
            options.setdefault("remote_protocol", "ipfs")
        for unused in ("target_protocol", "target_options"):
            options.pop(unused, None)
        # zarr opens fsspec stores asynchronously; the file systems under the references
        # must then be asynchronous too
        options["remote_options"] = {**(options.get("remote_options") or {}), "asynchronous": True}
        entry = LocalCatalogEntry(
            judged.name,
            judged.description,
            judged.driver,
            args={**self._open_args, "urlpath": "reference://", "storage_options": options},
            metadata=metadata,
            catalog_dir=self._catalog_dir,
            getenv=False,
            getshell=False,
        )
        return entry.get(**user_parameters)


def _read_location(url: str, options: dict) -> bytes:
    """A reference file from a server, unverified (the user asked for that), bounded."""
    import fsspec

    with fsspec.open(url, "rb", **options) as f:
        data = f.read(MAX_REFERENCE_BYTES + 1)
    if len(data) > MAX_REFERENCE_BYTES:
        raise CatalogError(f"{url}: kerchunk references larger than {MAX_REFERENCE_BYTES} bytes")
    return data


def _verdict(judged: Judged) -> dict:
    if judged.verdict == VERIFIED:
        return {"verified": True}
    return {"verified": False, "verdict": judged.verdict, "reason": judged.reason}


def _entry(
    where: str, judged: Judged, catalogs: dict[str, Catalog], read: Reader, verified_only: bool
) -> CatalogEntry:
    if judged.verdict == VERIFIED and judged.is_catalog:
        return SubcatalogEntry(judged.name, judged.description, catalogs[judged.args["path"]])
    if judged.verdict == REFUSED or (judged.verdict == LOCATION and verified_only):
        return ClosedEntry(where, judged)
    metadata = dict(judged.metadata)
    if judged.verdict == LOCATION:
        metadata["howto"] = {"verified": False}
    if judged.references:
        return ReferenceEntry(where, replace(judged, metadata=metadata), read, verified_only)
    return LocalCatalogEntry(
        judged.name,
        judged.description,
        judged.driver,
        args=judged.args,
        metadata=metadata,
        catalog_dir=posixpath.dirname(where),
        getenv=False,
        getshell=False,
    )


def build_catalog(tree: Tree, read: Reader, verified_only: bool = True) -> Catalog:
    """intake objects for a judged tree: one ``Catalog`` per file, shared where reused."""
    catalogs: dict[str, Catalog] = {}
    for url, doc in tree.files.items():
        entries = {
            name: _entry(url, judged, catalogs, read, verified_only)
            for name, judged in doc.entries.items()
        }
        catalogs[url] = Catalog.from_dict(
            entries,
            name=doc.name,
            description=doc.description,
            metadata=doc.metadata,
            getenv=False,
            getshell=False,
        )
    if not verified_only:
        located = sum(judged.verdict == LOCATION for _, judged in tree.entries())
        if located:
            warnings.warn(
                f"{tree.root}: {located} location-addressed entries will be read unverified "
                "(verified_only=False)",
                UnverifiedDataWarning,
                stacklevel=3,
            )
    return catalogs[tree.root]


def open_pinned_catalog(url: str, read: Reader, verified_only: bool = True) -> Catalog:
    """The intake catalog whose root file is ``url`` (``ipfs://<cid>/catalog.yml``)."""
    return build_catalog(load_tree(url, read), read, verified_only)


__all__ = [
    "MAX_CATALOG_BYTES",
    "MAX_DEPTH",
    "MAX_ENTRIES",
    "MAX_FILES",
    "MAX_TOTAL_BYTES",
    "MAX_TOTAL_ENTRIES",
    "MAX_TOTAL_MARKS",
    "TreeBudget",
    "CatalogFile",
    "ClosedEntry",
    "ReferenceEntry",
    "Reader",
    "SubcatalogEntry",
    "Tree",
    "build_catalog",
    "load_catalog_text",
    "load_tree",
    "open_pinned_catalog",
    "read_catalog_file",
]
