"""Moving DAGs in and out: CAR files (``howto dag export/import``) and ``howto get``."""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from multiformats import CID
from tqdm import tqdm

from ..blocks.chain import BlockSource, BlockStore
from ..errors import IntegrityError, shown
from ..formats.car import CARError, check_roots, read_car_raw, write_car
from ..formats.cids import RAW_CID_PREFIX, cid_text, is_identity, multihash_of
from ..unixfs.resolver import Resolver, as_cid
from .reader import DagReader


def export_car(root: CID, out: BinaryIO, source: BlockSource) -> int:
    """Write the whole DAG under ``root`` as a CARv1 (depth-first, each block once).

    Identity blocks are left out, as the CAR and trustless gateway specs require: their
    CID carries them already (what they link to is written all the same)."""
    walk = Resolver(source).walk(root, "all")
    blocks = ((b.cid, b.data) for b in walk if not is_identity(bytes(b.cid)))
    return write_car(out, [root], blocks)


@dataclass(frozen=True)
class Imported:
    """What ``import_cars`` stored: the roots the CARs name, and their blocks and bytes."""

    roots: list[CID]
    blocks: int
    size: int


def import_car(stream: BinaryIO, repo: BlockStore, check: bool = True) -> tuple[list[CID], int]:
    """Verify every block of a CAR (v1 or v2) and store them all, or none if any is bad;
    the roots and the number of blocks.  See ``import_cars``."""
    imported = import_cars([("", stream)], repo, check=check)
    return imported.roots, imported.blocks


def import_cars(
    cars: Iterable[tuple[str, BinaryIO]], repo: BlockStore, check: bool = True
) -> Imported:
    """Verify and store the blocks of CAR streams, all of them or none (``CARError``, which
    begins with the stream's name, a file name say, when it has one).

    As ``ipfs dag import`` does, a CAR that holds no block is refused, and so is one whose
    root is neither in it nor already in the repository.  A CAR that names no root is
    imported, as kubo does (go-car's block reader allows it, and the CARv1 spec lists the
    number of roots as unresolved); ``ipfs-car pack`` writes such CARs to stdout.  With
    ``check`` (the default), every block under each root must be there as well, in one of
    the CARs or in the repository: kubo pins the roots it imports
    (``--pin-roots``, on by default), which fails on an incomplete DAG, and a DAG with a
    hole would only fail later, when read.  The first missing block is named, and nothing
    is stored.  ``check=False`` keeps an incomplete DAG (a CAR of one entity, say).
    """
    roots: dict[bytes, tuple[CID, str]] = {}
    links: dict[bytes, list[bytes]] = {}  # multihash -> binary CIDs it links to, per block
    count = size = 0
    with repo.transaction() as txn:
        for name, stream in cars:
            where = f"{name}: " if name else ""
            try:
                found, blocks = read_car_raw(stream)  # binary CIDs: CID objects are slow
                check_roots(found)
            except CARError as exc:
                raise CARError(f"{where}{exc}") from None
            held = count
            for cid, data in _named(blocks, where):
                txn.put(cid, data)
                multihash = multihash_of(cid)
                if check and cid[:2] != RAW_CID_PREFIX and multihash not in links:
                    block = Resolver.decode(as_cid(cid), data)
                    links[multihash] = [bytes(link) for link in Resolver.links(block)]
                else:
                    links.setdefault(multihash, [])
                count += 1
                size += len(data)
            if count == held:
                raise CARError(f"{where}the CAR holds no blocks")
            for root in found:
                roots.setdefault(bytes(root), (root, where))
        for root, where in roots.values():
            if root.digest not in links and not repo.has(root):
                raise CARError(
                    f"{where}root {root} is neither in the CAR nor in the repository: "
                    "nothing imported"
                )
        if check:
            for root, where in roots.values():
                missing = _first_missing(root, links, repo)
                if missing is not None:
                    raise CARError(
                        f"{where}block {cid_text(missing)} under root {root} is neither in the CAR "
                        "nor in the repository (an incomplete DAG): nothing imported"
                    )
    return Imported([root for root, _ in roots.values()], count, size)


def _named(blocks: Iterable[tuple[CID, bytes]], where: str) -> Iterable[tuple[CID, bytes]]:
    """The blocks of one CAR; a fault found while reading them names the CAR."""
    try:
        yield from blocks
    except CARError as exc:
        raise CARError(f"{where}{exc}") from None


def _first_missing(root: CID, links: dict[bytes, list[bytes]], repo: BlockStore) -> bytes | None:
    """The first block, depth first, under ``root`` that is neither among the imported
    blocks (``links``, their links by multihash) nor in ``repo``; ``None`` if the DAG is
    whole.  Blocks only the repository holds are read from it, as a pin would."""
    resolver = Resolver(repo)
    seen: set[bytes] = set()
    stack = [bytes(root)]
    while stack:
        cid = stack.pop()
        if cid in seen:
            continue
        seen.add(cid)
        children = links.get(multihash_of(cid))
        if children is None:
            if not repo.has(cid):
                return cid
            children = [bytes(link) for link in resolver.links(resolver.block(cid))]
        stack.extend(reversed(children))
    return None


def get_tree(reader: DagReader, root: CID, path: str, out: Path, progress: bool = False) -> int:
    """Save the file or directory at ``root/path`` as ``out`` (kubo's ``ipfs get``).

    Everything is written under a temporary name beside ``out`` and renamed at the end, so
    a failure (a missing block, a lying gateway) leaves nothing behind.  Nothing is ever
    written through a path that exists already: a directory whose entries repeat a name
    (a file and a symlink both called ``a``, say, which would let the file's bytes go
    wherever the link points) or use an unsafe one is refused, and every file, folder and
    link is created new (``O_EXCL``, ``O_NOFOLLOW``).  Returns the number of file bytes
    written.
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
                    names: set[str] = set()
                    for entry in reader.ls(cid):
                        name = _safe_name(entry.name, cid)
                        if name in names:
                            raise IntegrityError(
                                f"directory {cid} has two entries named {shown(name)}"
                            )
                        names.add(name)
                        pending.append((entry.cid, dest / name))
                elif block.kind == "symlink":
                    os.symlink(block.unixfs.data or b"", dest)
                else:
                    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o644)
                    with open(fd, "wb") as f:
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


#: Not following a symlink in the last part of a path, where the system can refuse it.
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def _safe_name(name: str, directory: CID) -> str:
    """A directory entry's name, refused when it could step outside the output folder."""
    if not name or name in (".", "..") or "/" in name or "\x00" in name or os.sep in name:
        raise IntegrityError(f"directory {directory} has an unsafe entry name {shown(name)}")
    return name


__all__ = [
    "Imported",
    "export_car",
    "get_tree",
    "import_car",
    "import_cars",
]
