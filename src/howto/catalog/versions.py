"""The versions index: which content-addressed versions of the catalog were recorded, and when.

``catalogs/versions.json`` lists every version with its root CID, oldest first; the blocks
of each ship in ``catalogs/blocks/<version>.car`` (only the blocks that are new in it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..blocks.bundled import catalog_dir
from ..errors import CatalogError

__all__ = [
    "ROOT_NAME",
    "Version",
    "classic_catalog_path",
    "get_latest_catalog_cid",
    "list_catalog_versions",
]

#: The file at the root of every catalog tree, classic or content-addressed.
ROOT_NAME = "catalog.yml"


def classic_catalog_path() -> Path:
    return catalog_dir() / ROOT_NAME


@dataclass(frozen=True)
class Version:
    """One locked catalog version, as recorded in ``versions.json``."""

    version: str
    date: str
    cid: str
    previous: str | None
    note: str


def list_catalog_versions(directory: Path | None = None) -> list[Version]:
    """Every locked catalog version, oldest first."""
    path = (directory or catalog_dir()) / "versions.json"
    if not path.exists():
        return []
    return [Version(**item) for item in json.loads(path.read_text())["versions"]]


def get_latest_catalog_cid(directory: Path | None = None) -> str:
    """The root CID of the newest locked catalog version."""
    versions = list_catalog_versions(directory)
    if not versions:
        raise CatalogError("no catalog version has been locked yet")
    return versions[-1].cid
