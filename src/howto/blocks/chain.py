"""One block layer: the protocol every block source follows, and a chain of sources.

A block source answers three questions about a CID (given as a ``CID`` or in binary):
``get`` (the bytes, checked against the CID), ``get_unverified`` (the bytes for a reader
that hashes them itself; a source may still check them) and ``has``.  A writable source,
a *store*, also opens a ``transaction()`` whose ``put(cid, data)`` lands all blocks or
none.  The sources: the local repository (``howto.repo.Repo``), the CAR files bundled with
howto (``CarBlocks``), any mapping of CID strings to bytes (``MappingBlocks``), and a
gateway over HTTP (``howto.trustless.GatewayBlocks``).

A ``Chain`` asks its sources in order: local ones first, then gateways.  A source that
lacks the block, fails, does not answer in time, or holds a copy that does not match the
CID (a damaged file, an overwritten object) passes the request on, so the true bytes come
from any other copy; when none can answer, one error names every source and what it said
(an ``IntegrityError`` when any copy was wrong, an ``UnavailableError`` when none had it:
one source lacking a block is absence, every source lacking it is not).  Blocks a chain
fetches from a remote source can be kept in a store, as kubo keeps what it fetches.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, MutableMapping
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from multiformats import CID

from ..errors import (
    GatewayError,
    IntegrityError,
    NotFoundError,
    PathNotFoundError,
    UnavailableError,
)
from ..formats.car import CARError, check_roots, read_car_raw
from ..formats.cids import DAG_PB, cid_text, inline_data, multihash_of, raw_cid, verify_raw

CidLike = CID | bytes

#: Wrong copies passed over are logged here; silent unless the program adds a handler.
log = logging.getLogger(__name__)
log.addHandler(logging.NullHandler())


class Putter(Protocol):
    def put(self, cid: CidLike, data: bytes) -> None:
        """Stage one block, already checked by the caller."""


@runtime_checkable
class BlockSource(Protocol):
    """Where blocks come from."""

    def get(self, cid: CidLike) -> bytes:
        """The block's bytes, verified against ``cid``; ``NotFoundError`` when absent."""

    def get_unverified(self, cid: CidLike) -> bytes:
        """The block's bytes for a reader who hashes them anyway."""

    def has(self, cid: CidLike) -> bool:
        """Whether this source holds the block (without fetching it)."""


@runtime_checkable
class BlockStore(BlockSource, Protocol):
    """A block source that can be written to, all blocks of an operation or none."""

    def transaction(self) -> AbstractContextManager[Putter]:
        """Blocks put in the ``with`` body land when it succeeds, and only then."""


class CarBlocks:
    """The blocks of some CAR files, each verified once when the files are first read."""

    def __init__(self, paths: Iterable[Path], name: str = "bundled catalog blocks") -> None:
        self.paths = list(paths)
        self.name = name
        self._blocks: dict[bytes, bytes] | None = None
        self._lock = threading.Lock()

    def __str__(self) -> str:
        return self.name

    def __getstate__(self) -> dict:
        """Pickled as its files: another process reads and verifies them itself."""
        return {"paths": self.paths, "name": self.name}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["paths"], state["name"])

    def load(self) -> dict[bytes, bytes]:
        """Read and verify every file now (a bad CAR raises ``CARError``)."""
        with self._lock:
            if self._blocks is None:
                blocks = {}
                for path in self.paths:
                    with open(path, "rb") as f:
                        try:
                            roots, sections = read_car_raw(f)  # its header as dag import
                            check_roots(roots)  # reads it: the two refuse the same files
                        except CARError as exc:
                            raise CARError(f"{path}: {exc}") from None
                        for cid, data in sections:
                            blocks[multihash_of(cid)] = data
                self._blocks = blocks
        return self._blocks

    def get(self, cid: CidLike) -> bytes:
        raw = raw_cid(cid)
        try:
            return self.load()[multihash_of(raw)]
        except KeyError:
            if (carried := inline_data(raw)) is not None:
                return carried
            raise NotFoundError(f"block {cid_text(cid)} is not in the {self}") from None

    get_unverified = get  # checked once when loaded: nothing to skip

    def has(self, cid: CidLike) -> bool:
        raw = raw_cid(cid)
        return multihash_of(raw) in self.load() or inline_data(raw) is not None


class MappingBlocks:
    """Blocks in any mapping of CID strings to bytes (a ``dict``, a ``shelve``, …).

    A block's key is its CIDv1 in base32 (``key``), so a CIDv0 and its CIDv1 name one
    entry, as they name one block everywhere else.  Every read is checked, so the mapping
    may be anything, near or far.  Writes need a mutable mapping; a transaction collects
    its blocks and writes them when it succeeds, replacing any copy that differs.
    """

    def __init__(self, mapping: Mapping[str, bytes], name: str = "block mapping") -> None:
        self.mapping = mapping
        self.name = name

    def __str__(self) -> str:
        return self.name

    @staticmethod
    def key(cid: CidLike) -> str:
        """The key of a block in the mapping: its CIDv1, in base32."""
        raw = raw_cid(cid)
        if raw[0] != 1:  # a CIDv0 is a dag-pb block's bare multihash
            raw = _DAG_PB_V1 + raw
        return cid_text(raw)

    def get_unverified(self, cid: CidLike) -> bytes:
        key = self.key(cid)
        try:
            return bytes(self.mapping[key])
        except KeyError:
            if (carried := inline_data(raw_cid(cid))) is not None:
                return carried
            raise NotFoundError(f"block {cid_text(cid)} is not in the {self}") from None

    def get(self, cid: CidLike) -> bytes:
        data = self.get_unverified(cid)
        verify_raw(raw_cid(cid), data)
        return data

    def has(self, cid: CidLike) -> bool:
        return self.key(cid) in self.mapping or inline_data(raw_cid(cid)) is not None

    @contextmanager
    def transaction(self) -> Iterator[Putter]:
        mapping = self.mapping
        if not isinstance(mapping, MutableMapping):
            raise TypeError(f"the {self} is read-only: a Mapping, not a MutableMapping")
        staged = _Staged()
        yield staged
        for key, data in staged.blocks.items():
            if mapping.get(key) != data:  # absent, or a damaged copy the caller's replaces
                mapping[key] = data


#: What turns a CIDv0 into its CIDv1: version 1, codec dag-pb.
_DAG_PB_V1 = bytes([1, DAG_PB])


class _Staged:
    def __init__(self) -> None:
        self.blocks: dict[str, bytes] = {}

    def put(self, cid: CidLike, data: bytes | memoryview) -> None:
        if inline_data(raw_cid(cid)) is None:  # an identity CID carries its block
            # a copy: the caller may reuse the buffer a view points into
            self.blocks.setdefault(MappingBlocks.key(cid), bytes(data))


class Chain:
    """Sources asked in order; the first that has a block answers.

    ``remote`` sources (gateways) come after the local ones.  ``keep``, a store, receives
    every block fetched from a remote source, after it was verified.
    """

    def __init__(
        self,
        local: Iterable[BlockSource] = (),
        remote: Iterable[BlockSource] = (),
        keep: BlockStore | None = None,
    ) -> None:
        self.local = list(local)
        self.remote = list(remote)
        self.keep = keep

    @property
    def sources(self) -> list[BlockSource]:
        return [*self.local, *self.remote]

    def __str__(self) -> str:
        return ", ".join(str(s) for s in self.sources) or "no block source"

    def local_only(self) -> Chain:
        """The same chain without its remote sources."""
        return Chain(self.local)

    def has(self, cid: CidLike) -> bool:
        """Whether a *local* source holds the block: nothing is fetched to answer."""
        return any(source.has(cid) for source in self.local)

    def get(self, cid: CidLike) -> bytes:
        return self._ask(cid, verified=True)

    def get_unverified(self, cid: CidLike) -> bytes:
        return self._ask(cid, verified=False)

    def _ask(self, cid: CidLike, verified: bool) -> bytes:
        failures: list[tuple[object, Exception]] = []
        for source in self.local:
            try:
                return source.get(cid) if verified else source.get_unverified(cid)
            except (NotFoundError, UnavailableError) as exc:
                failures.append((source, exc))
            except IntegrityError as exc:  # a wrong copy: say so, then try the others
                said = str(exc) if str(source) in str(exc) else f"{source}: {exc}"
                log.warning("%s; asking the next source", said)
                failures.append((source, exc))
        if not self.remote:  # nothing else to ask: a wrong copy is the error, as it said
            wrong = [exc for _, exc in failures if isinstance(exc, IntegrityError)]
            if wrong:
                raise wrong[0]
        # remote bytes are always checked, whatever the caller asked for
        data = self.ask_remote(f"block {cid_text(cid)}", lambda s: s.get(cid), failures)
        self.keep_blocks([(cid, data)])
        return data

    def ask_remote(
        self,
        what: str,
        call: Callable[[BlockSource], Any],
        failures: list[tuple[object, Exception]] | None = None,
    ) -> Any:
        """``call`` on each remote source in turn until one answers; else one error.

        ``failures`` are what earlier (local) sources said, for that error's message.  A
        source whose verified blocks prove a name absent (``PathNotFoundError``) ends the
        search: no other source can hold a different directory under the same CID.
        """
        failures = list(failures or [])
        for source in self.remote:
            try:
                return call(source)
            except PathNotFoundError:
                raise
            except _PASS_ON as exc:
                failures.append((source, exc))
        raise combined_error(what, failures, self)

    async def ask_remote_async(
        self,
        what: str,
        call: Callable[[BlockSource], Awaitable[Any]],
        failures: list[tuple[object, Exception]] | None = None,
    ) -> Any:
        """``ask_remote`` for an event loop: ``call`` returns an awaitable."""
        failures = list(failures or [])
        for source in self.remote:
            try:
                return await call(source)
            except PathNotFoundError:
                raise
            except _PASS_ON as exc:
                failures.append((source, exc))
        raise combined_error(what, failures, self)

    def keep_blocks(self, blocks: Iterable[tuple[CidLike, bytes]]) -> None:
        """Store blocks fetched (and verified) from remote sources, when keeping them."""
        if self.keep is not None:
            with self.keep.transaction() as txn:
                for cid, data in blocks:
                    txn.put(cid, data)


#: What a source may answer that passes the request on to the next one.
_PASS_ON = (NotFoundError, UnavailableError, GatewayError, IntegrityError)


def combined_error(what: str, failures: list[tuple[object, Exception]], chain: object) -> Exception:
    """One error for a request every source failed: each source and what it said.

    The type is the most telling one seen: a lie (``IntegrityError``) above a failure to
    answer (``GatewayError``) above every source lacking it (``UnavailableError``, which
    is not a ``FileNotFoundError``: nobody said the data do not exist).
    """
    if not failures:
        return unavailable(f"{what}: no source to ask (sources: {chain})", [], chain)
    said = "; ".join(f"{source}: {_reason(exc, what, source)}" for source, exc in failures)
    for kind in (IntegrityError, GatewayError):
        worst = [exc for _, exc in failures if isinstance(exc, kind)]
        if worst:
            error = type(worst[0])(f"{what} could not be had. {said}")
            error.__dict__.update(worst[0].__dict__)
            return error
    return unavailable(f"{what} is not available. {said}", failures, chain)


def unavailable(
    message: str, failures: list[tuple[object, Exception]], chain: object
) -> UnavailableError:
    """An ``UnavailableError`` with the sources asked and whether gateways were among them."""
    error = UnavailableError(message)
    error.tried = tuple((str(source), _reason(exc, "", source)) for source, exc in failures)
    error.remote = bool(getattr(chain, "remote", None))
    return error


def _reason(exc: Exception, what: str, source: object = None) -> str:
    """What one source said, in a line, without repeating the source's name (the error
    line names it already) or what was asked for."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if source is not None and (name := str(source)) and text.startswith(name):
        text = text[len(name) :].lstrip(" ,:")
    if what:
        for said in (f"{what}: ", f"{what} "):
            text = text.removeprefix(said)
    return text.strip() or type(exc).__name__


__all__ = [
    "BlockSource",
    "BlockStore",
    "CarBlocks",
    "Chain",
    "CidLike",
    "MappingBlocks",
    "Putter",
    "combined_error",
    "unavailable",
]
