"""Building content-addressed versions of a catalog from the classic one, and pinning them.

``build_ipfs_catalog`` turns the classic (location-addressed) catalog into an IPFS one:
every dataset is added with the profile below, each ``urlpath`` becomes ``ipfs://<cid>``,
and the rewritten YAML tree plus the datasets is added as one directory whose root CID
names that catalog version.  ``catalogs/versions.json`` records every pinned version; the
blocks of each version ship in ``catalogs/blocks/<version>.car`` (only the new ones).

``convert_catalog`` does the same for a catalog tree written elsewhere (EUREC4A's, say),
entry by entry: local data are added and rewritten; ``ipfs://`` entries are kept, their
CID checked and written as CIDv1 base32; location-addressed entries (``https://``,
OPeNDAP, ``s3://``, chained URLs such as ``simplecache::``) are kept as they are, unless
``fetch_remote`` asks for plain HTTP(S) files and zarr stores to be downloaded (see
``howto.catalog.download``), added and rewritten like local data.  Each catalog file is
read once, however many entries include it (a sub-catalog may even include itself).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import yaml
from multiformats import CID

from ..blocks.bundled import catalog_dir
from ..blocks.repo import Repo
from ..errors import CatalogError
from ..formats.car import write_car
from ..formats.cids import parse_cid, v1_str
from ..unixfs.add import add
from ..unixfs.resolver import Resolver
from .versions import ROOT_NAME, Version, classic_catalog_path, list_catalog_versions

__all__ = [
    "PROFILE",
    "Built",
    "Dataset",
    "Totals",
    "build_ipfs_catalog",
    "convert_catalog",
    "convert_tree",
    "datasets",
    "pin_version",
    "stage_ipfs_tree",
    "url_kind",
    "walk_catalog",
]

#: ``ipfs add -r -H --raw-leaves --cid-version 1``: CIDv1 everywhere (one form of CID in
#: URLs), raw leaves (no protobuf around data), and hidden files, which zarr v2 needs.
PROFILE = {"recursive": True, "hidden": True, "raw_leaves": True, "cid_version": 1}
SUBCATALOG_DRIVERS = {"yaml_file_cat", "intake.catalog.local.YAMLFileCatalog"}
NETCDF_DRIVERS = {"netcdf", "intake_xarray.netcdf.NetCDFSource"}
ZARR_DRIVERS = {"zarr", "intake_xarray.xzarr.ZarrSource"}
#: Where fetched data go in the catalog's tree (beside the catalog files).
FETCHED_DIR = "_fetched"
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


# --- reading the classic catalog tree -------------------------------------------------


@dataclass(frozen=True)
class Dataset:
    """A data source of the classic catalog and the local path its urlpath names."""

    catalog: Path
    entry: str
    path: Path


def _load_yaml(path: Path) -> dict:
    """A classic catalog file, parsed with the same bounded loader as pinned ones."""
    from .pinned import load_catalog_text

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CatalogError(f"{path}: catalog file does not exist") from None
    return load_catalog_text(data, str(path))


def url_kind(urlpath: object) -> str:
    """``"local"``, ``"ipfs"`` or ``"location"`` (or ``"none"`` when not a URL at all)."""
    if isinstance(urlpath, list | tuple):
        kinds = {url_kind(u) for u in urlpath}
        if "local" in kinds or "none" in kinds:
            return "none"  # a list naming local files: not one dataset to add
        return "ipfs" if kinds == {"ipfs"} else "location"
    if not isinstance(urlpath, str):
        return "none"
    if "::" in urlpath:  # a chained fsspec URL: simplecache::https://, reference::ipfs://…
        return "location"
    if urlpath.startswith("ipfs://"):
        return "ipfs"
    if urlpath.startswith("file://") or not _SCHEME.match(urlpath):
        return "local"
    return "location"


def _local(template: str, catalog: Path, entry: str) -> Path:
    template = template.removeprefix("file://")
    text = template.replace("{{ CATALOG_DIR }}", str(catalog.parent))
    text = text.replace("{{CATALOG_DIR}}", str(catalog.parent))
    if "{{" in text or "://" in text:
        raise CatalogError(f"{catalog}: entry {entry!r}: urlpath {template!r} is not a local path")
    return Path(os.path.normpath(text))


def _data_entries(doc: dict) -> Iterator[tuple[str, dict]]:
    """The entries of one catalog file that are data, not sub-catalogs."""
    for name, source in doc["sources"].items():
        if isinstance(source, dict) and source.get("driver") not in SUBCATALOG_DRIVERS:
            yield name, source


def walk_catalog(path: Path) -> Iterator[tuple[Path, dict]]:
    """Every catalog file of the tree under ``path`` with its parsed YAML, parents first,
    each once: a file included again (by itself, or by two parents) is not read again.
    Sub-catalogs elsewhere than on this disk are not followed."""
    seen: set[Path] = set()
    stack = [Path(os.path.normpath(path))]
    while stack:
        path = stack.pop()
        if path in seen:
            continue
        seen.add(path)
        doc = _load_yaml(path)
        yield path, doc
        children = []
        for name, source in doc["sources"].items():
            if isinstance(source, dict) and source.get("driver") in SUBCATALOG_DRIVERS:
                target = (source.get("args") or {}).get("path")
                if url_kind(target) == "local":
                    children.append(_local(target, path, name))
        stack.extend(reversed(children))  # depth first, in the order of the file


def datasets(root: Path) -> list[Dataset]:
    """The local data sources the catalog references, checked to exist (entries that
    name ``ipfs://`` or remote locations are not local data)."""
    found = []
    for catalog, doc in walk_catalog(root):
        for name, source in _data_entries(doc):
            urlpath = (source.get("args") or {}).get("urlpath")
            kind = url_kind(urlpath)
            if kind in ("ipfs", "location"):
                continue
            if kind == "none":
                raise CatalogError(f"{catalog}: entry {name!r} has no single urlpath")
            local = _local(urlpath, catalog, name)
            if not local.exists():
                raise CatalogError(f"{catalog}: entry {name!r}: {local} does not exist")
            found.append(Dataset(catalog, name, local))
    return found


def _check_opens(dataset: Dataset) -> None:
    """Open a classic entry with its driver, so a broken dataset stops the build early."""
    import intake

    try:
        cat = intake.open_catalog(str(dataset.catalog))
        cat[dataset.entry].to_dask().close()
    except Exception as exc:
        raise CatalogError(
            f"{dataset.catalog}: entry {dataset.entry!r} does not open: {exc}"
        ) from None


# --- building an IPFS version -----------------------------------------------------------


@dataclass
class Totals:
    """How the data entries of a catalog tree were converted."""

    local: int = 0  # local data, added and rewritten to ipfs://
    fetched: int = 0  # https:// data downloaded, added and rewritten
    ipfs: int = 0  # already ipfs:// (normalised to CIDv1)
    location: int = 0  # location-addressed, kept as they are
    checked: list[str] = field(default_factory=list)  # what each download was checked by

    def __str__(self) -> str:
        return (
            f"entries: {self.local} rewritten local, {self.fetched} fetched, "
            f"{self.ipfs} kept ipfs, {self.location} kept location"
        )


@dataclass(frozen=True)
class Built:
    """A converted catalog: its root CID and the totals."""

    root: CID
    totals: Totals


def _normalised_ipfs(urlpath: str, catalog: Path, entry: str) -> str:
    """``ipfs://<cid>[/path]`` with the CID checked and written as CIDv1 base32."""
    try:
        cid, inner = parse_cid(urlpath)
    except ValueError as exc:
        raise CatalogError(f"{catalog}: entry {entry!r}: {exc}") from None
    return f"ipfs://{v1_str(cid)}" + (f"/{inner}" if inner else "")


def _fetch_plan(source: dict) -> tuple[str, str] | None:
    """(``"file"`` or ``"zarr"``, the HTTP URL) for an entry ``--fetch-remote`` can download:
    a netCDF file or a zarr store at a plain ``http(s)://`` URL (not OPeNDAP)."""
    from .download import is_fetchable_url

    urlpath = (source.get("args") or {}).get("urlpath")
    if not isinstance(urlpath, str):
        return None
    url = urlpath.removeprefix("simplecache::")
    if not is_fetchable_url(url):
        return None
    driver = source.get("driver")
    if driver in NETCDF_DRIVERS:
        return "file", url
    if driver in ZARR_DRIVERS and "::" not in urlpath:
        return "zarr", url
    return None


def _tree_place(url: str) -> Path:
    """Where a fetched URL's data go in the catalog tree: ``_fetched/<host>/<path>``."""
    parts = urlsplit(url)
    segments = [unquote(s) for s in parts.path.split("/") if s not in ("", ".", "..")]
    host = parts.netloc.replace(":", "_") or "host"
    return Path(FETCHED_DIR, host, *(segments or ["data"]))


def _fetch(kind: str, url: str, downloads: Path, progress: bool):
    from .download import download_file, download_zarr

    folder = downloads / hashlib.sha256(url.encode()).hexdigest()[:20]
    target = folder / (_tree_place(url).name)
    if kind == "zarr":
        return download_zarr(url, target, progress)
    return download_file(url, target, progress)


def _rewrite(doc: dict, catalog: Path, urls: dict[tuple[Path, str], str]) -> dict:
    """A copy of a catalog document with the new urlpath of each entry in ``urls``."""
    doc = json.loads(json.dumps(doc))  # a deep copy of plain data
    for name, source in _data_entries(doc):
        new = urls.get((catalog, name))
        if new is None:
            continue
        args = source["args"]
        if not args["urlpath"].startswith("ipfs://"):
            args.pop("storage_options", None)  # options for the old location
        args["urlpath"] = new
        if new.startswith("ipfs://") and source.get("driver") in NETCDF_DRIVERS:
            # netCDF4 reads only local files; h5netcdf reads the file object fsspec opens.
            args.setdefault("xarray_kwargs", {})["engine"] = "h5netcdf"
    return doc


def convert_tree(
    classic: Path,
    out: Path,
    check: bool = True,
    fetch_remote: bool = False,
    downloads: Path | None = None,
    progress: bool = False,
) -> tuple[dict[Path, CID], Totals]:
    """Write the IPFS catalog tree for ``classic`` into ``out``; return the CIDs of the
    data added (by local path) and the totals.  ``downloads`` keeps fetched data between
    runs (default: ``howto``'s folder in the user cache)."""
    found = datasets(classic)
    if check:
        for dataset in found:
            _check_opens(dataset)
    base = classic.parent
    cids = {d.path: add(d.path, only_hash=True, **PROFILE) for d in found}
    totals = Totals()
    urls: dict[tuple[Path, str], str] = {}
    copies: list[tuple[Path, Path]] = [(d.path, d.path.relative_to(base)) for d in found]
    trees = list(walk_catalog(classic))
    for catalog, doc in trees:
        for name, source in _data_entries(doc):
            urlpath = (source.get("args") or {}).get("urlpath")
            kind = url_kind(urlpath)
            plan = _fetch_plan(source) if fetch_remote and kind == "location" else None
            if kind == "local":
                urls[catalog, name] = f"ipfs://{cids[_local(urlpath, catalog, name)]}"
                totals.local += 1
            elif kind == "ipfs":
                if isinstance(urlpath, str):
                    urls[catalog, name] = _normalised_ipfs(urlpath, catalog, name)
                totals.ipfs += 1
            elif plan is not None:
                if downloads is None:
                    from platformdirs import user_cache_path

                    downloads = user_cache_path("howto") / "downloads"
                try:
                    got = _fetch(*plan, downloads, progress)
                except CatalogError as exc:
                    raise CatalogError(f"{catalog}: entry {name!r}: {exc}") from None
                cid = add(got.path, only_hash=True, **PROFILE)
                urls[catalog, name] = f"ipfs://{cid}"
                copies.append((got.path, _tree_place(plan[1])))
                totals.fetched += 1
                totals.checked.append(f"{plan[1]}: {got.checked}")
            else:
                totals.location += 1
    for catalog, doc in trees:
        target = out / catalog.relative_to(base)
        target.parent.mkdir(parents=True, exist_ok=True)
        text = yaml.safe_dump(_rewrite(doc, catalog, urls), sort_keys=False, width=100)
        target.write_text(text)
    for source_path, place in copies:
        target = out / place
        if target.exists():  # two entries naming the same data
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if source_path.is_dir():
            shutil.copytree(source_path, target)
        else:
            shutil.copy2(source_path, target)
    return cids, totals


def stage_ipfs_tree(classic: Path, out: Path, check: bool = True) -> dict[Path, CID]:
    """Write the IPFS catalog tree for ``classic`` into ``out``; return dataset CIDs."""
    return convert_tree(classic, out, check)[0]


def convert_catalog(
    classic: Path | None = None,
    repo: Repo | None = None,
    only_hash: bool = False,
    fetch_remote: bool = False,
    downloads: Path | None = None,
    progress: bool = False,
) -> Built:
    """Add the IPFS version of a catalog tree (default: the classic one); return its root
    CID (deterministic) and how its entries were converted."""
    classic = classic or classic_catalog_path()
    with tempfile.TemporaryDirectory(prefix="howto-catalog-") as tmp:
        tree = Path(tmp) / "catalog"
        _, totals = convert_tree(classic, tree, True, fetch_remote, downloads, progress)
        return Built(add(tree, only_hash=only_hash, repo=repo, **PROFILE), totals)


def build_ipfs_catalog(
    classic: Path | None = None, repo: Repo | None = None, only_hash: bool = False
) -> CID:
    """Add the IPFS version of the classic catalog; return its root CID (deterministic)."""
    return convert_catalog(classic, repo, only_hash).root


def pin_version(
    version: str,
    note: str,
    classic: Path | None = None,
    directory: Path | None = None,
    date: str | None = None,
) -> Version:
    """Build, then record a new version: its new blocks as a CAR and a line in the index.

    Everything is prepared in temporary files and moved into place at the end, so a
    failure leaves ``versions.json`` and ``blocks/`` as they were.  The index lives next
    to the root catalog: ``directory`` defaults to the folder of ``classic``.
    """
    directory = directory or (classic.parent if classic else catalog_dir())
    versions = list_catalog_versions(directory)
    if any(v.version == version for v in versions):
        raise CatalogError(f"version {version!r} is already locked")
    with tempfile.TemporaryDirectory(prefix="howto-pin-") as tmp:
        repo = Repo(Path(tmp) / "repo")
        root = build_ipfs_catalog(classic or directory / ROOT_NAME, repo=repo)
        previous = versions[-1].cid if versions else None
        if previous == v1_str(root):
            raise CatalogError(f"nothing changed: the catalog is still {previous}")
        known = _known_blocks(directory, versions)
        blocks = [
            (b.cid, b.data)
            for b in Resolver(repo).walk(root, "all")
            if bytes(b.cid.digest) not in known
        ]
        entry = Version(
            version=version,
            date=date or dt.date.today().isoformat(),
            cid=v1_str(root),
            previous=previous,
            note=note,
        )
        car_tmp = Path(tmp) / "new.car"
        with open(car_tmp, "wb") as f:
            write_car(f, [root], blocks)
        index_tmp = Path(tmp) / "versions.json"
        items = [asdict(v) for v in [*versions, entry]]
        index_tmp.write_text(json.dumps({"versions": items}, indent=2) + "\n")
        (directory / "blocks").mkdir(exist_ok=True)
        car = directory / "blocks" / f"{version}.car"
        shutil.move(car_tmp, car)
        try:
            os.replace(index_tmp, directory / "versions.json")
        except BaseException:
            car.unlink()  # no CAR without its line in the index
            raise
    return entry


def _known_blocks(directory: Path, versions: list[Version]) -> set[bytes]:
    """The blocks of the pinned versions (a CAR that is not in the index does not count)."""
    from ..formats.car import read_car

    known: set[bytes] = set()
    for version in versions:
        with open(directory / "blocks" / f"{version.version}.car", "rb") as f:
            known.update(bytes(cid.digest) for cid, _ in read_car(f)[1])
    return known
