"""What ships inside the package: the catalogs folder and the CAR files of pinned versions."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def catalog_dir() -> Path:
    """Where the catalogs live: ``catalogs/`` in a checkout (``src/howto/catalogs`` links
    to it), package data when installed."""
    return Path(str(resources.files("howto.catalogs"))).resolve()


def bundled_car_files() -> list[Path]:
    """The CAR files that ship the blocks of every pinned version."""
    return sorted((catalog_dir() / "blocks").glob("*.car"))


__all__ = [
    "bundled_car_files",
    "catalog_dir",
]
