"""Reading what a reply sends in a worker thread, one batch ahead of the sender.

Blocks (and the file bytes in them) come from disk or from gateways behind this one, so
they are read off the event loop; a batch of a few MiB at a time keeps the number of
thread hops low, and reading the next batch while this one is sent overlaps the two.
The first batch is small, and each doubles the one before, so the first bytes of a reply
leave at once and a long reply still takes few hops.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

#: Blocks (or file bytes) are read in a worker thread this many bytes at a time: one
#: thread hop per batch instead of one per block.
BATCH_BYTES = 4 << 20
#: The first batch: what a reply sends before its first thread hop has to finish.
FIRST_BATCH_BYTES = 256 << 10


def _batch(items: Iterator[Any], size: Callable[[Any], int], most: int) -> list[Any]:
    """The next items of ``items``, up to about ``most`` bytes (empty at the end)."""
    batch, total = [], 0
    for item in items:
        batch.append(item)
        total += size(item)
        if total >= most:
            break
    return batch


async def batches(
    items: Iterator[Any],
    size: Callable[[Any], int],
    inline: bool,
    discard: Callable[[list[Any]], None] | None = None,
) -> AsyncIterator[list[Any]]:
    """``items`` (of any kind: ``size`` weighs each) in batches, read by a worker thread
    one batch ahead of the caller (so that reading and hashing overlap with sending), or
    here when ``items`` does no I/O.  ``discard`` gets a batch read ahead that will not be
    sent (to close its files)."""
    if inline:
        while batch := _batch(items, size, BATCH_BYTES):
            yield batch
        return
    most = FIRST_BATCH_BYTES
    pending = asyncio.ensure_future(asyncio.to_thread(_batch, items, size, most))
    try:
        while batch := await pending:
            # One thread at a time uses ``items``: the next batch starts after this one.
            most = min(2 * most, BATCH_BYTES)
            pending = asyncio.ensure_future(asyncio.to_thread(_batch, items, size, most))
            yield batch
    finally:
        pending.cancel()  # the client went away: drop the batch read ahead
        if discard is not None:
            pending.add_done_callback(
                lambda done: done.cancelled() or done.exception() or discard(done.result())
            )


__all__ = ["BATCH_BYTES", "batches"]
