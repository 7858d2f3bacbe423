"""UnixFS as a tar stream, for the gateway's ``?format=tar`` (IPIP-288).

``entries`` lists what the archive will hold, every name checked first: a name whose
path, once ``..`` and ``.`` are resolved, is not inside the archive's top folder (or that
is empty or absolute) could place a file anywhere the reader can write, so such a DAG is
refused before a byte is sent.  Names that stay inside (``a/../b``) are kept, resolved, as
the gateway conformance tests expect.  So is a DAG in which two members resolve to one
path, or a member lies below a symlink or a file (a symlink ``link`` to ``/etc`` and then
``link/x``, or a symlink ``a`` and then a file ``a``): extracting it, Python's ``tarfile``
would write through the link, outside the folder.
``stream`` then yields the archive (POSIX ustar headers, PAX records for long or
non-ASCII names), reading file bytes as it goes: a file's bytes are checked against the
size in its header as they are read, so a node that declares fewer bytes than it holds
cannot make the rest of them read as further headers.
"""

from __future__ import annotations

import posixpath
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from multiformats import CID

from ..errors import IntegrityError, shown
from .resolver import Block, Resolver

__all__ = ["MAX_TAR_PATHS", "ClientLeft", "TarEntry", "UnsafeNameError", "entries", "stream"]

#: The most members one archive may have.  A DAG of a few blocks can name the same
#: folder twice at every level and so unfold to billions of paths; such a DAG is refused
#: once its listing passes this many, before a byte of the archive is sent.
MAX_TAR_PATHS = 100_000

#: Date written for every entry: UnixFS 1.0 keeps no times, and a fixed date keeps the
#: archive of a CID the same from one request to the next.
MTIME = 0
BLOCK = tarfile.BLOCKSIZE


class UnsafeNameError(ValueError):
    """A directory entry whose name would escape the archive's folder."""


class ClientLeft(Exception):
    """Whoever asked for the archive went away while its members were being listed."""


@dataclass(frozen=True)
class TarEntry:
    """One member of the archive: its path, what it is and, for files, its size."""

    name: str
    cid: CID
    kind: str  # "file", "directory" or "symlink"
    size: int = 0
    target: str = ""


def _joined(top: str, folder: str, name: str) -> str:
    """``folder/name`` with ``..`` and ``.`` resolved, which must stay under ``top``."""
    path = posixpath.normpath(f"{folder}/{name}")
    if not name or name.startswith("/") or "\0" in name or not path.startswith(top + "/"):
        raise UnsafeNameError(f"entry name {shown(name)} would leave the archive's folder")
    return path


def entries(
    resolver: Resolver, block: Block, name: str, gone: Callable[[], bool] | None = None
) -> list[TarEntry]:
    """Every member under ``block`` (itself first, named ``name``), depth first.

    More than ``MAX_TAR_PATHS`` members is a ``ValueError``; ``gone``, asked between
    members, ends the listing (``ClientLeft``) when the archive is no longer wanted.
    """
    out: list[TarEntry] = []
    stack = [(block, name)]
    root = block.cid
    while stack:
        if gone is not None and gone():
            raise ClientLeft
        block, path = stack.pop()
        kind = block.kind
        if kind == "file":
            out.append(TarEntry(path, block.cid, "file", resolver.size(block)))
        elif kind == "symlink":
            target = (block.unixfs.data or b"").decode("utf-8", "replace")
            out.append(TarEntry(path, block.cid, "symlink", target=target))
        elif kind == "directory":
            out.append(TarEntry(path, block.cid, "directory"))
            children = []
            for entry in resolver.entries(block.cid):
                if len(out) + len(stack) + len(children) >= MAX_TAR_PATHS:
                    raise ValueError(
                        f"{root} unfolds to more than {MAX_TAR_PATHS} paths: too many for "
                        "one tar archive (ask for format=car)"
                    )
                children.append((resolver.block(entry.cid), _joined(name, path, entry.name)))
            stack.extend(reversed(children))
        else:
            raise ValueError(f"{block.cid} is not UnixFS: it has no place in a tar archive")
    _check_paths(out)
    return out


def _check_paths(members: list[TarEntry]) -> None:
    """Refuse members that share a path, or that lie below anything but a directory."""
    kinds: dict[str, str] = {}
    for member in members:
        if member.name in kinds:
            raise UnsafeNameError(f"two entries of the archive would be {shown(member.name)}")
        kinds[member.name] = member.kind
    for member in members:
        parent = posixpath.dirname(member.name)
        while parent:  # up to the nearest member folder, whose own turn checks the rest
            kind = kinds.get(parent)
            if kind == "directory":
                break
            if kind is not None:
                raise UnsafeNameError(
                    f"entry {shown(member.name)} would lie below the {kinds[parent]} "
                    f"{shown(parent)}"
                )
            parent = posixpath.dirname(parent)


def _header(entry: TarEntry) -> bytes:
    info = tarfile.TarInfo(entry.name + ("/" if entry.kind == "directory" else ""))
    info.mtime = MTIME
    if entry.kind == "directory":
        info.type, info.mode = tarfile.DIRTYPE, 0o755
    elif entry.kind == "symlink":
        info.type, info.mode, info.linkname = tarfile.SYMTYPE, 0o777, entry.target
    else:
        info.type, info.mode, info.size = tarfile.REGTYPE, 0o644, entry.size
    return info.tobuf(tarfile.PAX_FORMAT, encoding="utf-8", errors="strict")


def stream(resolver: Resolver, members: list[TarEntry]) -> Iterator[bytes]:
    """The archive of ``members``: headers, file bytes padded to 512, two empty blocks."""
    for entry in members:
        yield _header(entry)
        if entry.kind == "file":
            left = entry.size
            for piece in resolver.read(entry.cid):
                if len(piece) > left:
                    raise IntegrityError(f"file {entry.cid} holds more than {entry.size} bytes")
                left -= len(piece)
                yield piece
            if left:
                raise IntegrityError(f"file {entry.cid} holds fewer than its {entry.size} bytes")
            if entry.size % BLOCK:
                yield b"\0" * (BLOCK - entry.size % BLOCK)
    yield b"\0" * (2 * BLOCK)
