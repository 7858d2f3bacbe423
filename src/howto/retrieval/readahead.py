"""Read-ahead for chunked data: fetch the siblings a reader will ask for next, within bounds.

A zarr array is a directory of chunks, and a reader asks for them one request at a time,
with two or a few in flight.  Near a gateway that costs nothing; 25 ms away, 400 chunks
cost seconds of round trips whatever the CPU does.  Verification makes asking ahead safe:
a block fetched ahead is hashed against its CID on arrival (by the ``fetch`` it is given),
so a gateway gains nothing by lying about it, and the block is used only if the reader
asks for it.

``ReadAhead`` decides what to fetch.  The siblings are put in the order of their chunk
keys' numbers (``0.9`` before ``0.10``).  The first remote read in a directory fetches
the chunks next to it, up to ``first_bytes``: first those on the side the reader is
moving to (zarr walks its chunks forwards, dask's scheduler often backwards), then the
other side.  Each read next to what was fetched ahead doubles the window, up to
``most_bytes``; a read elsewhere in the directory starts again from ``first_bytes``.
A reader that wants one chunk pays at most ``first_bytes`` for the others.  Blocks
fetched ahead and not yet used, with those still on their way, never exceed
``most_bytes`` of memory for one ``ReadAhead`` (one per file system): the oldest unused
ones are let go first.  Fetches ahead use at most ``lanes`` connections and wait for a
free one in turn; a reader that asks for a block whose fetch ahead has not begun yet
fetches it at once itself, so reading ahead never delays what a reader waits for.

Once the reader has kept reading next to what it read (the window has doubled), the
rest of the directory comes as one CAR (``dag-scope=all``): one stream at the speed of
the line, not a round trip per chunk.  A CAR brings a directory's files in the order of
their names as bytes (``0.10`` before ``0.2``, ``10.0`` before ``2.0``), which is seldom
the reader's, so a file that comes before its reader wants it, beyond half of
``most_bytes`` held in memory, waits in a temporary folder (at most ``spill_bytes``,
deleted with the file system; read back, it is checked against its CID once more).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import tempfile
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from multiformats import CID

from ..errors import HowtoError, IntegrityError
from ..formats.cids import verify_raw

__all__ = [
    "FIRST_BYTES",
    "LANES",
    "UnavailableAhead",
    "MOST_BYTES",
    "SPILL_BYTES",
    "ReadAheadStats",
    "ReadAhead",
    "Sibling",
    "chunk_order",
    "default_read_ahead",
]

#: What the first remote read in a directory fetches beyond its own chunk.
FIRST_BYTES = 1 << 20
#: The most fetched ahead (held and on the way) per file system.
MOST_BYTES = 32 << 20
#: The most held on disk per file system: files a directory's CAR brought early.
SPILL_BYTES = 4 << 30
#: Connections that fetches ahead may use at once (the others stay free for readers).
LANES = 6
#: A directory's CAR is asked for once the window has grown to this many first windows.
STREAM_AFTER = 2
#: A directory's CAR that finds no room for this long (its reader went elsewhere) stops.
STALL_SECONDS = 30.0


def default_read_ahead() -> int:
    """``$HOWTO_READ_AHEAD`` in MiB (``0`` turns read-ahead off), else ``MOST_BYTES``."""
    value = os.environ.get("HOWTO_READ_AHEAD")
    return MOST_BYTES if value is None else int(float(value) * (1 << 20))


@dataclass(frozen=True)
class Sibling:
    """One entry of a directory: its name, binary CID and size as its link declares it."""

    name: str
    cid: bytes
    size: int


def chunk_order(name: str) -> tuple:
    """Sort key for chunk keys: their numbers as numbers (``0.9`` < ``0.10``), so that
    siblings come in the order a reader walks an array."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name))


@dataclass
class _Directory:
    order: list[Sibling]
    index: dict[str, int]
    window: int = 0
    lo: int = 0  # the positions from lo to hi were read or fetched ahead
    hi: int = -1
    last: int = -1  # the position read last
    read: set[int] = field(default_factory=set)
    streaming: bool = False  # a CAR of the whole directory is on its way
    downward: bool = False  # the reader's last step went back


@dataclass
class _Stream:
    """A directory's CAR on its way: the readers waiting for one of its files."""

    waiting: dict[bytes, asyncio.Future] = field(default_factory=dict)


class UnavailableAhead(HowtoError):
    """A file expected in a directory's CAR did not come (the reader asks for it alone)."""


@dataclass
class ReadAheadStats:
    fetched: int = 0  # blocks fetched ahead one by one
    streamed: int = 0  # blocks kept from directory CARs
    spilled: int = 0  # of which kept on disk
    used: int = 0  # of which a reader then asked for
    dropped: int = 0  # let go unused, to stay within the bound
    failed: int = 0  # whose fetch failed (the reader then asks the usual way)
    bytes: int = 0


@dataclass
class ReadAhead:
    """The read-ahead of one file system (see the module's docstring)."""

    first_bytes: int = FIRST_BYTES
    most_bytes: int = MOST_BYTES
    lanes: int = LANES
    spill_bytes: int = SPILL_BYTES
    stats: ReadAheadStats = field(default_factory=ReadAheadStats)

    def __post_init__(self) -> None:
        self._directories: OrderedDict[bytes, _Directory] = OrderedDict()
        #: binary CID -> (its fetch, its size, whether it came in a directory's CAR)
        self._ahead: OrderedDict[bytes, tuple[asyncio.Future, int, bool]] = OrderedDict()
        self._held = 0  # bytes fetched ahead one by one (done or on the way), not yet used
        self._streamed = 0  # bytes received in directory CARs, not yet used
        self._room = asyncio.Event()  # set when a block received in a CAR is used
        self._coming: dict[bytes, _Stream] = {}  # files a directory's CAR has still to bring
        self._loop: asyncio.AbstractEventLoop | None = None  # where the fetches run
        self._lanes = asyncio.Semaphore(max(1, self.lanes))
        self._begun: set[bytes] = set()  # fetches ahead that have a connection
        self._spill = _Spill()
        weakref.finalize(self, self._spill.remove)

    @property
    def enabled(self) -> bool:
        return self.most_bytes > 0

    def plan(
        self, directory: CID, name: str, siblings: Callable[[], Sequence[Sibling]]
    ) -> list[Sibling]:
        """What to fetch ahead now that ``name`` in ``directory`` is read from afar;
        ``siblings`` lists the directory's entries (asked once per directory)."""
        if not self.enabled:
            return []
        key = bytes(directory)
        state = self._directories.get(key)
        if state is None:
            order = sorted(siblings(), key=lambda s: chunk_order(s.name))
            state = _Directory(order, {s.name: i for i, s in enumerate(order)}, 0)
            self._directories[key] = state
            while len(self._directories) > 64:
                self._directories.popitem(last=False)
        position = state.index.get(name)
        if position is None:
            return []
        state.read.add(position)
        if state.streaming:
            return []  # the directory's CAR brings the rest
        if state.window and state.lo - 1 <= position <= state.hi + 1:
            state.window = min(state.window * 2, self.most_bytes)  # it goes on: ask more
        else:  # the first read here, or a jump: start again around it
            state.window, state.lo, state.hi = self.first_bytes, position, position
        downward = state.downward = position < state.last
        state.last = position
        room = self.most_bytes - self._held - self._streamed
        budget = min(state.window - self._held, room)
        wanted: list[Sibling] = []
        for down in (downward, not downward):  # the way the reader goes first
            while True:
                step = state.lo - 1 if down else state.hi + 1
                if not 0 <= step < len(state.order):
                    break
                sibling = state.order[step]
                needed = step not in state.read and sibling.cid not in self._ahead
                needed = needed and sibling.cid not in self._coming
                if needed and sibling.size > budget:
                    return wanted
                if down:
                    state.lo = step
                else:
                    state.hi = step
                if needed:
                    budget -= sibling.size
                    wanted.append(sibling)
        return wanted

    def start(self, siblings: Sequence[Sibling], fetch: Callable[[CID], Awaitable[bytes]]) -> None:
        """Fetch ``siblings`` in the background (on the running event loop)."""
        for sibling in siblings:
            self._loop = asyncio.get_running_loop()
            task = asyncio.ensure_future(self._in_lane(sibling.cid, fetch))
            task.add_done_callback(self._settled)
            self._ahead[sibling.cid] = (task, sibling.size, False)
            self._held += sibling.size
            self.stats.fetched += 1
            self.stats.bytes += sibling.size

    async def _in_lane(self, cid: bytes, fetch: Callable[[CID], Awaitable[bytes]]) -> bytes:
        async with self._lanes:
            self._begun.add(cid)
            try:
                return await fetch(CID.decode(cid))
            finally:
                self._begun.discard(cid)

    def _settled(self, task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.stats.failed += 1
            for key, (held, size, _) in list(self._ahead.items()):
                if held is task:
                    del self._ahead[key]
                    self._held -= size

    def take(self, cid: CID) -> Awaitable[bytes] | None:
        """What to await for ``cid`` instead of asking for it: its fetch started ahead, or
        its arrival in a directory's CAR still on its way; ``None`` if neither (each is
        handed over once)."""
        key = bytes(cid)
        entry = self._ahead.pop(key, None)
        if entry is not None:
            self._forget(entry)
            if self._waiting_for_lane(key, entry):
                entry[0].cancel()  # the reader asks at once
                return None
            self.stats.used += 1
            return entry[0]
        if key in self._spill:
            self.stats.used += 1
            read_back = asyncio.get_running_loop().create_future()
            try:  # here: a thread hop costs more than reading and hashing one file
                read_back.set_result(self._spill.take(key))
            except (OSError, IntegrityError):  # changed or gone on disk: the reader asks anew
                self.stats.failed += 1
                read_back.set_exception(UnavailableAhead("a file kept on disk came back changed"))
            return read_back
        stream = self._coming.get(key)
        if stream is None:
            return None
        self.stats.used += 1
        self._room.set()  # a reader waits: the CAR must go on
        return stream.waiting.setdefault(key, asyncio.get_running_loop().create_future())

    def _waiting_for_lane(self, key: bytes, entry: tuple[asyncio.Future, int, bool]) -> bool:
        """Whether a fetch ahead has not yet begun (it waits for a free connection)."""
        return not entry[2] and not entry[0].done() and key not in self._begun

    def _forget(self, entry: tuple[asyncio.Future, int, bool]) -> None:
        if entry[2]:
            self._streamed -= entry[1]
            self._room.set()
        else:
            self._held -= entry[1]

    def should_stream(self, directory: CID) -> bool:
        """Whether to ask for the whole directory as one CAR now: once per directory, when
        the reader has kept reading in it (its window has doubled), in either direction."""
        state = self._directories.get(bytes(directory))
        if state is None or state.streaming:
            return False
        if state.window < STREAM_AFTER * self.first_bytes:
            return False
        state.streaming = True  # decided once, either way
        unread = sum(
            sibling.size
            for position, sibling in enumerate(state.order)
            if position not in state.read and sibling.cid not in self._ahead
        )
        return unread > state.window  # else what is left comes one by one as well

    def stream(self, directory: CID, blocks: AsyncIterator[tuple[bytes, bytes]]) -> None:
        """Use the directory's files as they arrive in ``blocks`` (binary CID and bytes,
        each verified by the iterator).  A file a reader waits for goes to it; the others
        are kept for their reads, at most half of ``most_bytes`` at a time: beyond that the
        CAR waits (and stops after ``STALL_SECONDS``), or, while a reader waits for a file
        further on, goes on and lets them go (they are fetched one by one if read)."""
        state = self._directories[bytes(directory)]
        self._loop = asyncio.get_running_loop()
        stream = _Stream()
        for key, entry in list(self._ahead.items()):  # not begun yet: the CAR brings them
            if self._waiting_for_lane(key, entry):
                del self._ahead[key]
                entry[0].cancel()
                self._forget(entry)
        for position, sibling in enumerate(state.order):
            if position not in state.read and sibling.cid not in self._ahead:
                self._coming[sibling.cid] = stream
        task = asyncio.ensure_future(self._receive(state, stream, blocks))
        task.add_done_callback(lambda done: self._stream_ended(stream, done))

    async def _receive(
        self, state: _Directory, stream: _Stream, blocks: AsyncIterator[tuple[bytes, bytes]]
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            async for cid, data in blocks:
                if self._coming.get(cid) is not stream:
                    continue  # not a file of this directory, or read meanwhile
                del self._coming[cid]
                waiting = stream.waiting.pop(cid, None)
                if waiting is not None:
                    if not waiting.done():
                        waiting.set_result(data)
                    continue
                while self._streamed + len(data) > self.most_bytes // 2 and not stream.waiting:
                    self._room.clear()
                    await asyncio.wait_for(self._room.wait(), STALL_SECONDS)
                if self._streamed + len(data) > self.most_bytes // 2:
                    # no room in memory, and a reader is further on: keep it on disk
                    if self._spill.bytes + len(data) <= self.spill_bytes:
                        await asyncio.to_thread(self._spill.put, cid, data)
                        self.stats.spilled += 1
                        self.stats.streamed += 1
                        self.stats.bytes += len(data)
                    else:
                        self.stats.dropped += 1
                    continue
                done = loop.create_future()
                done.set_result(data)
                self._ahead[cid] = (done, len(data), True)
                self._streamed += len(data)
                self.stats.streamed += 1
                self.stats.bytes += len(data)
        finally:
            await blocks.aclose()

    def _stream_ended(self, stream: _Stream, task: asyncio.Task) -> None:
        """Whatever the CAR did not bring is asked for one by one, as without it."""
        failed = task.cancelled() or task.exception() is not None
        if failed:
            self.stats.failed += 1
        for key in [k for k, s in self._coming.items() if s is stream]:
            del self._coming[key]
        for waiting in stream.waiting.values():
            if not waiting.done():
                waiting.set_exception(UnavailableAhead("the directory's CAR did not bring it"))
        stream.waiting.clear()

    def trim(self, most: int | None = None) -> None:
        """Let the oldest unused blocks go while more than ``most`` (default
        ``most_bytes``) are held; those still on their way are called off."""
        most = self.most_bytes if most is None else most
        if most == 0:
            self._spill.remove()
        while self._held + self._streamed > most and self._ahead:
            _, entry = self._ahead.popitem(last=False)
            entry[0].cancel()
            self._forget(entry)
            self.stats.dropped += 1

    def let_go_soon(self) -> None:
        """From any thread: call off what is on its way and let go what is held (the file
        system is going away; its fetches would otherwise outlive it)."""
        loop = self._loop
        if loop is not None and not loop.is_closed() and self._ahead:
            try:
                loop.call_soon_threadsafe(self.trim, 0)
            except RuntimeError:  # the loop closed meanwhile: nothing runs on it any more
                pass

    @property
    def held_bytes(self) -> int:
        """Bytes fetched ahead (or on their way) that no reader has asked for yet."""
        return self._held + self._streamed


class _Spill:
    """Files a directory's CAR brought before their reader wanted them, with no room left
    in memory: one file each in a temporary folder, made on first use."""

    def __init__(self) -> None:
        self.folder: str | None = None
        self.sizes: dict[bytes, int] = {}
        self.bytes = 0

    def __contains__(self, cid: bytes) -> bool:
        return cid in self.sizes

    def put(self, cid: bytes, data: bytes) -> None:
        if self.folder is None:
            self.folder = tempfile.mkdtemp(prefix="howto-ahead-")
        with open(os.path.join(self.folder, cid.hex()), "wb") as f:
            f.write(data)
        self.sizes[cid] = len(data)
        self.bytes += len(data)

    def take(self, cid: bytes) -> bytes:
        """The file's bytes, checked against ``cid`` again (they were on disk), and gone."""
        path = os.path.join(self.folder, cid.hex())
        self.bytes -= self.sizes.pop(cid)
        try:
            with open(path, "rb") as f:
                data = f.read()
        finally:
            os.remove(path)
        verify_raw(cid, data)
        return data

    def remove(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder, self.sizes, self.bytes = None, {}, 0
