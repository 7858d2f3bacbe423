"""Where IPNS keys and records are kept: small files in a folder, or under a bucket prefix.

Records follow the repository: ``$HOWTO_REPO/ipns``, a folder or a bucket, so that every
machine (or gateway) that reads blocks from a bucket also finds the names published there.
Keys do not: a private key is a secret, and a bucket is shared storage that its readers,
its administrators and often a public endpoint can read.  Keys stay on this machine, in
``$HOWTO_REPO/keys`` when the repository is a folder, else beside the default local
repository (``keys_location``); ``$HOWTO_KEYS`` names another place, and only a
``$HOWTO_KEYS`` (or a ``KeyStore`` location) that is itself a bucket URL, which is the
user asking for it, puts keys in a bucket.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from ..blocks.bucket import BucketRepo, is_url, translated
from ..blocks.repo import cache_repo_path, default_repo_location

__all__ = ["Shelf", "keys_location", "records_location"]


def records_location() -> str:
    """Where records are kept by default: ``ipns`` in the repository ``$HOWTO_REPO`` names
    (a folder or a bucket URL)."""
    return _child(default_repo_location(), "ipns")


def keys_location() -> str:
    """Where keys are kept by default: ``$HOWTO_KEYS``; else ``keys`` in the repository when
    it is a folder; else ``keys`` beside the default local repository, never in a bucket."""
    given = os.environ.get("HOWTO_KEYS")
    if given:
        return given if is_url(given) else str(Path(given).expanduser())
    repo = default_repo_location()
    if is_url(repo):
        repo = str(cache_repo_path())  # the local repository this machine would use
    return _child(repo, "keys")


def _child(location: str, name: str) -> str:
    if is_url(location):
        return f"{location.rstrip('/')}/{name}"
    return str(Path(location.removeprefix("file://")) / name)


class Shelf:
    """Small files by name in one folder or under one bucket prefix, each written whole.

    ``private`` files are made readable by their owner only (in a folder; a bucket has its
    own access rules).  A name is one path component; callers check their names.
    """

    def __init__(self, location: str | os.PathLike, private: bool = False) -> None:
        text = os.fspath(location)
        self.private = private
        self.bucket = BucketRepo(text) if is_url(text) else None
        self.path = None if self.bucket else Path(text.removeprefix("file://"))

    def __str__(self) -> str:
        return self.bucket.url if self.bucket else str(self.path)

    def _object(self, name: str) -> str:
        return f"{self.bucket.root}/{name}"

    def read(self, name: str) -> bytes:
        """The file's bytes; ``FileNotFoundError`` when there is none (``StorageError``
        when the bucket itself does not exist)."""
        if self.path is not None:
            return (self.path / name).read_bytes()
        try:
            with translated(self.bucket.url, self.bucket.fs):
                return self.bucket.fs.cat_file(self._object(name))
        except FileNotFoundError:
            self.bucket.check_bucket()
            raise

    def exists(self, name: str) -> bool:
        if self.path is not None:
            return (self.path / name).exists()
        with translated(self.bucket.url, self.bucket.fs):
            if self.bucket.fs.exists(self._object(name)):
                return True
        self.bucket.check_bucket()
        return False

    def write(self, name: str, data: bytes, exclusive: bool = False) -> None:
        """Write the whole file at once (readers see the old one or the new one);
        ``exclusive`` refuses to replace one (``FileExistsError``)."""
        if self.path is not None:
            self.path.mkdir(parents=True, exist_ok=True)
            target = self.path / name
            if exclusive:  # O_EXCL: of two processes making the same key, one wins
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                return
            temporary = self.path / f".{name}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            if not self.private:
                os.chmod(temporary, 0o644)
            os.replace(temporary, target)
            return
        if exclusive and self.exists(name):
            raise FileExistsError(f"{self}/{name} already exists")
        fs = self.bucket.fs
        with translated(self.bucket.url, fs):
            if self.bucket.atomic_puts:  # one PUT: the object appears whole or not at all
                fs.pipe_file(self._object(name), data)
            else:
                temporary = self._object(f".{name}.{uuid.uuid4().hex[:8]}")
                fs.makedirs(self.bucket.root, exist_ok=True)
                fs.pipe_file(temporary, data)
                fs.mv(temporary, self._object(name))

    def names(self) -> list[str]:
        """Every file's name, sorted (files being written are left out)."""
        if self.path is not None:
            if not self.path.is_dir():
                return []
            found = [p.name for p in self.path.iterdir() if p.is_file()]
        else:
            with translated(self.bucket.url, self.bucket.fs):
                try:
                    listed = self.bucket.fs.ls(self.bucket.root, detail=False)
                except FileNotFoundError:
                    listed = []
            if not listed:
                self.bucket.check_bucket()
            found = [p.rstrip("/").rsplit("/", 1)[-1] for p in listed]
        return sorted(n for n in found if not n.startswith("."))
