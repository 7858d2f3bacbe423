"""The embedded IPFS HTTP gateway (aiohttp), serving blocks by CID on loopback only.

It follows the path gateway and trustless gateway specs (ipfs/specs, http-gateways):
``GET``/``HEAD /ipfs/{cid}[/{path}]`` returns UnixFS files as bytes (with ``Range``),
directories as an HTML listing, a single block with ``format=raw``, or a CAR with
``format=car`` and ``dag-scope=block|entity|all`` (``entity-bytes`` too).  Only content
reached from a CID is served: there is no way to name a file on this machine.
"""

from __future__ import annotations

import asyncio
import functools
import html
import logging
import mimetypes
import re
import threading
import urllib.parse
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import Literal, TypeVar

from aiohttp import web
from multiformats import CID

from .blocks import BlockSource
from .car import encode_header, encode_section
from .cids import RAW, cid_text, parse_cid, to_cid
from .dagpb import UnixFSType
from .errors import GatewayError, IntegrityError, NotFoundError
from .repo import default_repo_location
from .resolver import Block, BlockCache, Resolver, as_cid
from .sources import local_chain
from .trustless import CAR_TYPE, RAW_TYPE

T = TypeVar("T")

IMMUTABLE = "public, max-age=29030400, immutable"
#: Blocks (or file bytes) are read in a worker thread this many bytes at a time: one
#: thread hop per batch instead of one per block.
BATCH_BYTES = 4 << 20


class _Recorder(Resolver):
    """A resolver that remembers the blocks a path walk needed, for CAR proofs."""

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


def _batch(items: Iterator[T], size: Callable[[T], int]) -> list[T]:
    """The next items of ``items``, up to about ``BATCH_BYTES`` (empty at the end)."""
    batch, total = [], 0
    for item in items:
        batch.append(item)
        total += size(item)
        if total >= BATCH_BYTES:
            break
    return batch


async def _batches(
    items: Iterator[T], size: Callable[[T], int], inline: bool
) -> AsyncIterator[list[T]]:
    """``items`` in batches, read by a worker thread one batch ahead of the caller (so that
    reading and hashing overlap with sending), or here when ``items`` does no I/O."""
    if inline:
        while batch := _batch(items, size):
            yield batch
        return
    pending = asyncio.ensure_future(asyncio.to_thread(_batch, items, size))
    try:
        while batch := await pending:
            # One thread at a time uses ``items``: the next batch starts after this one.
            pending = asyncio.ensure_future(asyncio.to_thread(_batch, items, size))
            yield batch
    finally:
        pending.cancel()  # the client went away: drop the batch read ahead


@functools.lru_cache(maxsize=1024)
def _car_header(root: CID) -> bytes:
    return encode_header([root])


@functools.lru_cache(maxsize=1 << 15)
def _root(text: str) -> CID:
    """The CID at the head of a request path (cached: decoding a CID string is slow, and
    readers that know a directory ask for each of its blocks by CID)."""
    return parse_cid(text)[0]


def _headers(root: CID, segments: list[str], cids: list[CID]) -> dict[str, str]:
    """The headers every answer for ``/ipfs/root/segments`` carries."""
    return {
        "X-Ipfs-Path": "/ipfs/" + "/".join([cid_text(root), *segments]),
        "X-Ipfs-Roots": ",".join(cid_text(c) for c in cids),
        "Cache-Control": IMMUTABLE,
        "Access-Control-Allow-Origin": "*",
        "X-Content-Type-Options": "nosniff",
    }


def _entity_range(spec: str, size: int) -> tuple[int, int]:
    """``entity-bytes=from:to`` (inclusive, ``*`` and negatives allowed) → [start, end)."""
    try:
        first, last = spec.split(":")
        start = int(first)
        end = size if last == "*" else int(last) + 1 if int(last) >= 0 else size + int(last) + 1
    except ValueError:
        raise web.HTTPBadRequest(text=f"invalid entity-bytes {spec!r}\n") from None
    if start < 0:
        start = max(0, size + start)
    return start, min(end, size)


_RANGE_SPEC = re.compile(r"([0-9]*)-([0-9]*)")


def _byte_range(header: str, size: int) -> tuple[int, int] | Literal["unsatisfiable"] | None:
    """The bytes ``[start, end)`` that a ``Range`` header selects from ``size`` bytes.

    RFC 9110, section 14: ``None`` when the header is to be ignored (a unit other than
    bytes, or several ranges, which a server may answer with the whole file), and
    ``"unsatisfiable"`` (a 416 reply) when it selects nothing: a first byte at or past
    the end, a suffix of zero bytes (``-0``), any range of an empty file, or a header
    that is not a valid byte range.  The range returned is never empty.
    """
    unit, equals, specs = header.partition("=")
    if not equals or unit.strip().lower() != "bytes":
        return None
    if "," in specs:
        return None
    match = _RANGE_SPEC.fullmatch(specs.strip())
    if match is None or not any(match.groups()) or max(map(len, match.groups())) > 20:
        return "unsatisfiable"
    first, last = match.groups()
    if not first:  # a suffix: the last N bytes
        length = int(last)
        if length == 0 or size == 0:
            return "unsatisfiable"
        return max(0, size - length), size
    start = int(first)
    if last and int(last) < start:
        return "unsatisfiable"  # not a valid range
    if start >= size:
        return "unsatisfiable"
    return start, size if not last else min(int(last) + 1, size)


#: One line per failed request: 4xx at INFO, 5xx at WARNING (shown on stderr by default).
log = logging.getLogger("howto.gateway")


class _Reported(ConnectionError):
    """A failure already logged, after the reply had begun: the connection is dropped."""


class _OneLine(logging.Filter):
    """What aiohttp's server itself logs, as one line without a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            if isinstance(exc, _Reported):
                return False
            record.msg = f"{record.getMessage()}: {type(exc).__name__}: {_first_line(exc)}"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


_server_log = logging.getLogger("howto.gateway.server")
_server_log.addFilter(_OneLine())


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _failure(exc: Exception) -> type[web.HTTPException]:
    """The reply for an exception from a handler: 404 for absent content, 502 for blocks
    that do not match their CID or gateways behind this one failing, 500 otherwise."""
    if isinstance(exc, NotFoundError):
        return web.HTTPNotFound
    if isinstance(exc, IntegrityError | GatewayError):
        return web.HTTPBadGateway
    return web.HTTPInternalServerError


def _log_failure(request: web.Request, status: int, reason: str) -> None:
    level = logging.WARNING if status >= 500 else logging.INFO
    log.log(level, "%s %s -> %d: %s", request.method, request.path, status, reason)


@web.middleware
async def _errors(request: web.Request, handler: Callable) -> web.StreamResponse:
    """Every failure becomes a reply with a one-line body and one line in the log; one
    that happens after the reply began (a corrupt block deep in a file) drops the
    connection, so the reader sees a truncated reply rather than wrong bytes."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status >= 400:
            _log_failure(request, exc.status, (exc.text or exc.reason).strip())
        raise
    except Exception as exc:
        transport = request.transport
        if isinstance(exc, ConnectionError) and (transport is None or transport.is_closing()):
            raise _Reported() from None  # the client went away: nothing to tell it
        reply = _failure(exc)
        if request.get(_STARTED):
            log.warning("%s %s -> cut short: %s", request.method, request.path, _first_line(exc))
            raise _Reported() from None
        _log_failure(request, reply.status_code, _first_line(exc))
        raise reply(text=f"{_first_line(exc)}\n") from None


#: Set on a request once its reply has begun (typed keys exist from aiohttp 3.13 on).
_STARTED = web.RequestKey("howto.started", bool) if hasattr(web, "RequestKey") else "started"


async def _started(request: web.Request, response: web.StreamResponse) -> None:
    request[_STARTED] = True


class Gateway:
    """Request handlers over one block source."""

    def __init__(self, source: BlockSource) -> None:
        self.source = source
        self.cache = BlockCache()  # decoded directory and file nodes, shared by requests

    def app(self) -> web.Application:
        app = web.Application(middlewares=[_errors])
        app.on_response_prepare.append(_started)
        app.router.add_route("GET", "/ipfs/{tail:.*}", self.handle)
        app.router.add_route("HEAD", "/ipfs/{tail:.*}", self.handle)
        app.router.add_get("/", self.index)
        return app

    async def index(self, request: web.Request) -> web.Response:
        return web.Response(
            text="howto gateway: GET /ipfs/{cid}[/{path}] (format=raw|car)\n",
            content_type="text/plain",
        )

    def _parse(self, request: web.Request) -> tuple[CID, list[str]]:
        head, _, path = request.match_info["tail"].partition("/")
        try:
            root = _root(head)
        except ValueError as exc:
            raise web.HTTPBadRequest(text=f"{exc}\n") from None
        segments = [s for s in path.split("/") if s]
        if any(s in (".", "..") for s in segments):
            raise web.HTTPBadRequest(text="relative path segments are not allowed\n")
        return root, segments

    @staticmethod
    def _format(request: web.Request) -> str:
        fmt = request.query.get("format")
        if fmt is not None:
            if fmt not in ("raw", "car"):
                raise web.HTTPBadRequest(text=f"unsupported format {fmt!r}\n")
            return fmt
        accept = request.headers.get("Accept", "")
        if RAW_TYPE in accept:
            return "raw"
        if CAR_TYPE in accept:
            return "car"
        return "unixfs"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        root, segments = self._parse(request)
        fmt = self._format(request)
        if fmt == "raw" and not segments:
            # One block named by its CID: nothing to resolve, so no worker thread either
            # (a block is at most a few MiB); the reader checks the hash.
            try:
                block = Block(root, self.source.get_unverified(root))
            except NotFoundError as exc:
                raise web.HTTPNotFound(text=f"{exc}\n") from None
            return await self._raw(request, block, _headers(root, segments, [root]))
        resolver = _Recorder(self.source, self.cache, trustless=fmt != "unixfs")
        try:
            cids, target, path = await asyncio.to_thread(resolver.locate, root, segments)
        except NotFoundError as exc:
            raise web.HTTPNotFound(text=f"{exc}\n") from None
        headers = _headers(root, segments, cids)
        if fmt == "raw":
            return await self._raw(request, target, headers)
        if fmt == "car":
            return await self._car(request, resolver, path, target, headers)
        return await self._unixfs(request, resolver, target, segments, headers)

    def _not_modified(self, request: web.Request, etag: str, headers: dict) -> bool:
        headers["Etag"] = etag
        return etag in [t.strip() for t in request.headers.get("If-None-Match", "").split(",")]

    async def _raw(self, request: web.Request, block: Block, headers: dict) -> web.Response:
        name = cid_text(block.cid)
        if self._not_modified(request, f'"{name}.raw"', headers):
            return web.Response(status=304, headers=headers)
        headers["Content-Disposition"] = f'attachment; filename="{name}.bin"'
        body = b"" if request.method == "HEAD" else block.data
        if request.method == "HEAD":
            headers["Content-Length"] = str(len(block.data))
        return web.Response(body=body, content_type=RAW_TYPE, headers=headers)

    async def _car(
        self,
        request: web.Request,
        resolver: Resolver,
        path: list[Block],
        target: Block,
        headers: dict,
    ) -> web.StreamResponse:
        scope = request.query.get("dag-scope", "all")
        if scope not in ("block", "entity", "all"):
            raise web.HTTPBadRequest(text=f"unsupported dag-scope {scope!r}\n")
        entity_bytes = request.query.get("entity-bytes")
        byte_range = None
        if entity_bytes is not None:
            scope = "entity"
            if target.kind == "file":
                byte_range = _entity_range(entity_bytes, resolver.size(target))
        name = cid_text(target.cid)
        etag = f'"{name}.car.{scope}.{entity_bytes or ""}"'
        if self._not_modified(request, etag, headers):
            return web.Response(status=304, headers=headers)
        headers["Content-Type"] = f"{CAR_TYPE}; version=1; order=dfs; dups=n"
        headers["Content-Disposition"] = f'attachment; filename="{name}.car"'
        response = web.StreamResponse(headers=headers)
        await response.prepare(request)
        if request.method == "HEAD":
            return response
        parts = [_car_header(to_cid(path[0].cid if path else target.cid))]
        sent: set[CID] = set()
        for block in path:
            sent.add(block.cid)
            parts.append(encode_section(block.cid, block.data))
        blocks = _car_blocks(resolver, target, scope, byte_range)
        inline = scope == "block" or not resolver.links(target)  # nothing more to read
        async for batch in _batches(blocks, _block_size, inline):
            for block in batch:
                if block.cid not in sent:
                    sent.add(block.cid)
                    parts.append(encode_section(block.cid, block.data))
            await response.write(b"".join(parts))
            parts = []
        if parts:
            await response.write(b"".join(parts))
        await response.write_eof()
        return response

    async def _unixfs(
        self,
        request: web.Request,
        resolver: Resolver,
        target: Block,
        segments: list[str],
        headers: dict,
    ) -> web.StreamResponse:
        if self._not_modified(request, f'"{cid_text(target.cid)}"', headers):
            return web.Response(status=304, headers=headers)
        if target.kind == "directory":
            entries = await asyncio.to_thread(resolver.ls, target.cid)
            base = urllib.parse.quote(request.path.rstrip("/"), safe="/")
            rows = "".join(  # targets percent-encoded (a name may hold ?, # or %), then
                # escaped for HTML like the names shown
                f'<li><a href="{html.escape(base + "/" + urllib.parse.quote(e.name, safe=""))}">'
                f"{html.escape(e.name)}</a> {e.size}</li>"
                for e in entries
            )
            page = f"<!doctype html><title>{html.escape(request.path)}</title><ul>{rows}</ul>"
            return web.Response(text=page, content_type="text/html", headers=headers)
        if target.kind == "symlink":
            return web.Response(body=target.unixfs.data or b"", headers=headers)
        if target.kind != "file":
            raise web.HTTPNotAcceptable(text="not a UnixFS file: ask for format=raw or car\n")
        size = resolver.size(target)
        name = segments[-1] if segments else ""
        headers["Content-Type"] = mimetypes.guess_type(name)[0] or "application/octet-stream"
        headers["Accept-Ranges"] = "bytes"
        start, end, status = 0, size, 200
        if "Range" in request.headers:
            selected = _byte_range(request.headers["Range"], size)
            if selected == "unsatisfiable":
                headers["Content-Range"] = f"bytes */{size}"
                return web.Response(status=416, headers=headers)
            if selected is not None:
                start, end = selected
                status = 206
                headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        headers["Content-Length"] = str(end - start)
        response = web.StreamResponse(status=status, headers=headers)
        await response.prepare(request)
        if request.method == "GET" and end > start:
            chunks = resolver.read(target, start, end - start)
            inline = not resolver.links(target)  # a single block, already read
            async for batch in _batches(chunks, len, inline):
                for chunk in batch:
                    await response.write(chunk)
        await response.write_eof()
        return response


def _block_size(block: Block) -> int:
    return len(block.data)


def _car_blocks(
    resolver: Resolver, target: Block, scope: str, byte_range: tuple[int, int] | None
) -> Iterator[Block]:
    if byte_range is None:
        if scope == "block" or not resolver.links(target):
            yield target  # already read and checked: no need to read it again
        else:
            yield from resolver.walk(target.cid, scope)
        return
    yield from _file_range_blocks(resolver, target, *byte_range)


def _file_range_blocks(resolver: Resolver, block: Block, start: int, end: int) -> Iterator[Block]:
    """The blocks of a file needed to read bytes [start, end): its nodes and leaves, depth
    first (with a stack of its own: a hostile file may be thousands of levels deep)."""
    stack = [iter([(block, 0)])]  # per node: its children still to visit, with offsets
    while stack:
        item = next(stack[-1], None)
        if item is None:
            stack.pop()
            continue
        block, offset = item
        yield block
        meta = block.unixfs
        if block.node is not None and meta is not None and meta.type == UnixFSType.FILE:
            stack.append(_range_children(resolver, block, offset, start, end))


def _range_children(
    resolver: Resolver, block: Block, offset: int, start: int, end: int
) -> Iterator[tuple[Block, int]]:
    pos = offset + len(block.unixfs.data or b"")
    for link, size in zip(block.node.links, block.unixfs.blocksizes, strict=False):
        if pos >= end:
            break
        if pos + size > start:
            yield resolver.block(link.hash), pos
        pos += size


class GatewayServer:
    """An aiohttp gateway on 127.0.0.1 running in a background thread."""

    def __init__(self, source: BlockSource, port: int = 0) -> None:
        self.source = source
        self.port = port
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    def start(self) -> str:
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            try:
                self._loop.run_until_complete(self._start())
            except BaseException as exc:  # reported to the caller of start()
                failure.append(exc)
                ready.set()
                return
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="howto-gateway", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            raise failure[0]
        return self.url

    async def _start(self) -> None:
        self._runner = web.AppRunner(
            Gateway(self.source).app(), access_log=None, logger=_server_log
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.port = port
        self.url = f"http://{host}:{port}"

    def stop(self) -> None:
        if self._loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop = None


@contextmanager
def serve(source: BlockSource | None = None, port: int = 0) -> Iterator[str]:
    """Run a gateway on loopback for the ``with`` block; yields its base URL.

    It serves ``source``, by default the local blocks (never a configured gateway's).
    """
    server = GatewayServer(source if source is not None else local_chain(), port)
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


_embedded: dict[str, GatewayServer] = {}  # repository path → its running gateway
_embedded_lock = threading.Lock()


def embedded_gateway_url() -> str:
    """The URL of a gateway serving the local blocks, started in-process on first use.

    For programs that want an HTTP gateway (plain ipfsspec, a browser): howto itself reads
    local blocks directly.  One per repository path, so that changing ``$HOWTO_REPO`` in a
    running process changes what is served, as it does for ``howto.repo.Repo()``.
    """
    repo = default_repo_location()
    with _embedded_lock:
        server = _embedded.get(repo)
        if server is None:
            server = GatewayServer(local_chain())
            server.start()
            _embedded[repo] = server
        return server.url


__all__ = ["CAR_TYPE", "RAW_TYPE", "Gateway", "GatewayServer", "embedded_gateway_url", "serve"]
