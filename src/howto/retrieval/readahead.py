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
``most_bytes`` for one ``ReadAhead`` (one per file system): the oldest unused ones are let
go first.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from multiformats import CID

__all__ = [
    "FIRST_BYTES",
    "MOST_BYTES",
    "ReadAhead",
    "Sibling",
    "chunk_order",
    "default_read_ahead",
]

#: What the first remote read in a directory fetches beyond its own chunk.
FIRST_BYTES = 1 << 20
#: The most fetched ahead (held and on the way) per file system.
MOST_BYTES = 32 << 20


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


@dataclass
class _Stats:
    fetched: int = 0  # blocks fetched ahead
    used: int = 0  # of which a reader then asked for
    dropped: int = 0  # let go unused, to stay within the bound
    failed: int = 0  # whose fetch failed (the reader then asks the usual way)
    bytes: int = 0


@dataclass
class ReadAhead:
    """The read-ahead of one file system (see the module's docstring)."""

    first_bytes: int = FIRST_BYTES
    most_bytes: int = MOST_BYTES
    stats: _Stats = field(default_factory=_Stats)

    def __post_init__(self) -> None:
        self._directories: OrderedDict[bytes, _Directory] = OrderedDict()
        self._ahead: OrderedDict[bytes, tuple[asyncio.Task, int]] = OrderedDict()
        self._held = 0  # bytes of blocks fetched ahead (done or on the way), not yet used
        self._loop: asyncio.AbstractEventLoop | None = None  # where the fetches run

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
        if state.window and state.lo - 1 <= position <= state.hi + 1:
            state.window = min(state.window * 2, self.most_bytes)  # it goes on: ask more
        else:  # the first read here, or a jump: start again around it
            state.window, state.lo, state.hi = self.first_bytes, position, position
        downward = position < state.last
        state.last = position
        budget = state.window - self._held
        wanted: list[Sibling] = []
        for down in (downward, not downward):  # the way the reader goes first
            while True:
                step = state.lo - 1 if down else state.hi + 1
                if not 0 <= step < len(state.order):
                    break
                sibling = state.order[step]
                needed = step not in state.read and sibling.cid not in self._ahead
                if needed and sibling.size > min(budget, self.most_bytes - self._held):
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
            task = asyncio.ensure_future(fetch(CID.decode(sibling.cid)))
            task.add_done_callback(self._settled)
            self._ahead[sibling.cid] = (task, sibling.size)
            self._held += sibling.size
            self.stats.fetched += 1
            self.stats.bytes += sibling.size

    def _settled(self, task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.stats.failed += 1
            for key, (held, size) in list(self._ahead.items()):
                if held is task:
                    del self._ahead[key]
                    self._held -= size

    def take(self, cid: CID) -> asyncio.Task | None:
        """The fetch of ``cid`` started ahead, if any (it is handed over: taken once)."""
        entry = self._ahead.pop(bytes(cid), None)
        if entry is None:
            return None
        self._held -= entry[1]
        self.stats.used += 1
        return entry[0]

    def trim(self, most: int | None = None) -> None:
        """Let the oldest unused blocks go while more than ``most`` (default
        ``most_bytes``) are held; those still on their way are called off."""
        most = self.most_bytes if most is None else most
        while self._held > most and self._ahead:
            _, (task, size) = self._ahead.popitem(last=False)
            task.cancel()
            self._held -= size
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
        return self._held
