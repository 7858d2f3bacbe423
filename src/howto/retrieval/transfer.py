"""Moving DAGs in and out: CAR files (``howto dag export/import``) and ``howto get``."""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from pathlib import Path
from typing import BinaryIO

from multiformats import CID
from tqdm import tqdm

from ..blocks.chain import BlockSource, BlockStore
from ..errors import IntegrityError
from ..formats.car import CARError, read_car, write_car
from ..unixfs.resolver import Resolver
from .reader import DagReader


def export_car(root: CID, out: BinaryIO, source: BlockSource) -> int:
    """Write the whole DAG under ``root`` as a CARv1 (depth-first, each block once)."""
    blocks = ((b.cid, b.data) for b in Resolver(source).walk(root, "all"))
    return write_car(out, [root], blocks)


def import_car(stream: BinaryIO, repo: BlockStore) -> tuple[list[CID], int]:
    """Verify every block of a CAR (v1 or v2) and store them all, or none if any is bad.

    It refuses (``CARError``) a CAR that holds no block, and one whose root is neither in
    it nor already in the repository: importing it would not make the root readable.  A
    CAR that names no root is imported, as ``ipfs dag import`` does (go-car's block reader
    allows it, and the CARv1 spec lists the number of roots as unresolved); ``ipfs-car
    pack`` writes such CARs when it streams to stdout.
    """
    roots, blocks = read_car(stream)
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


def get_tree(reader: DagReader, root: CID, path: str, out: Path, progress: bool = False) -> int:
    """Save the file or directory at ``root/path`` as ``out`` (kubo's ``ipfs get``).

    Everything is written under a temporary name beside ``out`` and renamed at the end, so
    a failure (a missing block, a lying gateway) leaves nothing behind.  Returns the
    number of file bytes written.
    """
    if out.exists() or out.is_symlink():
        raise FileExistsError(f"{out} already exists")
    target = reader.resolve(root, path)[-1]
    partial = out.parent / f".{out.name}.{uuid.uuid4().hex[:8]}.partial"
    bar = tqdm(unit="B", unit_scale=True, file=sys.stderr, disable=not progress)
    written = 0
    try:
        with bar:
            pending = [(target, partial)]
            while pending:
                cid, dest = pending.pop()
                block = reader.stat(cid)[0]
                if block.kind == "directory":
                    dest.mkdir()
                    for entry in reader.ls(cid):
                        pending.append((entry.cid, dest / _safe_name(entry.name, cid)))
                elif block.kind == "symlink":
                    os.symlink(block.unixfs.data or b"", dest)
                else:
                    with open(dest, "wb") as f:
                        written += reader.read_to(_Counted(f, bar), cid)
        os.rename(partial, out)
    except BaseException:
        if partial.is_dir() and not partial.is_symlink():
            shutil.rmtree(partial, ignore_errors=True)
        else:
            partial.unlink(missing_ok=True)
        raise
    return written


class _Counted:
    """A file that moves a progress bar by what is written to it."""

    def __init__(self, file: BinaryIO, bar: tqdm) -> None:
        self.file = file
        self.bar = bar

    def write(self, data: bytes | memoryview) -> int:
        written = self.file.write(data)
        self.bar.update(len(data))
        return written


def _safe_name(name: str, directory: CID) -> str:
    """A directory entry's name, refused when it could step outside the output folder."""
    if not name or name in (".", "..") or "/" in name or "\x00" in name:
        raise IntegrityError(f"directory {directory} has an unsafe entry name {name!r}")
    return name


__all__ = [
    "export_car",
    "get_tree",
    "import_car",
]
