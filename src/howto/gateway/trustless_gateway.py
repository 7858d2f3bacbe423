"""The trustless gateway's replies: single blocks (``format=raw``) and CARs (``format=car``).

What goes out is checkable by the reader against the CIDs it asked for, so raw blocks are
sent as stored, unhashed.  A CAR starts with the blocks of the path that lead to its
target (the proof of the path), then gives the target by ``dag-scope`` (``block``,
``entity``, ``all``) or, for a file, only the blocks of ``entity-bytes``; its ``order``
and ``dups`` come from the ``Accept`` parameters or ``car-order``/``car-dups``.
"""

from __future__ import annotations

from aiohttp import web
from multiformats import CID

from ..blocks.chain import BlockSource
from ..errors import NotFoundError, shown
from ..formats.cids import RAW, cid_text
from ..retrieval.trustless import CAR_TYPE, RAW_TYPE
from ..unixfs.resolver import Block, BlockCache, Resolver, as_cid
from .car_stream import leaf_opener, write_car
from .headers import disposition, not_modified
from .ranges import send_block


class RecordingResolver(Resolver):
    """A resolver that remembers the blocks a path walk needed, for CAR proofs.

    With ``trustless``, raw blocks are read as stored, unhashed: they go out as they are,
    and the reader hashes them anyway."""

    def __init__(self, source: BlockSource, cache: BlockCache, trustless: bool) -> None:
        super().__init__(source, cache)
        self.seen: dict[tuple[int, bytes], Block] | None = {}
        self.trustless = trustless

    def block(self, cid: CID | str | bytes) -> Block:
        cid = as_cid(cid)
        if self.trustless and cid.codec.code == RAW:  # file bytes sent as is: the reader
            block = Block(cid, self.source.get_unverified(cid))  # hashes them anyway
        else:
            block = super().block(cid)
        if self.seen is not None:
            self.seen.setdefault((block.cid.codec.code, block.cid.digest), block)
        return block

    def locate(self, root: CID, segments: list[str]) -> tuple[list[CID], Block, list[Block]]:
        """Resolve the path: its CIDs, the target block, and the blocks above the target."""
        cids = self.resolve(root, "/".join(segments))
        path = list(self.seen.values())
        self.seen = None  # stop recording: the rest is the response itself
        return cids, self.block(cids[-1]), path


def _entity_range(spec: str, size: int) -> tuple[int, int]:
    """``entity-bytes=from:to`` (inclusive, ``*`` and negatives allowed) → [start, end)."""
    try:
        first, last = spec.split(":")
        start = int(first)
        end = size if last == "*" else int(last) + 1 if int(last) >= 0 else size + int(last) + 1
    except ValueError:
        raise web.HTTPBadRequest(text=f"invalid entity-bytes {shown(spec)}\n") from None
    if start < 0:
        start = max(0, size + start)
    return start, min(end, size)


class TrustlessGateway:
    """Raw block and CAR replies over one block source."""

    def __init__(self, source: BlockSource) -> None:
        self.source = source
        self._open_leaf = leaf_opener(source)

    async def block(self, request: web.Request, root: CID, headers: dict) -> web.StreamResponse:
        """The block ``root`` alone: nothing to resolve, so no worker thread either (a block
        is at most a few MiB)."""
        try:
            block = Block(root, self.source.get_unverified(root))
        except NotFoundError as exc:
            raise web.HTTPNotFound(text=f"{exc}\n") from None
        return await self.raw(request, block, headers)

    async def raw(self, request: web.Request, block: Block, headers: dict) -> web.StreamResponse:
        """``block`` as stored (``application/vnd.ipld.raw``), ranges allowed."""
        name = cid_text(block.cid)
        etag = f'"{name}.raw"'
        return await send_block(request, headers, block.data, etag, RAW_TYPE, f"{name}.bin", True)

    async def car(
        self,
        request: web.Request,
        resolver: Resolver,
        path: list[Block],
        target: Block,
        headers: dict,
        params: dict[str, str],
    ) -> web.StreamResponse:
        """A CAR of ``path`` (the blocks above ``target``) and ``target`` as asked for;
        ``params`` are those of the CAR media type in ``Accept``."""
        scope = request.query.get("dag-scope", "all")
        if scope not in ("block", "entity", "all"):
            raise web.HTTPBadRequest(text=f"unsupported dag-scope {scope!r}\n")
        version = params.get("version", "1")
        order = request.query.get("car-order") or params.get("order", "dfs")
        dups = request.query.get("car-dups") or params.get("dups", "n")
        if version != "1" or order not in ("dfs", "unk") or dups not in ("y", "n"):
            raise web.HTTPBadRequest(
                text="CAR replies are version=1, order=dfs or unk, dups=y or n\n"
            )
        entity_bytes = request.query.get("entity-bytes")
        byte_range = None
        if entity_bytes is not None:
            scope = "entity"
            if target.kind == "file":
                byte_range = _entity_range(entity_bytes, resolver.size(target))
        name = cid_text(target.cid)
        etag = f'"{name}.car.{scope}.{entity_bytes or ""}.{order}.{dups}"'
        if not_modified(request, etag, headers):
            return web.Response(status=304, headers=headers)
        headers["Content-Type"] = f"{CAR_TYPE}; version=1; order={order}; dups={dups}"
        headers["Content-Disposition"] = disposition(request, f"{name}.car", True)
        headers["Accept-Ranges"] = "none"
        response = web.StreamResponse(headers=headers)
        # The leaves of a byte range go from their files with sendfile, in chunks framed
        # here, between the chunks aiohttp frames (so HTTP/1.1, chunked, only).
        open_leaf = self._open_leaf if byte_range and request.version >= (1, 1) else None
        if open_leaf is not None:
            response.enable_chunked_encoding()
        await response.prepare(request)
        if request.method == "HEAD":
            return response
        await write_car(
            request, response, resolver, path, target, scope, byte_range, dups == "y", open_leaf
        )
        await response.write_eof()
        return response


__all__ = ["CAR_TYPE", "RAW_TYPE", "RecordingResolver", "TrustlessGateway"]
