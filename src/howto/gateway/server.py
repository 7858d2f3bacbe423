"""The embedded IPFS HTTP gateway (aiohttp), serving blocks by CID on loopback only.

It follows the path gateway and trustless gateway specs (ipfs/specs, http-gateways).
``GET``/``HEAD /ipfs/{cid}[/{path}]`` gives UnixFS files as bytes (single and multiple
``Range``), directories as an HTML listing (or their ``index.html``), DAG-CBOR, DAG-JSON,
JSON and CBOR blocks as stored (an HTML preview for browsers), and, asked for with
``?format=`` or ``Accept``: a single block (``raw``), a CAR (``car``, with ``dag-scope``,
``entity-bytes`` and the ``order``/``dups`` parameters), a tar archive (``tar``).  Paths
go through UnixFS folders and through DAG-CBOR and DAG-JSON links.  ``/ipns/{name}/…``
serves what a verified IPNS record points at, and ``?format=ipns-record`` the record.
Only content reached from a CID or a signed name is served: there is no way to name a
file on this machine.
"""

from __future__ import annotations

import asyncio
import codecs
import functools
import html
import json
import logging
import mimetypes
import os
import re
import secrets
import threading
import urllib.parse
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO, Literal, TypeVar

from aiohttp import web
from multiformats import CID

from ..blocks.chain import BlockSource, Chain
from ..blocks.repo import Repo, default_repo_location
from ..errors import (
    GatewayError,
    IntegrityError,
    IpnsError,
    NotFoundError,
    PathNotSupportedError,
    UnavailableError,
)
from ..formats.car import encode_header, section_head
from ..formats.cids import (
    CBOR,
    DAG_CBOR,
    DAG_JSON,
    DAG_PB,
    JSON,
    RAW,
    RAW_CID_PREFIX,
    cid_bytes,
    cid_text,
    parse_cid,
    to_cid,
)
from ..formats.dagjson import display
from ..formats.dagpb import UnixFSType
from ..names.ipns import RECORD_TYPE, RecordStore, inspect_record, name_text, parse_name
from ..retrieval.sources import local_chain
from ..retrieval.trustless import CAR_TYPE, RAW_TYPE
from ..unixfs import tar
from ..unixfs.resolver import Block, BlockCache, Resolver, as_cid, decode_ipld

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
    items: Iterator[T],
    size: Callable[[T], int],
    inline: bool,
    discard: Callable[[list[T]], None] | None = None,
) -> AsyncIterator[list[T]]:
    """``items`` in batches, read by a worker thread one batch ahead of the caller (so that
    reading and hashing overlap with sending), or here when ``items`` does no I/O.
    ``discard`` gets a batch read ahead that will not be sent (to close its files)."""
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
        if discard is not None:
            pending.add_done_callback(
                lambda done: done.cancelled() or done.exception() or discard(done.result())
            )


@dataclass
class _FileLeaf:
    """A raw leaf of a file range, sent from its file in the repository with ``sendfile``:
    never read into memory here, and not hashed (the trustless reader hashes it)."""

    raw: bytes  # the binary CID
    file: BinaryIO
    size: int


def _leaf_opener(source: BlockSource) -> Callable[[bytes], _FileLeaf | None] | None:
    """How to open raw leaves as files, when ``source`` keeps blocks in a directory."""
    sources = source.local if isinstance(source, Chain) else [source]
    repo = next((s for s in sources if isinstance(s, Repo)), None)
    if repo is None:
        return None

    def open_leaf(raw: bytes) -> _FileLeaf | None:
        file = repo.open_block(raw)
        return None if file is None else _FileLeaf(raw, file, os.fstat(file.fileno()).st_size)

    return open_leaf


def _close_leaves(items: list) -> None:
    for item in items:
        if isinstance(item, _FileLeaf):
            item.file.close()


@functools.lru_cache(maxsize=1024)
def _car_header(root: CID) -> bytes:
    return encode_header([root])


@functools.lru_cache(maxsize=1 << 15)
def _root(text: str) -> CID:
    """The CID at the head of a request path (cached: decoding a CID string is slow, and
    readers that know a directory ask for each of its blocks by CID)."""
    return parse_cid(text)[0]


def _headers(shown_path: str, cids: list[CID], cache: str = IMMUTABLE) -> dict[str, str]:
    """The headers every answer for ``shown_path`` (the request's path) carries."""
    return {
        "X-Ipfs-Path": shown_path,
        "X-Ipfs-Roots": ",".join(cid_text(c) for c in cids),
        "Cache-Control": cache,
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
    if isinstance(exc, UnavailableError):  # 404 unless gateways behind this one were asked
        return web.HTTPBadGateway if exc.remote else web.HTTPNotFound
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


TAR_TYPE = "application/x-tar"
IPNS_RECORD_TYPE = "application/vnd.ipfs.ipns-record"
DAG_JSON_TYPE = "application/vnd.ipld.dag-json"
DAG_CBOR_TYPE = "application/vnd.ipld.dag-cbor"
#: ``?format=`` values and the media types that ask for the same in ``Accept``
FORMATS = {
    "raw": RAW_TYPE,
    "car": CAR_TYPE,
    "tar": TAR_TYPE,
    "dag-json": DAG_JSON_TYPE,
    "dag-cbor": DAG_CBOR_TYPE,
    "json": "application/json",
    "cbor": "application/cbor",
    "ipns-record": IPNS_RECORD_TYPE,
}
_BY_TYPE = {media: fmt for fmt, media in FORMATS.items()}
#: The codecs each IPLD format gives as stored: no conversion between codecs (IPIP-524).
_SERVES = {
    "dag-json": {DAG_JSON},
    "json": {DAG_JSON, JSON, RAW},
    "dag-cbor": {DAG_CBOR},
    "cbor": {DAG_CBOR, CBOR, RAW},
}
#: A file whose name says nothing of its type is looked at (JSON? text?) up to this size;
#: a larger one is sent as bytes, its reply begun before any of its blocks is read.
SNIFF_BYTES = 64 << 10
#: What a block of these codecs is served as when no format is asked for.
_NATIVE = {DAG_JSON: "dag-json", DAG_CBOR: "dag-cbor", JSON: "json", CBOR: "cbor"}
#: Generated HTML may change with howto, so it is cached for a week, not forever.
LISTING_CACHE = "public, max-age=604800, stale-while-revalidate=2678400"
#: Part of the Etag of generated pages: changes whenever their HTML does.
PAGE_VERSION = "howto2"
#: More ranges than this in one ``Range`` header are ignored (the whole file is sent).
MAX_RANGES = 64


@dataclass(frozen=True)
class Wanted:
    """What a request asks for: a format (``None``: the content's own), HTML, and the
    parameters of the chosen media type in ``Accept`` (``order``, ``dups``…)."""

    fmt: str | None
    html: bool
    params: dict[str, str]
    explicit: bool = False  # asked with ?format=, not only in Accept


def _accept(header: str) -> list[tuple[str, dict[str, str]]]:
    """Media types of an ``Accept`` header, most wanted first (``q=0`` left out)."""
    items = []
    for position, part in enumerate(header.split(",")):
        media, *raw = [p.strip() for p in part.split(";")]
        params = {}
        for item in raw:
            key, _, value = item.partition("=")
            params[key.strip().lower()] = value.strip().strip('"')
        try:
            q = float(params.pop("q", "1"))
        except ValueError:
            q = 1.0
        if media and q > 0:
            items.append((-q, position, media.lower(), params))
    return [(media, params) for _, _, media, params in sorted(items)]


def negotiate(request: web.Request) -> Wanted:
    """The representation asked for: ``?format=`` wins over ``Accept``."""
    fmt = request.query.get("format")
    if fmt is not None and fmt not in FORMATS:
        raise web.HTTPBadRequest(text=f"unsupported format {fmt!r}\n")
    for media, params in _accept(request.headers.get("Accept", "")):
        if fmt is not None:
            if media == FORMATS[fmt]:
                return Wanted(fmt, False, params, True)
        elif media in _BY_TYPE:
            return Wanted(_BY_TYPE[media], False, params)
        elif media in ("text/html", "application/xhtml+xml"):
            return Wanted(None, True, {})
    return Wanted(fmt, False, {}, fmt is not None)


def _etag_matches(request: web.Request, etag: str) -> bool:
    """``If-None-Match`` (RFC 9110, 13.1.2): a list of tags or ``*``, compared weakly."""
    header = request.headers.get("If-None-Match")
    if header is None:
        return False
    ours = etag.removeprefix("W/")
    return any(t == "*" or t.removeprefix("W/") == ours for t in map(str.strip, header.split(",")))


def disposition(request: web.Request, name: str | None, attachment: bool) -> str | None:
    """``Content-Disposition`` for ``?filename=`` (else ``name``) and ``?download=true``:
    an ASCII ``filename`` for every client and, when the name is not ASCII, a UTF-8
    ``filename*`` as RFC 6266 describes."""
    name = request.query.get("filename") or name
    if not name:
        return None
    kind = "attachment" if attachment or request.query.get("download") == "true" else "inline"
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in name)
    value = f'{kind}; filename="{fallback}"'
    if fallback != name:
        value += f"; filename*=UTF-8''{urllib.parse.quote(name, safe='')}"
    return value


def _ranges(header: str, size: int) -> list[tuple[int, int]] | Literal["unsatisfiable"] | None:
    """Every range of a ``Range`` header that selects bytes: ``None`` to send the whole
    content (another unit, too many ranges), ``"unsatisfiable"`` when none selects any."""
    unit, equals, specs = header.partition("=")
    if not equals or unit.strip().lower() != "bytes":
        return None
    parts = specs.split(",")
    if len(parts) > MAX_RANGES:
        return None
    chosen = []
    for part in parts:
        selected = _byte_range(f"bytes={part}", size)
        if selected is None:
            return None
        if selected != "unsatisfiable":
            chosen.append(selected)
        elif not _RANGE_SPEC.fullmatch(part.strip()) or not part.strip("- \t"):
            return "unsatisfiable"  # not a byte range at all
    return chosen or "unsatisfiable"


def _only_if_cached(request: web.Request) -> bool:
    cache = request.headers.get("Cache-Control", "")
    return "only-if-cached" in [d.strip().lower() for d in cache.split(",")]


class Gateway:
    """Request handlers over one block source (and the IPNS records of a repository)."""

    def __init__(self, source: BlockSource, records: RecordStore | None = None) -> None:
        self.source = source
        self.records = records if records is not None else _records_for(source)
        self.cache = BlockCache()  # decoded directory and file nodes, shared by requests
        self._open_leaf = _leaf_opener(source)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[_errors])
        app.on_response_prepare.append(_started)
        app.router.add_route("GET", "/ipfs/{tail:.*}", self.handle)
        app.router.add_route("HEAD", "/ipfs/{tail:.*}", self.handle)
        app.router.add_route("GET", "/ipns/{tail:.*}", self.handle_ipns)
        app.router.add_route("HEAD", "/ipns/{tail:.*}", self.handle_ipns)
        app.router.add_get("/", self.index)
        return app

    async def index(self, request: web.Request) -> web.Response:
        return web.Response(
            text="howto gateway: GET /ipfs/{cid}[/{path}] (format=raw|car|tar|dag-json|…), "
            "/ipns/{name}[/{path}] (format=ipns-record)\n",
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

    async def handle(self, request: web.Request) -> web.StreamResponse:
        root, segments = self._parse(request)
        wanted = negotiate(request)
        if wanted.fmt == "ipns-record":
            raise web.HTTPBadRequest(text="format=ipns-record is for /ipns/ names only\n")
        return await self.serve(request, root, segments, wanted, request.rel_url.raw_path)

    async def handle_ipns(self, request: web.Request) -> web.StreamResponse:
        """``/ipns/NAME/…``: the content a verified record points at, or the record itself
        (``format=ipns-record``, the trustless IPNS reply)."""
        head, _, path = request.match_info["tail"].partition("/")
        try:
            name = parse_name(head)
        except IpnsError as exc:
            raise web.HTTPBadRequest(text=f"{exc}\n") from None
        if name_text(name) != head:  # one spelling per name: base36 CIDv1
            location = f"/ipns/{name_text(name)}" + request.rel_url.raw_path[6 + len(head) :]
            if request.rel_url.raw_query_string:
                location += "?" + request.rel_url.raw_query_string
            raise web.HTTPFound(location)
        wanted = negotiate(request)
        if wanted.fmt == "ipns-record":
            return await self._record(request, name, head)
        try:
            record = await asyncio.to_thread(self.records.get, name)
        except NotFoundError as exc:
            raise web.HTTPNotFound(text=f"{exc}\n") from None
        except IpnsError as exc:
            raise web.HTTPBadGateway(text=f"/ipns/{head}: {exc}\n") from None
        ttl = max(0, record.ttl // 1_000_000_000)
        try:
            root, inner = parse_cid(record.value)
        except ValueError:
            raise web.HTTPNotImplemented(
                text=f"/ipns/{head} points at {record.value!r}, not at /ipfs/ content\n"
            ) from None
        segments = [s for s in f"{inner}/{path}".split("/") if s]
        if any(s in (".", "..") for s in segments):
            raise web.HTTPBadRequest(text="relative path segments are not allowed\n")
        shown = request.rel_url.raw_path
        return await self.serve(request, root, segments, wanted, shown, f"public, max-age={ttl}")

    async def _record(self, request: web.Request, name: CID, head: str) -> web.Response:
        """The record held for ``name``, as stored: like a raw block, it goes out unchecked,
        because its reader must verify it against the name anyway (trustless IPNS)."""
        try:
            raw = await asyncio.to_thread(self.records.raw, name)
        except NotFoundError as exc:
            raise web.HTTPNotFound(text=f"{exc}\n") from None
        try:
            ttl = int(inspect_record(raw).get("Data", {}).get("TTL", 0)) // 1_000_000_000
        except (IpnsError, ValueError, AttributeError, TypeError):
            ttl = 0
        headers = {
            "Content-Type": RECORD_TYPE,
            "Content-Disposition": disposition(request, f"{head}.ipns-record", True),
            "Cache-Control": f"public, max-age={max(0, ttl)}",
            "X-Ipfs-Path": request.rel_url.raw_path,
            "Access-Control-Allow-Origin": "*",
            "X-Content-Type-Options": "nosniff",
            "Etag": f'"{cid_text(to_cid(cid_bytes(raw, RAW, 1)))}.ipns-record"',
        }
        if request.method == "HEAD":
            headers["Content-Length"] = str(len(raw))
            return web.Response(headers=headers)
        return web.Response(body=raw, headers=headers)

    def _cached(self, root: CID, segments: list[str]) -> bool:
        """Whether the path and its target are held here, without asking a gateway."""
        source = self.source.local_only() if isinstance(self.source, Chain) else self.source
        try:
            cids = Resolver(source).resolve(root, "/".join(segments))
            return source.has(cids[-1])
        except (NotFoundError, UnavailableError):
            return False

    async def serve(
        self,
        request: web.Request,
        root: CID,
        segments: list[str],
        wanted: Wanted,
        shown_path: str,
        cache: str = IMMUTABLE,
    ) -> web.StreamResponse:
        """The reply for ``root/segments``; ``shown_path`` is the ``X-Ipfs-Path``, and
        ``cache`` the ``Cache-Control`` (an IPNS name changes: its record's TTL)."""
        if _only_if_cached(request) and not await asyncio.to_thread(self._cached, root, segments):
            raise web.HTTPPreconditionFailed(text="not held by this gateway (only-if-cached)\n")
        fmt = wanted.fmt
        if fmt == "raw" and not segments:
            # One block named by its CID: nothing to resolve, so no worker thread either
            # (a block is at most a few MiB); the reader checks the hash.
            try:
                block = Block(root, self.source.get_unverified(root))
            except NotFoundError as exc:
                raise web.HTTPNotFound(text=f"{exc}\n") from None
            return await self._raw(request, block, _headers(shown_path, [root], cache))
        resolver = _Recorder(self.source, self.cache, trustless=fmt in ("raw", "car"))
        try:
            cids, target, path = await asyncio.to_thread(resolver.locate, root, segments)
        except NotFoundError as exc:
            raise web.HTTPNotFound(text=f"{exc}\n") from None
        except PathNotSupportedError as exc:
            raise web.HTTPNotImplemented(text=f"{exc}\n") from None
        headers = _headers(shown_path, cids, cache)
        codec = target.cid.codec.code
        if fmt == "raw":
            return await self._raw(request, target, headers)
        if fmt == "car":
            return await self._car(request, resolver, path, target, headers, wanted.params)
        if fmt == "tar":
            return await self._tar(request, resolver, target, segments, headers)
        if fmt in ("json", "cbor") and codec in (DAG_PB, RAW) and not wanted.explicit:
            fmt = None  # "Accept: application/json" for a file: the file, typed as it is
        if fmt is not None:
            if codec not in _SERVES[fmt]:
                raise web.HTTPNotAcceptable(
                    text=f"{target.cid.codec.name} data cannot be given as {fmt}: "
                    "ask for format=raw or car\n"
                )
            return await self._ipld(request, target, fmt, headers)
        if codec in _NATIVE:
            if wanted.html and codec in (DAG_JSON, DAG_CBOR):
                return await self._ipld_page(request, resolver, target, headers)
            return await self._ipld(request, target, _NATIVE[codec], headers)
        if codec not in (DAG_PB, RAW):
            raise web.HTTPNotAcceptable(
                text=f"no plain form for {target.cid.codec.name}: ask for format=raw or car\n"
            )
        return await self._unixfs(request, resolver, target, segments, headers)

    async def _send(
        self,
        request: web.Request,
        headers: dict,
        size: int,
        read: Callable[[int, int], Iterator[bytes]],
        inline: bool,
    ) -> web.StreamResponse:
        """``size`` bytes of content, whole or the ranges asked for (one range: 206 with
        ``Content-Range``; several: 206 ``multipart/byteranges``; none valid: 416)."""
        headers["Accept-Ranges"] = "bytes"
        chosen = None
        if "Range" in request.headers:
            chosen = _ranges(request.headers["Range"], size)
            if chosen == "unsatisfiable":
                headers["Content-Range"] = f"bytes */{size}"
                headers.pop("Content-Type", None)
                return web.Response(status=416, headers=headers)
        if chosen and len(chosen) > 1:
            return await self._multipart(request, headers, size, read, chosen)
        start, end, status = 0, size, 200
        if chosen:
            (start, end), status = chosen[0], 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        headers["Content-Length"] = str(end - start)
        response = web.StreamResponse(status=status, headers=headers)
        await response.prepare(request)
        if request.method == "GET" and end > start:
            async for batch in _batches(read(start, end), len, inline):
                for chunk in batch:
                    await response.write(chunk)
        await response.write_eof()
        return response

    async def _multipart(
        self,
        request: web.Request,
        headers: dict,
        size: int,
        read: Callable[[int, int], Iterator[bytes]],
        chosen: list[tuple[int, int]],
    ) -> web.StreamResponse:
        boundary = secrets.token_hex(16)
        kind = headers.pop("Content-Type", "application/octet-stream")
        heads = [
            (
                f"--{boundary}\r\nContent-Type: {kind}\r\n"
                f"Content-Range: bytes {start}-{end - 1}/{size}\r\n\r\n"
            ).encode()
            for start, end in chosen
        ]
        tail = f"\r\n--{boundary}--\r\n".encode()
        length = sum(map(len, heads)) + sum(e - s for s, e in chosen)
        length += 2 * (len(chosen) - 1) + len(tail)
        headers["Content-Type"] = f"multipart/byteranges; boundary={boundary}"
        headers["Content-Length"] = str(length)
        response = web.StreamResponse(status=206, headers=headers)
        await response.prepare(request)
        if request.method == "GET":
            for i, ((start, end), head) in enumerate(zip(chosen, heads, strict=True)):
                await response.write((b"\r\n" if i else b"") + head)
                async for batch in _batches(read(start, end), len, False):
                    for chunk in batch:
                        await response.write(chunk)
            await response.write(tail)
        await response.write_eof()
        return response

    def _not_modified(self, request: web.Request, etag: str, headers: dict) -> bool:
        headers["Etag"] = etag
        return _etag_matches(request, etag)

    async def _raw(self, request: web.Request, block: Block, headers: dict) -> web.StreamResponse:
        name = cid_text(block.cid)
        if self._not_modified(request, f'"{name}.raw"', headers):
            return web.Response(status=304, headers=headers)
        headers["Content-Type"] = RAW_TYPE
        headers["Content-Disposition"] = disposition(request, f"{name}.bin", True)
        data = block.data
        return await self._send(request, headers, len(data), _slice(data), True)

    async def _ipld(
        self, request: web.Request, block: Block, fmt: str, headers: dict
    ) -> web.StreamResponse:
        """A DAG-JSON, DAG-CBOR, JSON or CBOR block as stored, typed as asked."""
        name = cid_text(block.cid)
        if self._not_modified(request, f'"{name}.{fmt}"', headers):
            return web.Response(status=304, headers=headers)
        ext = "json" if fmt.endswith("json") else "cbor"
        headers["Content-Type"] = FORMATS[fmt]
        headers["Content-Disposition"] = disposition(request, f"{name}.{ext}", ext == "cbor")
        data = block.data
        return await self._send(request, headers, len(data), _slice(data), True)

    async def _ipld_page(
        self, request: web.Request, resolver: Resolver, block: Block, headers: dict
    ) -> web.Response:
        """A DAG-CBOR or DAG-JSON block shown as an HTML page, its links clickable."""
        name = cid_text(block.cid)
        headers["Cache-Control"] = LISTING_CACHE
        if self._not_modified(request, f'"DagIndex-{PAGE_VERSION}_CID-{name}"', headers):
            return web.Response(status=304, headers=headers)
        text = html.escape(display(decode_ipld(block)))
        for link in sorted({cid_text(c) for c in resolver.links(block)}, key=len, reverse=True):
            anchor = f'<a href="/ipfs/{link}/">{link}</a>'
            text = text.replace(f"&quot;{link}&quot;", f"&quot;{anchor}&quot;")
        body = (
            f"<h1>{block.cid.codec.name}</h1>"
            f'<p class="cid"><a href="/ipfs/{name}?format=raw">{name}</a></p>'
            f"<pre>{text}</pre>"
        )
        page = _page(f"/ipfs/{name}", body)
        return web.Response(text=page, content_type="text/html", headers=headers)

    async def _car(
        self,
        request: web.Request,
        resolver: Resolver,
        path: list[Block],
        target: Block,
        headers: dict,
        params: dict[str, str],
    ) -> web.StreamResponse:
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
        if self._not_modified(request, etag, headers):
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
        await response.write(_car_header(to_cid(path[0].cid if path else target.cid)))
        sent: set[bytes] = set()
        leaves = _LeafSender(request) if open_leaf is not None else None

        async def send(block: Block | _FileLeaf) -> None:
            raw = block.raw if isinstance(block, _FileLeaf) else bytes(block.cid)
            if dups != "y" and raw in sent:
                return
            sent.add(raw)
            if isinstance(block, _FileLeaf):
                await leaves.send(block)
                return
            if leaves is not None:
                leaves.settle()
            await response.write(section_head(raw, len(block.data)))
            await response.write(block.data)  # as stored: no copy into a section

        for block in path:
            await send(block)
        blocks = _car_blocks(resolver, target, scope, byte_range, dups == "y", open_leaf)
        inline = scope == "block" or not resolver.links(target)  # nothing more to read
        async for batch in _batches(blocks, _block_size, inline, _close_leaves):
            try:
                for block in batch:
                    await send(block)
            finally:
                _close_leaves(batch)
        if leaves is not None:
            leaves.settle()
        await response.write_eof()
        return response

    async def _tar(
        self,
        request: web.Request,
        resolver: Resolver,
        target: Block,
        segments: list[str],
        headers: dict,
    ) -> web.StreamResponse:
        name = cid_text(target.cid)
        if self._not_modified(request, f'W/"{name}.x-tar"', headers):
            return web.Response(status=304, headers=headers)
        try:
            members = await asyncio.to_thread(tar.entries, resolver, target, name)
        except tar.UnsafeNameError as exc:
            raise web.HTTPBadRequest(text=f"{exc}\n") from None
        except ValueError as exc:
            raise web.HTTPNotAcceptable(text=f"{exc}\n") from None
        headers["Content-Type"] = TAR_TYPE
        headers["Content-Disposition"] = disposition(request, f"{name}.tar", True)
        response = web.StreamResponse(headers=headers)
        await response.prepare(request)
        if request.method == "GET":
            async for batch in _batches(tar.stream(resolver, members), len, False):
                await response.write(b"".join(batch))
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
        if target.kind == "directory":
            index = await asyncio.to_thread(_index_html, resolver, target)
            if not request.path.endswith("/"):
                location = request.rel_url.raw_path + "/"
                if request.rel_url.raw_query_string:
                    location += "?" + request.rel_url.raw_query_string
                raise web.HTTPMovedPermanently(location, headers=headers)
            if index is None:
                return await self._listing(request, resolver, target, headers)
            # a web site: its index page stands for the folder, whose CID is the Etag
            if self._not_modified(request, f'"{cid_text(target.cid)}"', headers):
                return web.Response(status=304, headers=headers)
            target = index
            segments = [*segments, "index.html"]
        elif self._not_modified(request, f'"{cid_text(target.cid)}"', headers):
            return web.Response(status=304, headers=headers)
        if target.kind == "symlink":
            return web.Response(body=target.unixfs.data or b"", headers=headers)
        if target.kind != "file":
            raise web.HTTPNotAcceptable(text="not a UnixFS file: ask for format=raw or car\n")
        size = resolver.size(target)
        name = segments[-1] if segments else ""
        kind = mimetypes.guess_type(name)[0]
        if kind is None and size <= SNIFF_BYTES:  # larger files start streaming at once
            kind = await asyncio.to_thread(_sniff, resolver, target, size)
        headers["Content-Type"] = kind or "application/octet-stream"
        shown = name if request.query.get("download") == "true" else None
        if (value := disposition(request, shown or None, False)) is not None:
            headers["Content-Disposition"] = value

        def read(start: int, end: int) -> Iterator[bytes]:
            return resolver.read(target, start, end - start)

        return await self._send(request, headers, size, read, not resolver.links(target))

    async def _listing(
        self, request: web.Request, resolver: Resolver, target: Block, headers: dict
    ) -> web.Response:
        headers["Cache-Control"] = LISTING_CACHE
        etag = f'"DirIndex-{PAGE_VERSION}_CID-{cid_text(target.cid)}"'
        if self._not_modified(request, etag, headers):
            return web.Response(status=304, headers=headers)
        entries = await asyncio.to_thread(resolver.ls, target.cid)
        page = _listing_page(request.rel_url.raw_path, entries, target.cid)
        return web.Response(text=page, content_type="text/html", headers=headers)


def _sniff(resolver: Resolver, target: Block, size: int) -> str:
    """The type of a file whose name says nothing: JSON (when small enough to check
    whole), UTF-8 text, or bytes."""
    head = b"".join(resolver.read(target, 0, min(size, 512)))
    if head.lstrip()[:1] in (b"{", b"["):
        try:
            json.loads(resolver.cat(target.cid))
            return "application/json"
        except ValueError:
            pass
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=size <= 512)
    except UnicodeDecodeError:
        return "application/octet-stream"
    if text and all(c.isprintable() or c in "\t\n\r\f" for c in text):
        return "text/plain; charset=utf-8"
    return "application/octet-stream"


def _records_for(source: BlockSource) -> RecordStore:
    """The records kept beside ``source``'s blocks: a repository's own, else the default
    repository's."""
    if isinstance(source, Repo):
        return RecordStore(source.path)
    return RecordStore()


def _slice(data: bytes) -> Callable[[int, int], Iterator[bytes]]:
    def read(start: int, end: int) -> Iterator[bytes]:
        yield data[start:end]

    return read


def _index_html(resolver: Resolver, directory: Block) -> Block | None:
    """The directory's ``index.html`` file, when it has one."""
    try:
        cid = resolver.resolve(directory.cid, "index.html")[-1]
    except NotFoundError:
        return None
    block = resolver.block(cid)
    return block if block.kind == "file" else None


_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;"
    "color:#222}table{border-collapse:collapse;width:100%}td{padding:.3rem .6rem;"
    "border-bottom:1px solid #ddd;overflow-wrap:anywhere}td.size{text-align:right;"
    "white-space:nowrap}.ipfs-hash,.cid{font-family:monospace;font-size:.85rem;color:#555}"
    "pre{white-space:pre-wrap;overflow-wrap:anywhere}"
)


def _page(title: str, body: str) -> str:
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body>{body}</body></html>"
    )


def _size_text(size: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(size)


def _listing_page(raw_path: str, entries: list, cid: CID) -> str:
    """A directory listing: a breadcrumb of the path, then one row per entry with its
    name, its size and its CID (which opens the entry alone, under its own name)."""
    base = raw_path.rstrip("/")
    parts = base.split("/")[2:]  # after "/ipfs" (or "/ipns")
    namespace = base.split("/")[1] if base.count("/") >= 1 else "ipfs"
    crumbs, href = [], f"/{namespace}"
    for part in parts:
        href += "/" + part
        shown = html.escape(urllib.parse.unquote(part))
        crumbs.append(f'<a href="{html.escape(href)}">{shown}</a>')
    rows = []
    if len(parts) > 1:
        rows.append(f'<tr><td><a href="{html.escape(base)}/..">..</a></td><td></td><td></td></tr>')
    for e in entries:
        quoted = urllib.parse.quote(e.name, safe="")
        target = html.escape(f"{base}/{quoted}")
        name = cid_text(e.cid)
        own = html.escape(f"/ipfs/{name}?filename={urllib.parse.quote(quoted, safe='')}")
        size = _size_text(e.size) if e.kind == "file" else ""
        rows.append(
            f'<tr><td><a href="{target}">{html.escape(e.name)}</a></td>'
            f'<td class="size">{size}</td>'
            f'<td><a class="ipfs-hash" translate="no" href="{own}">{name}</a></td></tr>'
        )
    body = (
        f"<h1>Index of /{namespace}/{'/'.join(crumbs)}</h1>"
        f'<p class="cid">{cid_text(cid)}</p><table>{"".join(rows)}</table>'
    )
    return _page(urllib.parse.unquote(raw_path), body)


def _block_size(block: Block | _FileLeaf) -> int:
    return block.size if isinstance(block, _FileLeaf) else len(block.data)


class _LeafSender:
    """Sends raw leaves from their files, each CAR section as one HTTP chunk framed here.

    ``sendfile`` is tried at once while the transport has nothing queued (most of the
    time, on a reader that keeps up), else left to the event loop; a chunk's closing CRLF
    goes out with the next chunk's head."""

    def __init__(self, request: web.Request) -> None:
        transport = request.transport
        if transport is None:
            raise ConnectionResetError("the client went away")
        self.transport = transport
        self.socket = transport.get_extra_info("socket")
        self.owed = b""

    async def send(self, leaf: _FileLeaf) -> None:
        head = section_head(leaf.raw, leaf.size)
        self.transport.write(b"%b%x\r\n%b" % (self.owed, len(head) + leaf.size, head))
        sent = 0
        if self.socket is not None and self.transport.get_write_buffer_size() == 0:
            try:
                sent = os.sendfile(self.socket.fileno(), leaf.file.fileno(), 0, leaf.size)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:  # no sendfile for this socket or file: the loop falls back
                sent = 0
        if sent < leaf.size:
            loop = asyncio.get_running_loop()
            await loop.sendfile(self.transport, leaf.file, sent, leaf.size - sent)
        self.owed = b"\r\n"

    def settle(self) -> None:
        """Close the last chunk, before anything else is written."""
        if self.owed:
            self.transport.write(self.owed)
            self.owed = b""


def _car_blocks(
    resolver: Resolver,
    target: Block,
    scope: str,
    byte_range: tuple[int, int] | None,
    dups: bool = False,
    open_leaf: Callable[[bytes], _FileLeaf | None] | None = None,
) -> Iterator[Block | _FileLeaf]:
    if byte_range is None:
        if scope == "block" or not resolver.links(target):
            yield target  # already read and checked: no need to read it again
        else:
            yield from resolver.walk(target.cid, scope, dups)
        return
    yield from _file_range_blocks(resolver, target, *byte_range, open_leaf)


def _file_range_blocks(
    resolver: Resolver,
    block: Block,
    start: int,
    end: int,
    open_leaf: Callable[[bytes], _FileLeaf | None] | None = None,
) -> Iterator[Block | _FileLeaf]:
    """The blocks of a file needed to read bytes [start, end): its nodes and leaves, depth
    first (with a stack of its own: a hostile file may be thousands of levels deep).  With
    ``open_leaf``, raw leaves stored as files come as open files instead."""
    stack = [iter([(block, 0)])]  # per node: its children still to visit, with offsets
    while stack:
        item = next(stack[-1], None)
        if item is None:
            stack.pop()
            continue
        block, offset = item
        yield block
        if isinstance(block, _FileLeaf):
            continue
        meta = block.unixfs
        if block.node is not None and meta is not None and meta.type == UnixFSType.FILE:
            stack.append(_range_children(resolver, block, offset, start, end, open_leaf))


def _range_children(
    resolver: Resolver,
    block: Block,
    offset: int,
    start: int,
    end: int,
    open_leaf: Callable[[bytes], _FileLeaf | None] | None,
) -> Iterator[tuple[Block | _FileLeaf, int]]:
    pos = offset + len(block.unixfs.data or b"")
    for link, size in zip(block.node.links, block.unixfs.blocksizes, strict=False):
        if pos >= end:
            break
        if pos + size > start:
            leaf = None
            if open_leaf is not None and link.hash[:2] == RAW_CID_PREFIX:
                leaf = open_leaf(link.hash)
            yield leaf or resolver.block(link.hash), pos
        pos += size


class GatewayServer:
    """An aiohttp gateway on 127.0.0.1 running in a background thread."""

    def __init__(
        self, source: BlockSource, port: int = 0, records: RecordStore | None = None
    ) -> None:
        self.source = source
        self.records = records
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
            Gateway(self.source, self.records).app(), access_log=None, logger=_server_log
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
def serve(
    source: BlockSource | None = None, port: int = 0, records: RecordStore | None = None
) -> Iterator[str]:
    """Run a gateway on loopback for the ``with`` block; yields its base URL.

    It serves ``source``, by default the local blocks (never a configured gateway's), and
    the IPNS records of ``records`` (by default those kept beside the blocks).
    """
    server = GatewayServer(source if source is not None else local_chain(), port, records)
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


__all__ = [
    "CAR_TYPE",
    "FORMATS",
    "RAW_TYPE",
    "TAR_TYPE",
    "Gateway",
    "GatewayServer",
    "Wanted",
    "disposition",
    "embedded_gateway_url",
    "negotiate",
    "serve",
]
