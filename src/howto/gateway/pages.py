"""The HTML pages the gateway writes itself, for people in a browser.

A directory without an ``index.html`` is shown as a listing (a breadcrumb, then each
entry's name, size and CID); a DAG-JSON or DAG-CBOR block asked for as HTML is shown as
its DAG-JSON text with its links made clickable.  The pages may change with howto, so
they are cached for a week and their Etag carries ``PAGE_VERSION``.
"""

from __future__ import annotations

import asyncio
import html
import re
import urllib.parse

from aiohttp import web
from multiformats import CID

from ..formats.cids import DAG_CBOR, DAG_JSON, cid_text
from ..formats.dagjson import display
from ..unixfs.resolver import Block, Resolver, cbor_links, decode_ipld
from .headers import not_modified

#: Generated HTML may change with howto, so it is cached for a week, not forever.
LISTING_CACHE = "public, max-age=604800, stale-while-revalidate=2678400"
#: Part of the Etag of generated pages: changes whenever their HTML does.
PAGE_VERSION = "howto2"
#: Entries shown on one page of a directory listing; ``?page=2`` shows the next ones.
#: Only the entries of the page asked for are read (their kinds and sizes), so a page
#: costs the same in a directory of a hundred entries or of millions.
LISTING_PAGE = 2000
#: The most links a DAG-CBOR or DAG-JSON block may have to be shown as an HTML page
#: (each becomes a link); a larger block is given as stored (``?format=dag-json``).
#: Links are counted by their marks in the bytes (CBOR tag 42, DAG-JSON's ``{"/":``)
#: before anything is decoded: decoding 40,000 links takes seconds of a worker thread.
MAX_PREVIEW_LINKS = 10_000
#: What starts a link in each codec's bytes (a string may hold the same bytes, so the
#: count is at most too high, never too low).
_LINK_MARKS = {DAG_CBOR: b"\xd8\x2a", DAG_JSON: b'"/"'}

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


def _listing_page(raw_path: str, entries: list, cid: CID, page: int, more: bool) -> str:
    """A directory listing: a breadcrumb of the path, then one row per entry with its
    name, its size and its CID (which opens the entry alone, under its own name), and
    links to the pages before and after this one."""
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
        name = cid_text(e.raw)
        own = html.escape(f"/ipfs/{name}?filename={urllib.parse.quote(quoted, safe='')}")
        size = _size_text(e.size) if e.kind == "file" else ""
        rows.append(
            f'<tr><td><a href="{target}">{html.escape(e.name)}</a></td>'
            f'<td class="size">{size}</td>'
            f'<td><a class="ipfs-hash" translate="no" href="{own}">{name}</a></td></tr>'
        )
    pages = []
    if page > 1:
        pages.append(f'<a rel="prev" href="?page={page - 1}">page {page - 1}</a>')
    if more:
        pages.append(f'<a rel="next" href="?page={page + 1}">page {page + 1}</a>')
    turn = f'<p class="pages">page {page}: {" ".join(pages)}</p>' if pages else ""
    body = (
        f"<h1>Index of /{namespace}/{'/'.join(crumbs)}</h1>"
        f'<p class="cid">{cid_text(cid)}</p><table>{"".join(rows)}</table>{turn}'
    )
    return _page(urllib.parse.unquote(raw_path), body)


def _page_number(request: web.Request) -> int:
    """``?page=N`` (from 1), a one-line 400 for anything else."""
    text = request.query.get("page", "1")
    if not (text.isascii() and text.isdigit() and 0 < len(text) <= 9 and int(text) > 0):
        raise web.HTTPBadRequest(text="page must be a whole number from 1\n")
    return int(text)


async def directory_listing(
    request: web.Request, resolver: Resolver, target: Block, headers: dict
) -> web.Response:
    """The HTML listing of the directory ``target``, ``LISTING_PAGE`` entries a page."""
    page = _page_number(request)
    headers["Cache-Control"] = LISTING_CACHE
    turned = f"_page-{page}" if page > 1 else ""
    etag = f'"DirIndex-{PAGE_VERSION}_CID-{cid_text(target.cid)}{turned}"'
    if not_modified(request, etag, headers):
        return web.Response(status=304, headers=headers)

    def read() -> list:  # one more than a page: whether there is a next page
        start = (page - 1) * LISTING_PAGE
        return list(resolver.entries(target.cid, start, LISTING_PAGE + 1))

    entries = await asyncio.to_thread(read)
    more = len(entries) > LISTING_PAGE
    text = _listing_page(request.rel_url.raw_path, entries[:LISTING_PAGE], target.cid, page, more)
    return web.Response(text=text, content_type="text/html", headers=headers)


async def dag_preview(request: web.Request, block: Block, headers: dict) -> web.Response:
    """A DAG-CBOR or DAG-JSON block shown as an HTML page, its links clickable."""
    name = cid_text(block.cid)
    headers["Cache-Control"] = LISTING_CACHE
    if not_modified(request, f'"DagIndex-{PAGE_VERSION}_CID-{name}"', headers):
        return web.Response(status=304, headers=headers)
    page = await asyncio.to_thread(_preview_page, block)  # decoding may take a while
    return web.Response(text=page, content_type="text/html", headers=headers)


def _preview_page(block: Block) -> str:
    """The HTML page of an IPLD block: its DAG-JSON text, each link quoted in it made
    clickable (in one pass over the text); over ``MAX_PREVIEW_LINKS`` links, a 406."""
    name = cid_text(block.cid)
    marks = block.data.count(_LINK_MARKS.get(block.cid.codec.code, b"\xd8\x2a"))
    if marks > MAX_PREVIEW_LINKS:
        raise web.HTTPNotAcceptable(
            text=f"{name} links more than {MAX_PREVIEW_LINKS} blocks, too many to show as a "
            "page: ask for format=dag-json or dag-cbor\n"
        )
    value = decode_ipld(block)
    found = list(cbor_links(value))
    links = {cid_text(c) for c in found} | {str(c) for c in found}  # as DAG-JSON shows them
    text = html.escape(display(value))

    def anchor(match: re.Match) -> str:
        link = match.group(1)
        if link not in links:
            return match.group(0)
        return f'&quot;<a href="/ipfs/{link}/">{link}</a>&quot;'

    text = _QUOTED.sub(anchor, text)
    body = (
        f"<h1>{block.cid.codec.name}</h1>"
        f'<p class="cid"><a href="/ipfs/{name}?format=raw">{name}</a></p>'
        f"<pre>{text}</pre>"
    )
    return _page(f"/ipfs/{name}", body)


#: A quoted word in escaped DAG-JSON text: a CID where it is one of the block's links.
_QUOTED = re.compile(r"&quot;([A-Za-z0-9]+)&quot;")


__all__ = [
    "LISTING_CACHE",
    "LISTING_PAGE",
    "MAX_PREVIEW_LINKS",
    "PAGE_VERSION",
    "dag_preview",
    "directory_listing",
]
