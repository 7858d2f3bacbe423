"""The HTTP headers of the gateway's replies, and the request headers that change one.

Every reply carries ``X-Ipfs-Path``, ``X-Ipfs-Roots`` and a ``Cache-Control``; an
``Etag`` names exactly what was sent, so that ``If-None-Match`` gets a 304;
``?filename=`` and ``?download=true`` become ``Content-Disposition``.
"""

from __future__ import annotations

import urllib.parse

from aiohttp import web
from multiformats import CID

from ..formats.cids import cid_text

#: Content named by a CID never changes.
IMMUTABLE = "public, max-age=29030400, immutable"


def reply_headers(shown_path: str, cids: list[CID], cache: str = IMMUTABLE) -> dict[str, str]:
    """The headers every answer for ``shown_path`` (the request's path) carries."""
    return {
        "X-Ipfs-Path": shown_path,
        "X-Ipfs-Roots": ",".join(cid_text(c) for c in cids),
        "Cache-Control": cache,
        "Access-Control-Allow-Origin": "*",
        "X-Content-Type-Options": "nosniff",
    }


def _etag_matches(request: web.Request, etag: str) -> bool:
    """``If-None-Match`` (RFC 9110, 13.1.2): a list of tags or ``*``, compared weakly."""
    header = request.headers.get("If-None-Match")
    if header is None:
        return False
    ours = etag.removeprefix("W/")
    return any(t == "*" or t.removeprefix("W/") == ours for t in map(str.strip, header.split(",")))


def not_modified(request: web.Request, etag: str, headers: dict) -> bool:
    """Set ``etag`` in ``headers``; true when the client already holds it (reply 304)."""
    headers["Etag"] = etag
    return _etag_matches(request, etag)


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


def only_if_cached(request: web.Request) -> bool:
    """Whether the request says ``Cache-Control: only-if-cached``."""
    cache = request.headers.get("Cache-Control", "")
    return "only-if-cached" in [d.strip().lower() for d in cache.split(",")]


__all__ = ["IMMUTABLE", "disposition", "not_modified", "only_if_cached", "reply_headers"]
