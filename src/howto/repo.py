"""The local block repository: CID → bytes on disk, hash-checked on every read.

Blocks are filed by multihash (as kubo's flatfs does), so the CIDv0 and CIDv1 of the
same bytes share one file.  Writes go through a transaction: blocks are staged and only
moved into place when the whole operation succeeds, so a failed ``add`` or CAR import
leaves nothing behind.
"""

from __future__ import annotations

import base64
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import platformdirs
from multiformats import CID

from .cids import to_cid, verify_block
from .errors import NotFoundError

IDENTITY = 0x00


def default_repo_path() -> Path:
    """``$HOWTO_REPO``, else a folder in the user's cache directory."""
    env = os.environ.get("HOWTO_REPO")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_cache_dir("howto")) / "repo"


def _key(cid: CID) -> str:
    return base64.b32encode(bytes(cid.digest)).decode().rstrip("=").lower()


class Transaction:
    """Blocks staged for one operation; see ``Repo.transaction``."""

    def __init__(self, repo: Repo, staging: Path) -> None:
        self.repo = repo
        self.staging = staging
        self.staged: set[str] = set()

    def put(self, cid: bytes | CID | str, data: bytes) -> None:
        """Stage one block (already checked by the caller) unless the repo has it."""
        cid = to_cid(cid)
        if cid.hashfun.code == IDENTITY:
            return
        key = _key(cid)
        if key in self.staged or self.repo._path(key).exists():
            return
        (self.staging / key).write_bytes(data)
        self.staged.add(key)

    def _commit(self) -> None:
        for key in self.staged:
            target = self.repo._path(key)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.staging / key, target)


class Repo:
    """A directory of blocks keyed by multihash."""

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = Path(path) if path is not None else default_repo_path()

    def _path(self, key: str) -> Path:
        return self.path / "blocks" / key[-2:] / key

    def has(self, cid: bytes | CID | str) -> bool:
        """Whether the block is here (identity CIDs carry their block, so always)."""
        cid = to_cid(cid)
        return cid.hashfun.code == IDENTITY or self._path(_key(cid)).exists()

    __contains__ = has

    def get(self, cid: bytes | CID | str) -> bytes:
        """The block's bytes, checked against ``cid``; ``NotFoundError`` when absent."""
        cid = to_cid(cid)
        return verify_block(cid, self.get_unverified(cid))

    def get_unverified(self, cid: bytes | CID | str) -> bytes:
        """The block's bytes as stored, not hashed: for a reader who checks them anyway.

        The gateway's trustless responses use it, as kubo does (its ``HashOnRead`` is off
        by default): hashing on both ends would double the cost of every block.
        """
        cid = to_cid(cid)
        if cid.hashfun.code == IDENTITY:  # the "digest" is the block itself, as in kubo
            return bytes(cid.raw_digest)
        try:
            return self._path(_key(cid)).read_bytes()
        except FileNotFoundError:
            raise NotFoundError(f"block {cid} is not in the repository {self.path}") from None

    __getitem__ = get

    def put(self, cid: bytes | CID | str, data: bytes) -> None:
        """Store one block after checking it (a transaction of one)."""
        verify_block(to_cid(cid), data)
        with self.transaction() as txn:
            txn.put(cid, data)

    __setitem__ = put

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """Stage blocks; move them into place only if the ``with`` body succeeds."""
        staging = self.path / "staging" / uuid.uuid4().hex
        staging.mkdir(parents=True)
        try:
            txn = Transaction(self, staging)
            yield txn
            txn._commit()
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            with suppress(OSError):  # still in use by another transaction: leave it
                staging.parent.rmdir()
