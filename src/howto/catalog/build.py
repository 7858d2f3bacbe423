"""Building content-addressed versions of a catalog from the classic one, and pinning them.

``build_ipfs_catalog`` turns the classic (location-addressed) catalog into an IPFS one:
every dataset is added with the profile below, each ``urlpath`` becomes ``ipfs://<cid>``,
and the rewritten YAML tree plus the datasets is added as one directory whose root CID
names that catalog version.  ``catalogs/versions.json`` records every pinned version; the
blocks of each version ship in ``catalogs/blocks/<version>.car`` (only the new ones).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml
from multiformats import CID

from ..blocks.bundled import catalog_dir
from ..blocks.repo import Repo
from ..errors import CatalogError
from ..formats.car import write_car
from ..formats.cids import v1_str
from ..unixfs.add import add
from ..unixfs.resolver import Resolver
from .versions import ROOT_NAME, Version, classic_catalog_path, list_catalog_versions

__all__ = [
    "PROFILE",
    "Dataset",
    "build_ipfs_catalog",
    "datasets",
    "pin_version",
    "stage_ipfs_tree",
    "walk_catalog",
]

#: ``ipfs add -r -H --raw-leaves --cid-version 1``: CIDv1 everywhere (one form of CID in
#: URLs), raw leaves (no protobuf around data), and hidden files, which zarr v2 needs.
PROFILE = {"recursive": True, "hidden": True, "raw_leaves": True, "cid_version": 1}
SUBCATALOG_DRIVERS = {"yaml_file_cat", "intake.catalog.local.YAMLFileCatalog"}


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


def _local(template: str, catalog: Path, entry: str) -> Path:
    text = template.replace("{{ CATALOG_DIR }}", str(catalog.parent))
    text = text.replace("{{CATALOG_DIR}}", str(catalog.parent))
    if "{{" in text or "://" in text:
        raise CatalogError(f"{catalog}: entry {entry!r}: urlpath {template!r} is not a local path")
    return Path(os.path.normpath(text))


def walk_catalog(path: Path) -> Iterator[tuple[Path, dict]]:
    """Every catalog file of the tree under ``path`` with its parsed YAML, parents first."""
    doc = _load_yaml(path)
    yield path, doc
    for name, source in doc["sources"].items():
        if source.get("driver") in SUBCATALOG_DRIVERS:
            yield from walk_catalog(_local(source["args"]["path"], path, name))


def datasets(root: Path) -> list[Dataset]:
    """The data sources the classic catalog references, checked to exist."""
    found = []
    for catalog, doc in walk_catalog(root):
        for name, source in doc["sources"].items():
            if source.get("driver") in SUBCATALOG_DRIVERS:
                continue
            urlpath = (source.get("args") or {}).get("urlpath")
            if not isinstance(urlpath, str):
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


def _rewrite(doc: dict, catalog: Path, cids: dict[Path, CID]) -> dict:
    """A copy of a catalog document whose data urlpaths are ``ipfs://<cid>``."""
    doc = json.loads(json.dumps(doc))  # a deep copy of plain data
    for name, source in doc["sources"].items():
        if source.get("driver") in SUBCATALOG_DRIVERS:
            continue
        args = source["args"]
        args["urlpath"] = f"ipfs://{cids[_local(args['urlpath'], catalog, name)]}"
        if source.get("driver") in ("netcdf", "intake_xarray.netcdf.NetCDFSource"):
            # netCDF4 reads only local files; h5netcdf reads the file object fsspec opens.
            args.setdefault("xarray_kwargs", {})["engine"] = "h5netcdf"
    return doc


def stage_ipfs_tree(classic: Path, out: Path, check: bool = True) -> dict[Path, CID]:
    """Write the IPFS catalog tree for ``classic`` into ``out``; return dataset CIDs."""
    found = datasets(classic)
    if check:
        for dataset in found:
            _check_opens(dataset)
    base = classic.parent
    cids = {d.path: add(d.path, only_hash=True, **PROFILE) for d in found}
    for catalog, doc in walk_catalog(classic):
        target = out / catalog.relative_to(base)
        target.parent.mkdir(parents=True, exist_ok=True)
        text = yaml.safe_dump(_rewrite(doc, catalog, cids), sort_keys=False, width=100)
        target.write_text(text)
    for dataset in found:
        target = out / dataset.path.relative_to(base)
        target.parent.mkdir(parents=True, exist_ok=True)
        if dataset.path.is_dir():
            shutil.copytree(dataset.path, target)
        else:
            shutil.copy2(dataset.path, target)
    return cids


def build_ipfs_catalog(
    classic: Path | None = None, repo: Repo | None = None, only_hash: bool = False
) -> CID:
    """Add the IPFS version of the classic catalog; return its root CID (deterministic)."""
    classic = classic or classic_catalog_path()
    with tempfile.TemporaryDirectory(prefix="howto-catalog-") as tmp:
        tree = Path(tmp) / "catalog"
        stage_ipfs_tree(classic, tree)
        return add(tree, only_hash=only_hash, repo=repo, **PROFILE)


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
        raise CatalogError(f"version {version!r} is already pinned")
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
