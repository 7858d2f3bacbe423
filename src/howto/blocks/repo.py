"""The local block repository: CID → bytes on disk, hash-checked on every read.

Blocks are filed by multihash (as kubo's flatfs does), so the CIDv0 and CIDv1 of the
same bytes share one file.  Writes go through a transaction: blocks are staged in a
folder of their own and only moved into place when the whole operation succeeds, so a
failed ``add`` or CAR import leaves nothing behind.  Many processes may write at once:
each transaction stages in its own folder, and a block appears under its key by an
atomic rename or not at all.  A transaction whose process was killed leaves its folder
behind; the next transaction (or ``howto repo gc``) removes it.

Every method takes a CID as a ``CID`` object, a string, or its binary form; the binary
form skips building a ``CID`` object, which costs more than hashing a small block.
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import platformdirs
from multiformats import CID

from ..errors import IntegrityError, NotFoundError
from ..formats.cids import (
    base32,
    cid_text,
    inline_data,
    multihash_of,
    raw_cid,
    verify_multihash,
    verify_raw,
)

#: A staging folder older than this whose process cannot be checked is taken as abandoned.
STALE_SECONDS = 24 * 3600


def default_repo_path() -> Path:
    """``$HOWTO_REPO``, else a folder in the user's cache directory."""
    env = os.environ.get("HOWTO_REPO")
    if env:
        return Path(env).expanduser()
    return cache_repo_path()


def cache_repo_path() -> Path:
    """The repository folder in the user's cache directory, used when ``$HOWTO_REPO`` is
    not set (and where IPNS keys stay when it names a bucket)."""
    return Path(platformdirs.user_cache_dir("howto")) / "repo"


def default_repo_location() -> str:
    """``$HOWTO_REPO`` as written (a folder or an fsspec URL), else the cache folder."""
    return os.environ.get("HOWTO_REPO") or str(default_repo_path())


def block_key(multihash: bytes) -> str:
    """The name a block is filed under: its multihash in lower-case base32, unpadded."""
    return base32(multihash)


def block_relpath(key: str) -> str:
    """Where, below a repository's root, the block named ``key`` lives."""
    return f"blocks/{key[-2:]}/{key}"


def multihash_of_key(key: str) -> bytes:
    """The multihash a block's name stands for (``ValueError`` if it is not one)."""
    return base64.b32decode(key.upper() + "=" * (-len(key) % 8))


def stored_key(cid: bytes | CID | str) -> tuple[bytes, str | None]:
    """A CID in binary and the key its block is stored under (``None`` for an identity CID,
    which carries its block): what every repository, on disk or in a bucket, files by."""
    raw = raw_cid(cid)
    if inline_data(raw) is not None:
        return raw, None
    return raw, block_key(multihash_of(raw))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Transaction:
    """Blocks staged for one operation; see ``Repo.transaction``."""

    def __init__(self, repo: Repo, staging: Path) -> None:
        self.repo = repo
        self.staging = staging
        self.staged: dict[str, Path] = {}

    def put(self, cid: bytes | CID | str, data: bytes | memoryview) -> None:
        """Stage one block (already checked by the caller) unless the repo has it intact.

        A stored copy that differs from ``data`` is damaged (the caller's bytes hash to
        the key), so it is replaced when the transaction commits.
        """
        key = stored_key(cid)[1]
        if key is None:  # an identity CID carries its block
            return
        if key in self.staged:
            return
        target = self.repo.block_path(key)
        try:
            if target.read_bytes() == data:
                return
        except FileNotFoundError:
            pass
        temporary = self.staging / key
        temporary.write_bytes(data)
        self.staged[key] = temporary

    def _commit(self) -> None:
        for key, temporary in self.staged.items():
            target = self.repo.block_path(key)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(temporary, target)


#: The most a repository reads for one block: go-car's limit on a CAR section, which no
#: tool's blocks come near (kubo's are at most 2 MiB).  A larger file or object under a
#: block's key is damage, refused after reading this much, not read whole first.
MAX_STORED_BYTES = 32 << 20


def oversized(raw: bytes, where: str) -> IntegrityError:
    """The error for a stored copy of ``raw`` larger than any block."""
    return IntegrityError(
        f"block {cid_text(raw)} is stored as more than {MAX_STORED_BYTES} bytes ({where}), "
        "more than any block: the copy is damaged, and was not read whole"
    )


@dataclass(frozen=True)
class Damage:
    """A block file whose bytes do not hash to its key (``howto repo verify``)."""

    path: Path
    multihash: bytes
    reason: str


class Repo:
    """A directory of blocks keyed by multihash: a block source you can write to."""

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = Path(path) if path is not None else default_repo_path()

    def __str__(self) -> str:
        return "local repository"

    def __eq__(self, other: object) -> bool:
        """Two ``Repo`` objects over one folder are one repository (a pickled copy too)."""
        return isinstance(other, Repo) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)

    def block_path(self, key: str) -> Path:
        """The file of the block whose multihash, base32-encoded, is ``key``."""
        return self.path / block_relpath(key)

    def _file(self, cid: bytes | CID | str) -> tuple[bytes, Path | None]:
        raw, key = stored_key(cid)
        return raw, None if key is None else self.block_path(key)

    def has(self, cid: bytes | CID | str) -> bool:
        """Whether the block is here (identity CIDs carry their block, so always)."""
        _, path = self._file(cid)
        return path is None or path.exists()

    __contains__ = has

    def get(self, cid: bytes | CID | str) -> bytes:
        """The block's bytes, checked against ``cid``; ``NotFoundError`` when absent."""
        raw, path = self._file(cid)
        data = self._read(raw, path)
        verify_raw(raw, data)
        return data

    def get_unverified(self, cid: bytes | CID | str) -> bytes:
        """The block's bytes as stored, not hashed: for a reader who checks them anyway.

        The gateway's trustless responses use it, as kubo does (its ``HashOnRead`` is off
        by default): hashing on both ends would double the cost of every block.
        """
        return self._read(*self._file(cid))

    def open_block(self, cid: bytes | CID | str) -> BinaryIO | None:
        """The block's file, open for reading, unread and unhashed; ``None`` when it is not
        stored here as a file, or is larger than any block (``get`` then says why).  For a
        server that sends blocks with ``sendfile`` in trustless replies, whose reader
        checks every byte."""
        path = self._file(cid)[1]
        if path is None:
            return None
        try:
            file = open(path, "rb")  # noqa: SIM115 (the caller sends it, then closes it)
        except FileNotFoundError:
            return None
        if os.fstat(file.fileno()).st_size > MAX_STORED_BYTES:
            file.close()
            return None
        return file

    def _read(self, raw: bytes, path: Path | None) -> bytes:
        if path is None:  # the "digest" is the block itself, as in kubo
            return inline_data(raw)
        try:
            with open(path, "rb") as f:
                if os.fstat(f.fileno()).st_size > MAX_STORED_BYTES:
                    raise oversized(raw, str(path))
                return f.read()
        except FileNotFoundError:
            raise NotFoundError(f"block {cid_text(raw)} is not in the {self}") from None

    __getitem__ = get

    def put(self, cid: bytes | CID | str, data: bytes) -> None:
        """Store one block after checking it (a transaction of one)."""
        verify_raw(raw_cid(cid), data)
        with self.transaction() as txn:
            txn.put(cid, data)

    __setitem__ = put

    def put_many(self, blocks: Iterable[tuple[bytes | CID | str, bytes]]) -> int:
        """Check and store many blocks in one transaction; return how many were given."""
        count = 0
        with self.transaction() as txn:
            for cid, data in blocks:
                raw = raw_cid(cid)
                verify_raw(raw, data)
                txn.put(raw, data)
                count += 1
        return count

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """Stage blocks; move them into place only if the ``with`` body succeeds."""
        self.collect_garbage()
        host = socket.gethostname().replace("-", "_")
        staging = self.path / "staging" / f"{host}-{os.getpid()}-{uuid.uuid4().hex}"
        staging.mkdir(parents=True)
        try:
            txn = Transaction(self, staging)
            yield txn
            txn._commit()
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def collect_garbage(self) -> list[Path]:
        """Remove the staging folders of transactions whose process is gone; return them.

        A folder is abandoned when its process no longer runs on this host, or, for one
        staged on another host, when it is older than a day.
        """
        removed = []
        try:
            folders = list((self.path / "staging").iterdir())
        except FileNotFoundError:
            return removed
        host = socket.gethostname().replace("-", "_")
        for folder in folders:
            owner, _, rest = folder.name.partition("-")
            pid = rest.partition("-")[0]
            if owner == host and pid.isdigit():
                abandoned = not _alive(int(pid))
            else:
                try:
                    abandoned = time.time() - folder.stat().st_mtime > STALE_SECONDS
                except FileNotFoundError:
                    continue
            if abandoned:
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
        return removed

    def keys(self) -> Iterator[bytes]:
        """The multihash of every block stored."""
        for path in sorted((self.path / "blocks").glob("*/*")):
            try:
                yield multihash_of_key(path.name)
            except ValueError:
                continue

    def verify(self) -> Iterator[Damage]:
        """Check every stored block against its key; yield the damaged ones."""
        for path in sorted((self.path / "blocks").glob("*/*")):
            try:
                multihash = multihash_of_key(path.name)
            except ValueError:
                yield Damage(path, b"", "its name is not a multihash")
                continue
            try:
                verify_multihash(multihash, path.read_bytes())
            except (IntegrityError, ValueError) as exc:
                yield Damage(path, multihash, str(exc))


__all__ = [
    "MAX_STORED_BYTES",
    "STALE_SECONDS",
    "oversized",
    "Damage",
    "Repo",
    "Transaction",
    "cache_repo_path",
    "default_repo_path",
    "stored_key",
]
