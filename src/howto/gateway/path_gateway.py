"""The path gateway's replies: content as a browser or a plain HTTP client wants it.

A UnixFS file is sent as its bytes (typed by its name, else by a look at its first bytes),
a directory as its ``index.html`` or as a listing, a DAG-JSON, DAG-CBOR, JSON or CBOR block
as stored, and a directory or file as a tar archive (``format=tar``).  ``?filename=`` and
``?download=true`` set ``Content-Disposition``; ranges are answered by ``ranges``.
"""

from __future__ import annotations

import asyncio
import codecs
import json
import mimetypes
from collections.abc import Iterator

from aiohttp import web

from ..errors import NotFoundError
from ..formats.cids import cid_text
from ..unixfs import tar
from ..unixfs.resolver import Block, Resolver
from .headers import disposition, not_modified
from .negotiation import FORMATS, TAR_TYPE
from .pages import directory_listing
from .ranges import send_block, send_content
from .streaming import batches

#: A file whose name says nothing of its type is looked at (JSON? text?) up to this size;
#: a larger one is sent as bytes, its reply begun before any of its blocks is read.
SNIFF_BYTES = 64 << 10


def _sniff(resolver: Resolver, target: Block, size: int) -> str:
    """The type of a file whose name says nothing: JSON (when it is at most
    ``SNIFF_BYTES``, checked whole), UTF-8 text (by its first 512 bytes), or bytes.
    No more than ``SNIFF_BYTES`` of the file are read, whatever its size."""
    head = b"".join(resolver.read(target, 0, 512))
    if size <= SNIFF_BYTES and head.lstrip()[:1] in (b"{", b"["):
        try:
            json.loads(b"".join(resolver.read(target, 0, SNIFF_BYTES)))
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


def _index_html(resolver: Resolver, directory: Block) -> Block | None:
    """The directory's ``index.html`` file, when it has one."""
    try:
        cid = resolver.resolve(directory.cid, "index.html")[-1]
    except NotFoundError:
        return None
    block = resolver.block(cid)
    return block if block.kind == "file" else None


async def serve_unixfs(
    request: web.Request,
    resolver: Resolver,
    target: Block,
    segments: list[str],
    headers: dict,
) -> web.StreamResponse:
    """A UnixFS file's bytes, a symlink's target, or a directory (its ``index.html``,
    else its listing; a directory's URL ends with ``/``, else a redirect adds it)."""
    if target.kind == "directory":
        index = await asyncio.to_thread(_index_html, resolver, target)
        if not request.path.endswith("/"):
            location = request.rel_url.raw_path + "/"
            if request.rel_url.raw_query_string:
                location += "?" + request.rel_url.raw_query_string
            raise web.HTTPMovedPermanently(location, headers=headers)
        if index is None:
            return await directory_listing(request, resolver, target, headers)
        # a web site: its index page stands for the folder, whose CID is the Etag
        if not_modified(request, f'"{cid_text(target.cid)}"', headers):
            return web.Response(status=304, headers=headers)
        target = index
        segments = [*segments, "index.html"]
    elif not_modified(request, f'"{cid_text(target.cid)}"', headers):
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

    return await send_content(request, headers, size, read, not resolver.links(target))


async def serve_ipld(
    request: web.Request, block: Block, fmt: str, headers: dict
) -> web.StreamResponse:
    """A DAG-JSON, DAG-CBOR, JSON or CBOR block as stored, typed as asked."""
    name = cid_text(block.cid)
    ext = "json" if fmt.endswith("json") else "cbor"
    filename = f"{name}.{ext}"
    etag = f'"{name}.{fmt}"'
    return await send_block(
        request, headers, block.data, etag, FORMATS[fmt], filename, ext == "cbor"
    )


async def serve_tar(
    request: web.Request, resolver: Resolver, target: Block, headers: dict
) -> web.StreamResponse:
    """``target`` (a file or a whole directory) as a tar archive named after its CID."""
    name = cid_text(target.cid)
    if not_modified(request, f'W/"{name}.x-tar"', headers):
        return web.Response(status=304, headers=headers)
    transport = request.transport

    def client_left() -> bool:  # asked by the worker thread between members
        return transport is None or transport.is_closing()

    try:
        members = await asyncio.to_thread(tar.entries, resolver, target, name, client_left)
    except tar.ClientLeft:
        raise ConnectionResetError("the client left before the archive began") from None
    except tar.UnsafeNameError as exc:
        raise web.HTTPBadRequest(text=f"{exc}\n") from None
    except ValueError as exc:
        raise web.HTTPNotAcceptable(text=f"{exc}\n") from None
    headers["Content-Type"] = TAR_TYPE
    headers["Content-Disposition"] = disposition(request, f"{name}.tar", True)
    response = web.StreamResponse(headers=headers)
    await response.prepare(request)
    if request.method == "GET":
        async for batch in batches(tar.stream(resolver, members), len, False):
            await response.write(b"".join(batch))
    await response.write_eof()
    return response


__all__ = ["SNIFF_BYTES", "serve_ipld", "serve_tar", "serve_unixfs"]
