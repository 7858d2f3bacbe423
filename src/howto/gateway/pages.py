"""The HTML pages the gateway writes itself, for people in a browser.

A directory without an ``index.html`` is shown as a listing (a breadcrumb, then each
entry's name, size and CID); a DAG-JSON or DAG-CBOR block asked for as HTML is shown as
its DAG-JSON text with its links made clickable.  The pages may change with howto, so
they are cached for a week and their Etag carries ``PAGE_VERSION``.
"""

from __future__ import annotations

import asyncio
import html
import urllib.parse

from aiohttp import web
from multiformats import CID

from ..formats.cids import cid_text
from ..formats.dagjson import display
from ..unixfs.resolver import Block, Resolver, decode_ipld
from .headers import not_modified

#: Generated HTML may change with howto, so it is cached for a week, not forever.
LISTING_CACHE = "public, max-age=604800, stale-while-revalidate=2678400"
#: Part of the Etag of generated pages: changes whenever their HTML does.
PAGE_VERSION = "howto2"

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


async def directory_listing(
    request: web.Request, resolver: Resolver, target: Block, headers: dict
) -> web.Response:
    """The HTML listing of the directory ``target``."""
    headers["Cache-Control"] = LISTING_CACHE
    etag = f'"DirIndex-{PAGE_VERSION}_CID-{cid_text(target.cid)}"'
    if not_modified(request, etag, headers):
        return web.Response(status=304, headers=headers)
    entries = await asyncio.to_thread(resolver.ls, target.cid)
    page = _listing_page(request.rel_url.raw_path, entries, target.cid)
    return web.Response(text=page, content_type="text/html", headers=headers)


async def dag_preview(
    request: web.Request, resolver: Resolver, block: Block, headers: dict
) -> web.Response:
    """A DAG-CBOR or DAG-JSON block shown as an HTML page, its links clickable."""
    name = cid_text(block.cid)
    headers["Cache-Control"] = LISTING_CACHE
    if not_modified(request, f'"DagIndex-{PAGE_VERSION}_CID-{name}"', headers):
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


__all__ = ["LISTING_CACHE", "PAGE_VERSION", "dag_preview", "directory_listing"]
