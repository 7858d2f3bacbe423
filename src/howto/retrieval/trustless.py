"""A trustless gateway client: blocks and CARs over HTTP, every byte checked.

``GatewayBlocks`` is a block source for one gateway (ipfs/specs, trustless gateway):
single blocks with ``?format=raw``, and the blocks of a path or a byte range of a file as
one CAR (``?format=car&dag-scope=…&entity-bytes=…``).  Nothing a gateway says is
believed: each block is hashed against its CID, a path is walked from the requested root
over the received blocks, and ``X-Ipfs-Roots``, when sent, must agree with that walk.

Replies are bounded, whatever the gateway sends: no compressed replies (``identity`` is
the only encoding asked for or accepted), at most ``MAX_BLOCK_BYTES`` for one block (the
trustless spec's 2 MiB) and ``MAX_CAR_BYTES`` for one CAR, read as it arrives and within
the timeout for the whole reply.  So a reader's memory stays bounded, and a gateway that
trickles its answer is cut off in time.
"""

from __future__ import annotations

import email.utils
import functools
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

from multiformats import CID

from ..blocks.chain import CidLike
from ..errors import (
    GatewayError,
    GatewayTimeout,
    IntegrityError,
    NotFoundError,
    PathNotFoundError,
)
from ..formats.car import CARError, cid_length, read_car_raw
from ..formats.cids import (
    RAW_CID_PREFIX,
    cid_text,
    inline_data,
    multihash_of,
    raw_cid,
    verify_raw,
)
from ..unixfs.resolver import BlockCache, Resolver
from .blockwalk import walk_blocks

if TYPE_CHECKING:  # imported where a request is made: a chain whose blocks are all local
    import http.client  # never loads an HTTP client
    import ssl

    import aiohttp

#: Gateways that ask to wait are mentioned here, once each.
log = logging.getLogger(__name__)

RAW_TYPE = "application/vnd.ipld.raw"
CAR_TYPE = "application/vnd.ipld.car"
RECORD_TYPE = "application/vnd.ipfs.ipns-record"
#: The largest IPNS record read (the IPNS record spec's limit).
MAX_RECORD_BYTES = 10 * 1024
DEFAULT_TIMEOUT = 30.0
#: Connections to one gateway at once, as browsers keep to one server.
DEFAULT_CONNECTIONS = 8
#: The longest ``Retry-After`` honoured; a gateway that asks for more is passed over.
MAX_WAIT = 30.0
#: The largest block the trustless gateway spec asks clients to accept.
MAX_BLOCK_BYTES = 2 << 20
#: The largest CAR reply read; a file is fetched in windows of ``WINDOW_BYTES`` below it.
MAX_CAR_BYTES = 96 << 20
WINDOW_BYTES = 32 << 20
READ_BYTES = 1 << 20
#: A body is received at least this much at a time (the reader checks what came meanwhile).
STEP_BYTES = 256 << 10
#: What a request for one block asks for: the block as it is, never compressed.
_RAW_HEADERS = {"Accept": "application/vnd.ipld.raw", "Accept-Encoding": "identity"}
#: The longest error reply read to keep its connection.
DISCARD_BYTES = 64 << 10
#: Answers to a CAR of a path after which the blocks are fetched one by one instead
#: (the trustless spec lets a gateway serve only ``?format=raw``); after 406 or 501 the
#: gateway is not asked for a CAR again, while a 400 may concern that one path.
CAR_REFUSALS = (400, 406, 501)


def default_timeout() -> float:
    """Seconds a gateway has for a whole reply: ``$HOWTO_GATEWAY_TIMEOUT``, else 30."""
    return float(os.environ.get("HOWTO_GATEWAY_TIMEOUT", DEFAULT_TIMEOUT))


def default_connections() -> int:
    """Connections open at once to one gateway: ``$HOWTO_GATEWAY_CONNECTIONS``, else 8."""
    return max(1, int(os.environ.get("HOWTO_GATEWAY_CONNECTIONS", DEFAULT_CONNECTIONS)))


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks for (a number of seconds or an HTTP date,
    RFC 9110), or ``None`` when there is none or it makes no sense."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class _Patience:
    """What a gateway that said "too busy, come back later" gets: one wait of at most
    ``MAX_WAIT`` seconds and one more try per request; said once per gateway."""

    def __init__(self, gateway: str) -> None:
        self.gateway = gateway
        self.said = False

    def wait(self, status: int, headers: object, what: str, limit: float) -> float | None:
        """Seconds to wait before asking again, or ``None`` when the answer stands."""
        if status not in (429, 503):
            return None
        seconds = retry_after(headers.get("Retry-After"))
        if seconds is None or seconds > min(MAX_WAIT, limit):
            return None
        if not self.said:
            self.said = True
            log.warning(
                "%s answered HTTP %d for %s and asked to wait %.3g s: waiting, then asking "
                "once more (said once per gateway)",
                self.gateway,
                status,
                what,
                seconds,
            )
        return seconds


class _Refused(Exception):
    """A gateway answered a request with a status the caller can do without."""

    def __init__(self, status: int) -> None:
        self.status = status


@dataclass
class CarReply:
    """The verified blocks of one CAR reply, and the CIDs of the requested path."""

    blocks: dict[bytes, bytes]  # multihash → bytes
    cids: list[CID]

    def __iter__(self) -> Iterator[tuple[bytes, bytes]]:
        return iter(self.blocks.items())


class Received:
    """The blocks of one reply as a block source; a block it lacks is the gateway's fault."""

    def __init__(self, blocks: dict[bytes, bytes], where: str) -> None:
        self.blocks = blocks
        self.where = where

    def __str__(self) -> str:
        return self.where

    def get(self, cid: CidLike) -> bytes:
        raw = raw_cid(cid)
        try:
            return self.blocks[multihash_of(raw)]
        except KeyError:
            if (carried := inline_data(raw)) is not None:  # never sent: the CID holds it
                return carried
            raise IntegrityError(f"{self.where}: the reply lacks block {cid_text(cid)}") from None

    get_unverified = get

    def has(self, cid: CidLike) -> bool:
        raw = raw_cid(cid)
        return multihash_of(raw) in self.blocks or inline_data(raw) is not None


class _Body:
    """A reply body read within a size limit and a deadline (a stream for the CAR reader).

    The body is received straight into one buffer, which ``read`` hands out views of.
    Given a buffer that is used again and again (a window of a large file), the body
    lands in memory already in use: on some machines, filling fresh memory costs as much
    as hashing it.  Views handed out stay valid even if a larger buffer must take over.
    """

    def __init__(
        self,
        response: http.client.HTTPResponse,
        limit: int,
        deadline: float,
        where: str,
        buffer: bytearray | None = None,
    ) -> None:
        self.response = response
        self.limit = limit
        self.deadline = deadline
        self.where = where
        self._buffer = buffer if buffer is not None else bytearray()
        self._view = memoryview(self._buffer)
        self._pos = self._end = 0
        self.received = 0
        self.ended = False

    def read(self, size: int) -> memoryview:
        while self._end - self._pos < size and not self.ended:
            self._receive(max(size - (self._end - self._pos), STEP_BYTES))
        taken = self._view[self._pos : min(self._end, self._pos + size)]
        self._pos += len(taken)
        return taken

    def _receive(self, wanted: int) -> None:
        """Up to ``wanted`` more bytes into the buffer (fewer at the end of the body)."""
        if time.monotonic() > self.deadline:
            raise GatewayTimeout(f"{self.where}: the reply did not arrive in time")
        wanted = min(wanted, self.limit + 1 - self.received)  # one more shows an excess
        if self._end + wanted > len(self._buffer):  # a larger buffer takes over
            kept = self._end - self._pos
            buffer = bytearray(max(2 * len(self._buffer), kept + wanted))
            buffer[:kept] = self._view[self._pos : self._end]
            self._buffer, self._view = buffer, memoryview(buffer)
            self._pos, self._end = 0, kept
        got = _receive_into(self.response, self._view[self._end : self._end + wanted], self.where)
        self._end += got
        self.received += got
        if self.received > self.limit:
            raise GatewayError(f"{self.where}: the reply is larger than {self.limit} bytes")
        if got < wanted:
            self.ended = True

    def read_all(self) -> bytes:
        while not self.ended:
            self._receive(READ_BYTES)
        data = bytes(self._view[self._pos : self._end])
        self._pos = self._end
        return data


def _receive_into(response: http.client.HTTPResponse, view: memoryview, where: str) -> int:
    """``response.readinto``, with what can go wrong on the way as typed errors."""
    import http.client

    try:
        return response.readinto(view)
    except TimeoutError:
        raise GatewayTimeout(f"{where}: the reply stalled") from None
    except (http.client.HTTPException, OSError) as exc:
        raise GatewayError(f"{where}: the reply broke off ({_line(exc)})") from None


class _Connections:
    """HTTP connections to one gateway, kept alive and shared by any number of threads:
    at most ``limit`` are open at once, idle or in use (a request waits for one)."""

    def __init__(self, url: str, limit: int | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) gateway URL: {url!r}")
        self.https = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port
        self.base = parts.path.rstrip("/")
        self.limit = default_connections() if limit is None else limit
        self._idle: list[http.client.HTTPConnection] = []
        self._open = 0
        self._changed = threading.Condition()

    def take(self, timeout: float) -> http.client.HTTPConnection:
        """An idle connection (``sock`` set), else a new one, not yet connected (with
        ``timeout`` to connect, at most 10 s); it goes back by ``give`` or ``drop``."""
        import http.client

        deadline = time.monotonic() + timeout
        with self._changed:
            while not self._idle and self._open >= self.limit:
                if not self._changed.wait(deadline - time.monotonic()):
                    raise GatewayTimeout(
                        f"gateway {self.host}: none of its {self.limit} connections came "
                        f"free within {timeout:g} s"
                    )
            if self._idle:
                return self._idle.pop()
            self._open += 1
        connect = min(timeout, 10.0)
        if self.https:
            return http.client.HTTPSConnection(
                self.host, self.port, timeout=connect, context=_tls()
            )
        return http.client.HTTPConnection(self.host, self.port, timeout=connect)

    def give(self, connection: http.client.HTTPConnection) -> None:
        """A connection whose reply was read whole: kept for the next request."""
        with self._changed:
            self._idle.append(connection)
            self._changed.notify()

    def drop(self, connection: http.client.HTTPConnection) -> None:
        """A connection that cannot be used again."""
        connection.close()
        with self._changed:
            self._open -= 1
            self._changed.notify()

    def close(self) -> None:
        with self._changed:
            idle, self._idle = self._idle, []
            self._open -= len(idle)
            self._changed.notify_all()
        for connection in idle:
            connection.close()


#: One pool of connections per gateway and process, whichever clients share it.
_POOLS: dict[str, _Connections] = {}
_POOLS_LOCK = threading.Lock()


def _pool(url: str) -> _Connections:
    with _POOLS_LOCK:
        pool = _POOLS.get(url)
        if pool is None or pool.limit != default_connections():
            pool = _POOLS[url] = _Connections(url)
        return pool


@functools.lru_cache(maxsize=1)
def _tls() -> ssl.SSLContext:
    import ssl

    return ssl.create_default_context()


class _Exchange:
    """One reply and its connection, which goes back to the pool once the body is read."""

    def __init__(
        self,
        connections: _Connections,
        connection: http.client.HTTPConnection,
        response: http.client.HTTPResponse,
    ) -> None:
        self.connections = connections
        self.connection = connection
        self.response = response
        self.status = response.status
        self.headers = response.headers

    def discard(self) -> None:
        """Done with this reply, whatever its body: a short one is read (so that the
        connection can be kept), a long one ends the connection."""
        import http.client

        length = self.response.length
        if length is not None and length <= DISCARD_BYTES:
            try:
                self.response.read()
            except (http.client.HTTPException, OSError):
                pass
        self.release()

    def release(self) -> None:
        """Keep the connection if the body was read to its end, else close it."""
        if self.response.isclosed() and not self.response.will_close:
            self.connections.give(self.connection)
        else:
            self.connections.drop(self.connection)


class GatewayBlocks:
    """One gateway as a block source: every reply verified, bounded and timed."""

    def __init__(self, url: str, timeout: float | None = None) -> None:
        self.url = url.rstrip("/")
        self.timeout = default_timeout() if timeout is None else timeout
        self._connections = _pool(self.url)
        self._patience = _Patience(str(self))
        #: Set once the gateway refused a CAR for good (406 or 501): blocks only then.
        self.raw_only = False

    def __str__(self) -> str:
        return f"gateway {self.url}"

    def __reduce__(self) -> tuple:
        return (type(self), (self.url, self.timeout))

    def _open(
        self,
        target: str,
        accept: str,
        what: str,
        method: str = "GET",
        namespace: str = "ipfs",
        refusals: tuple[int, ...] = (),
    ) -> _Exchange:
        """Send the request; a reply that is not a plain 200 becomes a typed error (or
        ``_Refused`` for a status in ``refusals``)."""
        path = f"{self._connections.base}/{namespace}/{target}"
        reply = self._exchange(path, method, accept, what)
        if reply.status != 200:
            reply.discard()
            if reply.status in refusals:
                raise _Refused(reply.status)
            wait = self._patience.wait(reply.status, reply.headers, what, self.timeout)
            if wait is None:
                self._status(reply.status, what)
            time.sleep(wait)
            reply = self._exchange(path, method, accept, what)
            if reply.status != 200:
                reply.discard()
                self._status(reply.status, what)
        encoding = (reply.headers.get("Content-Encoding") or "identity").strip().lower()
        if encoding not in ("", "identity"):
            reply.connection.close()
            reply.release()
            raise GatewayError(f"{self} sent a {encoding!r}-encoded reply for {what}: refused")
        return reply

    def _exchange(self, path: str, method: str, accept: str, what: str) -> _Exchange:
        """One request and the head of its reply, on a kept connection when there is one."""
        import http.client

        headers = {"Accept": accept, "Accept-Encoding": "identity"}
        for attempt in (1, 2):
            connection = self._connections.take(self.timeout)
            kept = connection.sock is not None
            try:
                if not kept:
                    connection.connect()
                connection.sock.settimeout(self.timeout)  # from now on: the reply's
                connection.request(method, path, headers=headers)
                return _Exchange(self._connections, connection, connection.getresponse())
            except TimeoutError:
                self._connections.drop(connection)
                raise GatewayTimeout(
                    f"{self} did not answer within {self.timeout:g} s for {what}"
                ) from None
            except (http.client.HTTPException, OSError) as exc:
                self._connections.drop(connection)
                if kept and attempt == 1:  # a kept-alive connection the gateway had closed:
                    self._connections.close()  # so had the others (it restarted, say)
                    continue
                if isinstance(exc, http.client.HTTPException):
                    problem = f"{self} broke off the reply for {what}"
                else:
                    problem = f"cannot reach {self} for {what}"
                raise GatewayError(f"{problem}: {_line(exc)}") from None
        raise AssertionError("unreachable")  # the second attempt returns or raises

    def _status(self, status: int, what: str) -> None:
        """A typed error for any answer but 200."""
        if status in (404, 410):
            raise NotFoundError(f"{self} does not have {what} (HTTP {status})")
        if status == 400:
            raise NotFoundError(f"{self} rejected the request for {what} (HTTP 400)")
        if status != 200:
            raise GatewayError(f"{self} answered HTTP {status} for {what}")

    def _body(
        self, reply: _Exchange, limit: int, what: str, buffer: bytearray | None = None
    ) -> _Body:
        declared = reply.headers.get("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            reply.connection.close()
            raise GatewayError(f"{self}: the reply for {what} has {declared} bytes, over {limit}")
        deadline = time.monotonic() + self.timeout
        return _Body(reply.response, limit, deadline, f"{self}, {what}", buffer)

    def _roots(
        self, response: _Exchange | aiohttp.ClientResponse, cids: list[CID], what: str
    ) -> None:
        header = response.headers.get("X-Ipfs-Roots")
        if header is not None and not same_roots(header, cids):
            raise IntegrityError(f"{self}, {what}: X-Ipfs-Roots {header!r} disagree with the DAG")

    def get(self, cid: CidLike) -> bytes:
        """One block by its CID (``format=raw``), hashed on arrival."""
        cid = cid if isinstance(cid, CID) else CID.decode(cid)
        what = f"block {cid_text(cid)}"
        response = self._open(f"{cid_text(cid)}?format=raw", RAW_TYPE, what)
        try:
            data = self._body(response, MAX_BLOCK_BYTES, what).read_all()
            self._roots(response, [cid], what)
        finally:
            response.release()
        return self._checked(cid, data, what)

    async def aget(self, cid: CID, session: aiohttp.ClientSession) -> bytes:
        """``get`` for an event loop (the ``ipfs://`` file system's chunk reads): the same
        request, bounds and checks, sent with ``session`` instead of a worker thread."""
        text = cid_text(cid)
        what = f"block {text}"
        for attempt in (1, 2):
            try:
                return await self._aget_once(cid, text, what, session)
            except _Busy as busy:
                if attempt == 2:
                    self._status(busy.status, what)
                await _sleep(busy.seconds)
        raise AssertionError("unreachable")

    async def _aget_once(
        self, cid: CID, text: str, what: str, session: aiohttp.ClientSession
    ) -> bytes:
        import aiohttp

        try:
            async with session.get(
                f"{self.url}/ipfs/{text}?format=raw",
                headers=_RAW_HEADERS,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                allow_redirects=False,
            ) as response:
                if response.status != 200:
                    limit = self.timeout
                    wait = self._patience.wait(response.status, response.headers, what, limit)
                    if wait is not None:
                        raise _Busy(response.status, wait)
                self._status(response.status, what)
                encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
                if encoding not in ("", "identity"):
                    raise GatewayError(f"{self} sent a {encoding!r}-encoded reply for {what}")
                declared = response.content_length
                if declared is not None and declared > MAX_BLOCK_BYTES:
                    raise GatewayError(
                        f"{self}: the reply for {what} has {declared} bytes, over {MAX_BLOCK_BYTES}"
                    )
                if declared is not None:  # aiohttp stops at the declared length
                    data = await response.read()
                else:
                    parts, received = [], 0
                    async for piece in response.content.iter_any():
                        received += len(piece)
                        if received > MAX_BLOCK_BYTES:
                            raise GatewayError(
                                f"{self}, {what}: larger than {MAX_BLOCK_BYTES} bytes"
                            )
                        parts.append(piece)
                    data = b"".join(parts)
                roots = response.headers.get("X-Ipfs-Roots")
                if roots is not None and roots.strip() != text:
                    self._roots(response, [cid], what)
        except TimeoutError:
            raise GatewayTimeout(
                f"{self} did not answer within {self.timeout:g} s for {what}"
            ) from None
        except aiohttp.ClientError as exc:
            raise GatewayError(f"cannot reach {self} for {what}: {_line(exc)}") from None
        return self._checked(cid, data, what)

    async def acar_blocks(
        self, root: CID, session: aiohttp.ClientSession
    ) -> AsyncIterator[tuple[bytes, bytes]]:
        """Every block under ``root`` (a CAR with ``dag-scope=all``) as it arrives: binary
        CID and bytes, each checked against its CID before it is given out.  For reading
        a whole directory ahead; the caller decides which of the blocks it wants."""
        import asyncio

        import aiohttp

        what = f"/ipfs/{cid_text(root)} (dag-scope=all)"
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self.timeout, sock_read=self.timeout
        )
        try:
            async with session.get(
                f"{self.url}/ipfs/{cid_text(root)}?format=car&dag-scope=all",
                headers={"Accept": CAR_TYPE, "Accept-Encoding": "identity"},
                timeout=timeout,
                allow_redirects=False,
            ) as response:
                if response.status in CAR_REFUSALS[1:]:
                    self.raw_only = True  # the readers ask for blocks alone from now on
                self._status(response.status, what)
                content = response.content
                header = await _avarint(content, what)
                if header is None or header > MAX_RECORD_BYTES * 100:
                    raise CARError(f"{self}, {what}: no CAR header, or one too long")
                await content.readexactly(header)
                while (length := await _avarint(content, what)) is not None:
                    if not 0 < length <= MAX_BLOCK_BYTES + 256:
                        raise CARError(f"{self}, {what}: a section of {length} bytes")
                    section = await content.readexactly(length)
                    split = cid_length(section)
                    cid, data = section[:split], section[split:]
                    try:
                        verify_raw(cid, data)
                    except IntegrityError:
                        raise IntegrityError(
                            f"{self} sent a block in {what} that does not match its CID"
                        ) from None
                    yield cid, data
        except asyncio.IncompleteReadError:
            raise GatewayError(f"{self} broke off {what}") from None
        except TimeoutError:
            raise GatewayTimeout(f"{self} stalled on {what}") from None
        except aiohttp.ClientError as exc:
            raise GatewayError(f"cannot reach {self} for {what}: {_line(exc)}") from None

    def _checked(self, cid: CID, data: bytes, what: str) -> bytes:
        try:
            verify_raw(bytes(cid), data)
        except IntegrityError:
            raise IntegrityError(f"{self} sent {what}, which does not match its hash") from None
        return data

    get_unverified = get  # bytes from a gateway are always checked

    def has(self, cid: CidLike) -> bool:
        """Whether the gateway says it has the block (a ``HEAD`` request)."""
        text = cid_text(cid if isinstance(cid, CID) else CID.decode(cid))
        try:
            response = self._open(f"{text}?format=raw", RAW_TYPE, text, method="HEAD")
        except (NotFoundError, GatewayError):
            return False
        response.response.read()  # nothing, for a HEAD: the connection can be kept
        response.release()
        return True

    def ipns_record(self, name: str) -> bytes:
        """The IPNS record the gateway holds for ``name`` (trustless IPNS reply), at most
        ``MAX_RECORD_BYTES``; the caller verifies it against the name."""
        what = f"the record of /ipns/{name}"
        response = self._open(f"{name}?format=ipns-record", RECORD_TYPE, what, namespace="ipns")
        try:
            return self._body(response, MAX_RECORD_BYTES, what).read_all()
        finally:
            response.release()

    def car(
        self,
        root: CID,
        path: str = "",
        scope: str = "entity",
        entity_bytes: str | None = None,
        cache: BlockCache | None = None,
        buffer: bytearray | None = None,
    ) -> CarReply:
        """The blocks of ``/ipfs/root/path`` for ``scope`` as a verified CAR.

        Each block is hashed as it arrives; the path is then walked from ``root`` over the
        received blocks, which must hold every block on the way (the nodes verified on the
        way are kept in ``cache``, even when the reply turns out to be a lie further on).
        With a ``buffer``, the reply is received into it and raw blocks are views of it,
        valid until the caller uses the buffer again; other blocks are always copied out.

        A gateway that refuses the CAR (``CAR_REFUSALS``) gets the same request as single
        blocks instead (``blocks_car``), and after a 406 or 501 only those.
        """
        target = cid_text(root) + (f"/{quote(path, safe='/')}" if path else "")
        query = f"?format=car&dag-scope={scope}"
        if entity_bytes is not None:
            query += f"&entity-bytes={entity_bytes}"
        what = f"/ipfs/{target}"
        if self.raw_only:
            return self.blocks_car(root, path, scope, entity_bytes, cache)
        try:
            response = self._open(target + query, CAR_TYPE, what, refusals=CAR_REFUSALS)
        except _Refused as refused:
            if refused.status != 400:  # not this path: the gateway serves no CARs
                self.raw_only = True
                log.info(
                    "%s answered HTTP %d for a CAR: asking it for blocks only", self, refused.status
                )
            return self.blocks_car(root, path, scope, entity_bytes, cache)
        try:
            body = self._body(response, MAX_CAR_BYTES, what, buffer)
            try:
                _, sections = read_car_raw(body, roots=False, overlap=True)
                views = buffer is not None  # raw blocks stay views of the caller's buffer
                blocks = {
                    multihash_of(cid): data if views and cid[:2] == RAW_CID_PREFIX else bytes(data)
                    for cid, data in sections
                }
            except CARError as exc:
                raise CARError(f"{self}, {what}: {exc}") from None
            received = Received(blocks, f"{self}, {what}")
            try:
                cids = Resolver(received, cache).resolve(root, path)
            except PathNotFoundError as exc:  # the reply's verified blocks prove it absent
                raise PathNotFoundError(f"{exc} ({self})") from None
            received.get(cids[-1])  # every scope includes the target's own block
            self._roots(response, cids, what)
        finally:
            response.release()
        return CarReply(blocks, cids)

    def blocks_car(
        self,
        root: CID,
        path: str = "",
        scope: str = "entity",
        entity_bytes: str | None = None,
        cache: BlockCache | None = None,
    ) -> CarReply:
        """What ``car`` returns, gathered with ``?format=raw`` requests alone: the path
        walked block by block, then the target's blocks, as many at once as this
        gateway's connections allow (see ``blockwalk``).  Every block is checked as
        ``get`` checks it; the whole is bounded by ``MAX_CAR_BYTES`` as a CAR is."""
        what = f"/ipfs/{cid_text(root)}" + (f"/{path}" if path else "")
        blocks, cids = walk_blocks(
            self.get,
            root,
            path,
            scope,
            entity_bytes,
            cache,
            self._connections.limit,
            MAX_CAR_BYTES,
            f"{self}, {what}",
        )
        return CarReply(blocks, cids)


async def _sleep(seconds: float) -> None:
    import asyncio  # here, not at the top: asyncio loads ssl, which local reads never need

    await asyncio.sleep(seconds)


class _Busy(Exception):
    """A gateway asked to be asked again later (429 or 503 with ``Retry-After``)."""

    def __init__(self, status: int, seconds: float) -> None:
        self.status = status
        self.seconds = seconds


async def _avarint(content: aiohttp.StreamReader, what: str) -> int | None:
    """An unsigned varint from a stream; ``None`` at a clean end before its first byte."""
    value = shift = 0
    while True:
        byte = await content.read(1)
        if not byte:
            if shift:
                raise CARError(f"{what}: the reply ends inside a varint")
            return None
        value |= (byte[0] & 0x7F) << shift
        if byte[0] < 0x80:
            return value
        shift += 7
        if shift > 63:
            raise CARError(f"{what}: a varint longer than 9 bytes")


def same_roots(header: str, cids: list[CID]) -> bool:
    """Whether an ``X-Ipfs-Roots`` value names ``cids`` (any CID version or base)."""
    claimed = [c.strip() for c in header.split(",") if c.strip()]
    if claimed == [cid_text(c) for c in cids]:
        return True
    try:
        return [CID.decode(c).digest for c in claimed] == [c.digest for c in cids]
    except Exception:
        return False


def _line(value: object) -> str:
    return (str(value).strip().splitlines() or [type(value).__name__])[0]


__all__ = [
    "CAR_REFUSALS",
    "CAR_TYPE",
    "DEFAULT_CONNECTIONS",
    "RAW_TYPE",
    "CarReply",
    "GatewayBlocks",
    "Received",
    "default_connections",
    "default_timeout",
    "retry_after",
    "same_roots",
]
