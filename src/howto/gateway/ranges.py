"""Sending content whole or in the byte ranges a ``Range`` header asks for (RFC 9110, 14).

One range is a 206 reply with ``Content-Range``; several are one 206
``multipart/byteranges`` reply; a header that selects nothing is a 416.  A header the
server may ignore (another unit, too many ranges) gets the whole content.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterator
from typing import Literal

from aiohttp import web

from .headers import disposition, not_modified
from .streaming import batches

#: More ranges than this in one ``Range`` header are ignored (the whole file is sent).
MAX_RANGES = 64

#: Reads the bytes ``[start, end)`` of some content, in pieces.
ByteReader = Callable[[int, int], Iterator[bytes]]

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


def _slice(data: bytes) -> ByteReader:
    def read(start: int, end: int) -> Iterator[bytes]:
        yield data[start:end]

    return read


async def send_content(
    request: web.Request,
    headers: dict,
    size: int,
    read: ByteReader,
    inline: bool,
) -> web.StreamResponse:
    """``size`` bytes of content, whole or the ranges asked for (one range: 206 with
    ``Content-Range``; several: 206 ``multipart/byteranges``; none valid: 416).
    ``inline``: ``read`` does no I/O, so it runs on the event loop."""
    headers["Accept-Ranges"] = "bytes"
    chosen = None
    if "Range" in request.headers:
        chosen = _ranges(request.headers["Range"], size)
        if chosen == "unsatisfiable":
            headers["Content-Range"] = f"bytes */{size}"
            headers.pop("Content-Type", None)
            return web.Response(status=416, headers=headers)
    if chosen and len(chosen) > 1:
        return await _multipart(request, headers, size, read, chosen)
    start, end, status = 0, size, 200
    if chosen:
        (start, end), status = chosen[0], 206
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    headers["Content-Length"] = str(end - start)
    response = web.StreamResponse(status=status, headers=headers)
    await response.prepare(request)
    if request.method == "GET" and end > start:
        await _write(response, read, start, end, inline)
    await response.write_eof()
    return response


async def _write(
    response: web.StreamResponse, read: ByteReader, start: int, end: int, inline: bool
) -> None:
    async for batch in batches(read(start, end), len, inline):
        for chunk in batch:
            await response.write(chunk)


async def _multipart(
    request: web.Request,
    headers: dict,
    size: int,
    read: ByteReader,
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
            await _write(response, read, start, end, False)
        await response.write(tail)
    await response.write_eof()
    return response


async def send_block(
    request: web.Request,
    headers: dict,
    data: bytes,
    etag: str,
    media_type: str,
    filename: str,
    attachment: bool,
) -> web.StreamResponse:
    """One block's bytes as stored (whole or in ranges), tagged ``etag``, typed
    ``media_type`` and named ``filename``; a 304 when the client holds ``etag``."""
    if not_modified(request, etag, headers):
        return web.Response(status=304, headers=headers)
    headers["Content-Type"] = media_type
    headers["Content-Disposition"] = disposition(request, filename, attachment)
    return await send_content(request, headers, len(data), _slice(data), True)


__all__ = ["MAX_RANGES", "ByteReader", "send_block", "send_content"]
