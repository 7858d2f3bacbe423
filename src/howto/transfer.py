"""Moving DAGs in and out of the repository as CAR files (``howto dag export/import``)."""

from __future__ import annotations

from typing import BinaryIO

from multiformats import CID

from .car import read_car, write_car
from .repo import Repo
from .resolver import BlockSource, Resolver


def export_car(root: CID, out: BinaryIO, source: BlockSource) -> int:
    """Write the whole DAG under ``root`` as a CARv1 (depth-first, each block once)."""
    blocks = ((b.cid, b.data) for b in Resolver(source).walk(root, "all"))
    return write_car(out, [root], blocks)


def import_car(stream: BinaryIO, repo: Repo) -> tuple[list[CID], int]:
    """Verify every block of a CAR and store them all, or none if any is bad."""
    roots, blocks = read_car(stream)
    count = 0
    with repo.transaction() as txn:
        for cid, data in blocks:
            txn.put(cid, data)
            count += 1
    return roots, count
