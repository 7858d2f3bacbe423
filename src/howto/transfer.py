"""Moving DAGs in and out of the repository as CAR files (``howto dag export/import``)."""

from __future__ import annotations

from typing import BinaryIO

from multiformats import CID

from .car import CARError, read_car, write_car
from .repo import Repo
from .resolver import BlockSource, Resolver


def export_car(root: CID, out: BinaryIO, source: BlockSource) -> int:
    """Write the whole DAG under ``root`` as a CARv1 (depth-first, each block once)."""
    blocks = ((b.cid, b.data) for b in Resolver(source).walk(root, "all"))
    return write_car(out, [root], blocks)


def import_car(stream: BinaryIO, repo: Repo) -> tuple[list[CID], int]:
    """Verify every block of a CAR (v1 or v2) and store them all, or none if any is bad.

    Like ``ipfs dag import``, it refuses (``CARError``) a CAR that names no root (the
    CARv1 spec requires one), one that holds no block, and one whose root is neither in
    it nor already in the repository: importing it would not make the root readable.
    """
    roots, blocks = read_car(stream)
    if not roots:
        raise CARError("the CAR names no root (a CAR must name at least one)")
    count = 0
    held: set[bytes] = set()
    with repo.transaction() as txn:
        for cid, data in blocks:
            txn.put(cid, data)
            held.add(bytes(cid.digest))
            count += 1
        if not count:
            raise CARError("the CAR holds no blocks")
        for root in roots:
            if bytes(root.digest) not in held and not repo.has(root):
                raise CARError(
                    f"root {root} is neither in the CAR nor in the repository: nothing imported"
                )
    return roots, count
