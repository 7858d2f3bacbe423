"""A block repository in a bucket (or anywhere fsspec reaches), and the repository factory.

``BucketRepo("s3://bucket/prefix")`` keeps blocks as objects with the keys the local
repository gives its files (``blocks/<last two characters>/<base32 multihash>``), so a
repository folder copied into a bucket is a bucket repository, and back.  It follows the
block-store protocol of ``howto.blocks``: every read is hashed against its CID (an object
overwritten in the bucket raises ``IntegrityError``, never returns its bytes), and a
transaction writes no block key until the whole operation has succeeded: blocks wait in
memory, or, for a large import, under a staging prefix in the bucket, and then land by
one PUT (or one copy inside the store) each, which an object store makes visible whole or
not at all.  Off object stores (``file://``, …) they are written beside and renamed.

``open_repo()`` is how the package opens the repository ``$HOWTO_REPO`` names: a folder
gives a ``howto.repo.Repo``, an fsspec URL a ``BucketRepo``.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from multiformats import CID

from ..errors import HowtoError, IntegrityError, NotFoundError
from ..formats.cids import cid_text, inline_data, raw_cid, verify_multihash, verify_raw
from .repo import (
    MAX_STORED_BYTES,
    STALE_SECONDS,
    Repo,
    block_relpath,
    default_repo_location,
    multihash_of_key,
    oversized,
    stored_key,
)

if TYPE_CHECKING:  # fsspec (and its backends) load when a bucket is first used
    import fsspec

#: Services whose single PUT makes an object visible whole or not at all.
OBJECT_STORES = {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oss", "memory"}
#: Services whose paths begin with a bucket (or container) that must exist beforehand.
BUCKET_STORES = {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "oss"}

#: How many staged blocks are copied into place at once.
UPLOAD_BATCH = 256
#: Blocks held in memory by a transaction before they go to its staging prefix.
FLUSH_BYTES = 64 * 1024 * 1024


class StorageError(HowtoError):
    """A bucket or endpoint that cannot be used: missing, refused, unreachable."""


def is_url(location: str | os.PathLike) -> bool:
    """Whether ``location`` is an fsspec URL (``s3://…``) rather than a local path."""
    text = os.fspath(location)
    return "://" in text and not text.startswith("file://")


def s3_storage_options(environ: Mapping[str, str] | None = None) -> dict:
    """s3fs options from the standard variables: the endpoint in ``client_kwargs``.

    ``AWS_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_S3``) names a non-AWS endpoint; the
    credentials come from ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` (or botocore's
    usual chain when they are not set).
    """
    env = os.environ if environ is None else environ
    options: dict = {}
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    if endpoint:
        options["client_kwargs"] = {"endpoint_url": endpoint}
    if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        options["key"] = env["AWS_ACCESS_KEY_ID"]
        options["secret"] = env["AWS_SECRET_ACCESS_KEY"]
    return options


def storage_options_for(url: str, given: dict | None = None) -> dict:
    """The options to open ``url`` with: ``given``, plus the endpoint variables for S3.

    Naming the endpoint keeps fsspec's instance cache honest when ``AWS_ENDPOINT_URL``
    changes in a running process.
    """
    options = dict(given or {})
    if url.split("://", 1)[0] in ("s3", "s3a"):
        for name, value in s3_storage_options().items():
            options.setdefault(name, value)
    return options


def endpoint_of(fs: fsspec.AbstractFileSystem) -> str | None:
    """The endpoint URL an S3-like file system talks to, when it names one."""
    kwargs = getattr(fs, "client_kwargs", None) or {}
    endpoint = kwargs.get("endpoint_url") or getattr(fs, "endpoint_url", None)
    return str(endpoint) if endpoint else None


def storage_error(exc: BaseException, where: str, fs: fsspec.AbstractFileSystem) -> HowtoError:
    """One line for a failure to use ``where``: what went wrong and with which endpoint."""
    endpoint = endpoint_of(fs)
    at = f" at {endpoint}" if endpoint else ""
    name = type(exc).__name__
    text = (str(exc).strip().splitlines() or [name])[0]
    if "connect" in name.lower() or "connect" in text.lower() or isinstance(exc, TimeoutError):
        return StorageError(f"{where}: cannot reach the endpoint{at or ' ' + text}")
    if isinstance(exc, PermissionError):
        return StorageError(f"{where}: access refused{at}: {text}")
    if isinstance(exc, FileNotFoundError) and "bucket" in text.lower():
        return missing_bucket(where, fs)
    return StorageError(f"{where}{at}: {text}")


def missing_bucket(where: str, fs: fsspec.AbstractFileSystem) -> StorageError:
    """The one-line error for a URL whose bucket does not exist, naming it and the endpoint."""
    endpoint = endpoint_of(fs)
    bucket = where.split("://", 1)[-1].split("/", 1)[0]
    return StorageError(f"{where}: no bucket {bucket!r}{f' at {endpoint}' if endpoint else ''}")


@contextmanager
def translated(where: str, fs: fsspec.AbstractFileSystem) -> Iterator[None]:
    """Turn the client library's failures into one-line ``StorageError``s naming ``where``.

    Errors howto raises itself, and plain absence of a key, pass unchanged.
    """
    try:
        yield
    except HowtoError:
        raise
    except FileNotFoundError as exc:
        text = str(exc).lower()
        if "bucket" in text:
            raise storage_error(exc, where, fs) from None
        raise
    except Exception as exc:  # botocore, aiohttp, … have their own hierarchies
        raise storage_error(exc, where, fs) from None


@dataclass(frozen=True)
class Damage:
    """An object whose bytes do not hash to its key."""

    path: str
    multihash: bytes
    reason: str


class BucketTransaction:
    """Blocks of one operation, held back until it succeeds.

    Blocks wait in memory; past ``FLUSH_BYTES`` they are uploaded under this transaction's
    staging prefix (``staging/<id>/``), so a large import needs neither the memory nor a
    local copy.  On success every block lands under its final key: the ones in memory by
    one PUT each, the staged ones by a copy inside the store (or a rename, off object
    stores).  On failure the staging prefix is removed and no block key was written.
    """

    def __init__(self, repo: BucketRepo, token: str) -> None:
        self.repo = repo
        self.prefix = f"{repo.root}/staging/{token}"
        self.pending: dict[str, bytes] = {}
        self.pending_bytes = 0
        self.staged: set[str] = set()

    def put(self, cid: bytes | CID | str, data: bytes | memoryview) -> None:
        """Hold one block (already checked by the caller) for the end of the operation."""
        key = stored_key(cid)[1]
        if key is None:  # an identity CID carries its block
            return
        if key in self.pending or key in self.staged:
            return
        self.pending[key] = bytes(data)
        self.pending_bytes += len(data)
        if self.pending_bytes >= FLUSH_BYTES:
            self._flush()

    def _flush(self) -> None:
        """Upload the blocks held in memory under the staging prefix."""
        if not self.pending:
            return
        with translated(self.repo.url, self.repo.fs):
            if not self.repo.atomic_puts:  # real folders must exist before files go in
                self.repo.fs.makedirs(self.prefix, exist_ok=True)
            self.repo.fs.pipe({f"{self.prefix}/{k}": v for k, v in self.pending.items()})
        self.staged.update(self.pending)
        self.pending.clear()
        self.pending_bytes = 0

    def _commit(self) -> None:
        repo = self.repo
        fs = repo.fs
        if not repo.atomic_puts:  # write beside, then rename: never a half-written block
            self._flush()
        with translated(repo.url, fs):
            if self.pending:  # one PUT each, whole or not at all
                fs.pipe({repo.object_path(k): v for k, v in self.pending.items()})
            staged = sorted(self.staged)
            for start in range(0, len(staged), UPLOAD_BATCH):
                batch = staged[start : start + UPLOAD_BATCH]
                sources = [f"{self.prefix}/{k}" for k in batch]
                targets = [repo.object_path(k) for k in batch]
                if repo.atomic_puts:
                    fs.copy(sources, targets)
                else:
                    for source, target in zip(sources, targets, strict=True):
                        fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
                        fs.mv(source, target)

    def _discard(self) -> None:
        if self.staged:
            try:
                self.repo.fs.rm(self.prefix, recursive=True)
            except Exception:  # a stale prefix is what collect_garbage is for
                pass


class BucketRepo:
    """Blocks as objects under an fsspec URL: a verified block store in a bucket."""

    def __init__(self, url: str, storage_options: dict | None = None) -> None:
        self.url = url.rstrip("/")
        self.storage_options = storage_options_for(url, storage_options)
        self._fs: fsspec.AbstractFileSystem | None = None
        self._root: str | None = None
        self._bucket_seen = False

    def __reduce__(self) -> tuple:
        return (BucketRepo, (self.url, self.storage_options))  # workers reconnect

    def __str__(self) -> str:
        return f"repository {self.url}"

    def __repr__(self) -> str:
        return f"BucketRepo({self.url!r})"

    def _connect(self) -> None:
        import fsspec

        fs, root = fsspec.core.url_to_fs(self.url, **self.storage_options)
        self._fs, self._root = fs, root.rstrip("/")

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        """The file system the objects live in (connected on first use)."""
        if self._fs is None:
            self._connect()
        return self._fs

    @property
    def root(self) -> str:
        """The repository's path in its file system (bucket/prefix)."""
        if self._root is None:
            self._connect()
        return self._root

    @property
    def atomic_puts(self) -> bool:
        protocol = self.fs.protocol
        protocols = {protocol} if isinstance(protocol, str) else set(protocol)
        return bool(protocols & OBJECT_STORES)

    def object_path(self, key: str) -> str:
        """The object of the block whose multihash, base32-encoded, is ``key``."""
        return f"{self.root}/{block_relpath(key)}"

    def protocol_url(self, path: str) -> str:
        """``path`` in this file system as a URL (``s3://bucket/key``)."""
        return self.fs.unstrip_protocol(path)

    def _object(self, cid: bytes | CID | str) -> tuple[bytes, str | None]:
        raw, key = stored_key(cid)
        return raw, None if key is None else self.object_path(key)

    def check_bucket(self) -> None:
        """Raise ``StorageError`` when the repository's bucket does not exist.

        An object store answers "no such key" alike for a missing block and for a missing
        bucket; every answer of absence (``has``, ``get``, an empty listing) asks this
        first, so a misspelt bucket is an error, never an empty repository.  A bucket once
        seen is not asked for again.
        """
        if self._bucket_seen:
            return
        protocol = self.fs.protocol
        protocols = {protocol} if isinstance(protocol, str) else set(protocol)
        if not protocols & BUCKET_STORES:
            self._bucket_seen = True
            return
        bucket = self.root.split("/", 1)[0]
        with translated(self.url, self.fs):
            exists = self.fs.exists(bucket)
        if not exists:
            raise missing_bucket(self.url, self.fs)
        self._bucket_seen = True

    def has(self, cid: bytes | CID | str) -> bool:
        """Whether the bucket holds the block (identity CIDs carry theirs); a bucket that
        does not exist is a ``StorageError``."""
        _, path = self._object(cid)
        if path is None:
            return True
        with translated(self.url, self.fs):
            if self.fs.exists(path):
                return True
        self.check_bucket()
        return False

    __contains__ = has

    def get_unverified(self, cid: bytes | CID | str) -> bytes:
        """The object's bytes as stored, for a reader who hashes them anyway."""
        raw, path = self._object(cid)
        if path is None:
            return inline_data(raw)
        try:
            with translated(self.url, self.fs):
                data = self.fs.cat_file(path, start=0, end=MAX_STORED_BYTES + 1)
        except FileNotFoundError:
            self.check_bucket()
            raise NotFoundError(f"block {cid_text(raw)} is not in the {self}") from None
        if len(data) > MAX_STORED_BYTES:
            raise oversized(raw, self.protocol_url(path))
        return data

    def get(self, cid: bytes | CID | str) -> bytes:
        """The block's bytes, hashed against ``cid``: an overwritten object is refused."""
        raw, path = self._object(cid)
        data = self.get_unverified(raw)
        try:
            verify_raw(raw, data)
        except IntegrityError as exc:  # name the object, for whoever looks after the bucket
            raise IntegrityError(f"{exc} (object {self.protocol_url(path)})") from None
        return data

    __getitem__ = get

    def put(self, cid: bytes | CID | str, data: bytes) -> None:
        """Check and store one block (a transaction of one)."""
        verify_raw(raw_cid(cid), data)
        with self.transaction() as txn:
            txn.put(cid, data)

    @contextmanager
    def transaction(self) -> Iterator[BucketTransaction]:
        """Hold blocks back; write them under their keys only if the ``with`` body succeeds."""
        txn = BucketTransaction(self, f"{int(time.time())}-{uuid.uuid4().hex}")
        try:
            yield txn
            txn._commit()
        finally:
            txn._discard()

    def _objects(self) -> list[str]:
        with translated(self.url, self.fs):
            try:
                found = sorted(self.fs.find(f"{self.root}/blocks"))
            except FileNotFoundError:
                found = []
        if not found:
            self.check_bucket()
        return found

    def keys(self) -> Iterator[bytes]:
        """The multihash of every block stored."""
        for path in self._objects():
            try:
                yield multihash_of_key(path.rsplit("/", 1)[-1])
            except ValueError:
                continue

    def verify(self) -> Iterator[Damage]:
        """Check every stored object against its key; yield the damaged ones."""
        for path in self._objects():
            name = path.rsplit("/", 1)[-1]
            try:
                multihash = multihash_of_key(name)
            except ValueError:
                yield Damage(path, b"", "its name is not a multihash")
                continue
            try:
                with translated(self.url, self.fs):
                    verify_multihash(multihash, self.fs.cat_file(path))
            except (IntegrityError, ValueError) as exc:
                yield Damage(path, multihash, str(exc))

    def collect_garbage(self) -> list[str]:
        """Remove the staging prefixes of transactions that began over a day ago.

        A prefix is named after the time its transaction began; younger ones may belong to
        a transaction still running, here or on another machine, and are left alone.
        """
        removed = []
        with translated(self.url, self.fs):
            try:
                prefixes = self.fs.ls(f"{self.root}/staging", detail=False)
            except FileNotFoundError:
                self.check_bucket()
                return removed
            for prefix in prefixes:
                began = prefix.rstrip("/").rsplit("/", 1)[-1].partition("-")[0]
                if began.isdigit() and time.time() - int(began) > STALE_SECONDS:
                    self.fs.rm(prefix, recursive=True)
                    removed.append(prefix)
        return removed


def open_repo(
    location: str | os.PathLike | None = None, storage_options: dict | None = None
) -> Repo | BucketRepo:
    """The repository at ``location`` (default ``$HOWTO_REPO``): a folder or a bucket."""
    where = os.fspath(location) if location is not None else default_repo_location()
    if is_url(where):
        return BucketRepo(where, storage_options)
    return Repo(where.removeprefix("file://"))


__all__ = [
    "BucketRepo",
    "BucketTransaction",
    "Damage",
    "StorageError",
    "is_url",
    "missing_bucket",
    "open_repo",
    "s3_storage_options",
    "storage_options_for",
    "translated",
]
