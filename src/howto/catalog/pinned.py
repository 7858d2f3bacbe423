"""Opening a pinned catalog as data: parsed safely, checked whole, then handed to intake.

A CID promises exactly the bytes it names and nothing else.  intake, given catalog YAML,
would also render Jinja templates (which can run code and read the environment), import
drivers by dotted name, and open any URL an entry names.  So a catalog reached by CID is
never given to intake as YAML.  It is read through the verified ``ipfs://`` file system,
parsed with a bounded loader (no aliases, limited size and depth), and every file of the
tree is checked before a catalog object exists:

- no template syntax anywhere, except a leading ``{{ CATALOG_DIR }}`` in a ``urlpath`` or
  sub-catalog ``path``, which is replaced here by the catalog file's folder in the DAG;
- only the drivers and arguments the catalogs use (zarr, netCDF, sub-catalogs);
- every data URL content-addressed: ``ipfs://<cid>[/path]``, or a path that stays under
  the catalog's root CID.

Anything else is refused with a ``CatalogError`` naming the file and the entry, before
any data is read.  The checked tree becomes intake ``Catalog`` and ``LocalCatalogEntry``
objects with environment and shell access switched off.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable

import yaml
from intake.catalog import Catalog
from intake.catalog.entry import CatalogEntry
from intake.catalog.local import LocalCatalogEntry

from ..errors import CatalogError
from ..formats.cids import parse_cid

#: A catalog file larger than this is refused unread (the bundled ones are about 2 kB).
MAX_CATALOG_BYTES = 1 << 20
#: Nesting depth of YAML collections in one catalog file.
MAX_DEPTH = 32
#: Catalog files in one tree (the root and every sub-catalog).
MAX_FILES = 64
#: Entries in one catalog file.
MAX_ENTRIES = 4096

TEMPLATE_MARKS = ("{{", "{%", "{#")
CATALOG_DIR_FORMS = ("{{ CATALOG_DIR }}", "{{CATALOG_DIR}}")

SUBCATALOG = "yaml_file_cat"
#: Accepted driver names → the name handed to intake (its registry, never an import).
DRIVERS = {
    "zarr": "zarr",
    "intake_xarray.xzarr.ZarrSource": "zarr",
    "netcdf": "netcdf",
    "intake_xarray.netcdf.NetCDFSource": "netcdf",
    "yaml_file_cat": SUBCATALOG,
    "intake.catalog.local.YAMLFileCatalog": SUBCATALOG,
}
#: xarray options an entry may set: decoding choices, none of which names a resource.
XARRAY_OPTIONS = {
    "chunks",
    "consolidated",
    "decode_cf",
    "decode_coords",
    "decode_timedelta",
    "decode_times",
    "drop_variables",
    "engine",
    "group",
    "mask_and_scale",
    "use_cftime",
    "zarr_format",
}
ENGINES = {"h5netcdf", "netcdf4", "scipy", "zarr"}
ENTRY_KEYS = {"description", "driver", "args", "metadata"}
TOP_KEYS = {"description", "metadata", "name", "sources"}


class _NoAliases(yaml.SafeLoader):
    """PyYAML's safe loader, minus aliases (the root of alias bombs) and deep nesting."""

    def compose_node(self, parent: object, index: object) -> yaml.Node:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise CatalogError(f"YAML aliases are not allowed (line {mark.line + 1})")
        self._depth = getattr(self, "_depth", 0) + 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise CatalogError(f"YAML nested deeper than {MAX_DEPTH} (line {mark.line + 1})")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def load_catalog_text(data: bytes, where: str) -> dict:
    """Parse one catalog file: bounded, plain data only, a mapping with ``sources``."""
    if len(data) > MAX_CATALOG_BYTES:
        raise CatalogError(f"{where}: {len(data)} bytes, more than a catalog may have")
    try:
        text = data.decode("utf-8")
        doc = yaml.load(text, Loader=_NoAliases)  # noqa: S506 (a SafeLoader subclass)
    except CatalogError as exc:
        raise CatalogError(f"{where}: {exc}") from None
    except UnicodeDecodeError:
        raise CatalogError(f"{where}: not UTF-8 text") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark is not None else ""
        raise CatalogError(f"{where}: invalid YAML{line}: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("sources"), dict):
        raise CatalogError(f"{where}: not an intake catalog (no 'sources' mapping)")
    return doc


def _plain(value: object, where: str) -> None:
    """Refuse anything but plain data, and any string that intake would render as Jinja."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if any(mark in item for mark in TEMPLATE_MARKS):
                raise CatalogError(f"{where}: templates are not allowed: {_short(item)}")
        elif isinstance(item, dict):
            for key, inner in item.items():
                if not isinstance(key, str):
                    raise CatalogError(f"{where}: keys must be strings, not {_short(key)}")
                stack += [key, inner]
        elif isinstance(item, list):
            stack += item
        elif item is not None and not isinstance(item, bool | int | float):
            raise CatalogError(f"{where}: {type(item).__name__} values are not allowed")


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def content_address(url: object, folder: str, where: str) -> str:
    """The ``ipfs://`` URL an entry's ``urlpath``/``path`` names, or ``CatalogError``.

    ``folder`` is ``ipfs://<root>/<dir>`` of the catalog file; a ``{{ CATALOG_DIR }}``
    prefix stands for it, and the result must stay under the same root CID.
    """
    if not isinstance(url, str):
        raise CatalogError(f"{where}: needs one URL as a string, not {_short(url)}")
    for form in CATALOG_DIR_FORMS:
        if url.startswith(form):
            root, _, inside = folder.removeprefix("ipfs://").partition("/")
            joined = posixpath.normpath(posixpath.join(inside, url[len(form) :].lstrip("/")))
            if joined == ".." or joined.startswith("../"):
                raise CatalogError(f"{where}: {_short(url)} leaves the catalog's root CID")
            url = f"ipfs://{root}" + ("" if joined == "." else f"/{joined}")
            break
    _plain(url, where)
    if not url.startswith("ipfs://"):
        raise CatalogError(
            f"{where}: {_short(url)} is not content-addressed "
            "(only ipfs:// URLs and {{ CATALOG_DIR }} paths are allowed)"
        )
    try:
        cid, path = parse_cid(url)
    except ValueError as exc:
        raise CatalogError(f"{where}: {exc}") from None
    segments = path.split("/") if path else []
    if any(s in (".", "..") for s in segments) or "//" in url.removeprefix("ipfs://"):
        raise CatalogError(f"{where}: {_short(url)} has relative or empty path segments")
    return f"ipfs://{cid}" + (f"/{path}" if path else "")


def _check_args(args: object, driver: str, where: str) -> dict:
    if not isinstance(args, dict):
        raise CatalogError(f"{where}: 'args' must be a mapping")
    allowed = {"path"} if driver == SUBCATALOG else {"urlpath", "xarray_kwargs", *XARRAY_OPTIONS}
    extra = sorted(set(args) - allowed)
    if extra:
        raise CatalogError(f"{where}: argument {extra[0]!r} is not allowed in a pinned catalog")
    options = args.get("xarray_kwargs", {})
    if not isinstance(options, dict):
        raise CatalogError(f"{where}: 'xarray_kwargs' must be a mapping")
    extra = sorted(set(options) - XARRAY_OPTIONS)
    if extra:
        raise CatalogError(f"{where}: xarray option {extra[0]!r} is not allowed")
    for engine in (args.get("engine"), options.get("engine")):
        if engine is not None and engine not in ENGINES:
            raise CatalogError(f"{where}: engine {_short(engine)} is not allowed")
    return args


def check_catalog(doc: dict, url: str) -> dict:
    """A checked copy of one catalog file's document read from ``url`` (``ipfs://…``).

    Data URLs and sub-catalog paths come back as plain ``ipfs://`` URLs.
    """
    extra = sorted(set(doc) - TOP_KEYS)
    if extra:
        raise CatalogError(f"{url}: top-level key {extra[0]!r} is not allowed in a pinned catalog")
    _plain({k: v for k, v in doc.items() if k != "sources"}, url)
    sources = doc["sources"]
    if len(sources) > MAX_ENTRIES:
        raise CatalogError(f"{url}: more than {MAX_ENTRIES} entries")
    folder = posixpath.dirname(url)
    checked = {}
    for name, source in sources.items():
        where = f"{url}: entry {name!r}"
        if not isinstance(name, str) or not isinstance(source, dict):
            raise CatalogError(f"{where}: an entry must be a name with a mapping")
        extra = sorted(set(source) - ENTRY_KEYS)
        if extra:
            raise CatalogError(f"{where}: key {extra[0]!r} is not allowed in a pinned catalog")
        driver = DRIVERS.get(source.get("driver"))  # type: ignore[arg-type]
        if driver is None:
            raise CatalogError(f"{where}: driver {_short(source.get('driver'))} is not allowed")
        args = dict(_check_args(source.get("args", {}), driver, where))
        key = "path" if driver == SUBCATALOG else "urlpath"
        args[key] = content_address(args.get(key), folder, where)
        entry = {**source, "driver": driver, "args": args}
        _plain({k: v for k, v in entry.items() if k != "args"}, where)
        _plain({k: v for k, v in args.items() if k != key}, where)
        checked[name] = entry
    return {**doc, "sources": checked}


def load_tree(url: str, read: Callable[[str], bytes]) -> dict[str, dict]:
    """Every catalog file under the root catalog ``url``, checked; keyed by URL.

    ``read`` returns a file's (verified) bytes.  Sub-catalogs are followed up to
    ``MAX_FILES`` files; a cycle of sub-catalogs is refused.
    """
    tree: dict[str, dict] = {}
    pending = [(url, ())]
    while pending:
        current, parents = pending.pop()
        if current in parents:
            raise CatalogError(f"{current}: includes itself through its sub-catalogs")
        if current in tree:
            continue
        if len(tree) >= MAX_FILES:
            raise CatalogError(f"{url}: more than {MAX_FILES} catalog files")
        doc = check_catalog(load_catalog_text(read(current), current), current)
        tree[current] = doc
        for source in doc["sources"].values():
            if source["driver"] == SUBCATALOG:
                pending.append((source["args"]["path"], (*parents, current)))
    return tree


def build_catalog(url: str, tree: dict[str, dict]) -> Catalog:
    """intake objects for a checked tree: a ``Catalog`` whose sub-catalogs are entries."""
    doc = tree[url]
    folder = posixpath.dirname(url)
    entries: dict[str, object] = {}
    for name, source in doc["sources"].items():
        if source["driver"] == SUBCATALOG:
            child = build_catalog(source["args"]["path"], tree)
            entries[name] = SubcatalogEntry(name, source.get("description", ""), child)
            continue
        entries[name] = LocalCatalogEntry(
            name,
            source.get("description", ""),
            source["driver"],
            args=source["args"],
            metadata=source.get("metadata") or {},
            catalog_dir=folder,
            getenv=False,
            getshell=False,
        )
    name = doc.get("name") or posixpath.basename(folder)
    return Catalog.from_dict(
        entries,
        name=str(name),
        description=doc.get("description"),
        metadata=doc.get("metadata") or {},
        getenv=False,
        getshell=False,
    )


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


def open_pinned_catalog(url: str, read: Callable[[str], bytes]) -> Catalog:
    """The checked intake catalog whose root file is ``url`` (``ipfs://<cid>/catalog.yml``)."""
    return build_catalog(url, load_tree(url, read))


__all__ = [
    "MAX_CATALOG_BYTES",
    "MAX_DEPTH",
    "MAX_ENTRIES",
    "MAX_FILES",
    "SubcatalogEntry",
    "build_catalog",
    "check_catalog",
    "content_address",
    "load_catalog_text",
    "load_tree",
    "open_pinned_catalog",
]
