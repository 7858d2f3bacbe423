"""``/ipns/{name}/…``: IPNS names, answered from the signed records kept here.

A name is resolved through its verified record to ``/ipfs/`` content, which the gateway
then serves as any other (cached for the record's TTL, not forever); ``?format=ipns-record``
gives the record itself, the trustless IPNS reply.  A name has one spelling (base36
CIDv1): another is redirected to it.
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from multiformats import CID

from ..blocks.chain import BlockSource
from ..blocks.repo import Repo
from ..errors import IpnsError, NotFoundError
from ..formats.cids import RAW, cid_bytes, cid_text, parse_cid, to_cid
from ..names.ipns import (
    RECORD_TYPE,
    RecordStore,
    inspect_record,
    name_text,
    parse_name,
    resolve_path,
)
from .headers import disposition
from .negotiation import path_segments


def records_for(source: BlockSource) -> RecordStore:
    """The records kept beside ``source``'s blocks: a repository's own, else the default
    repository's."""
    if isinstance(source, Repo):
        return RecordStore(source.path)
    return RecordStore()


class IpnsGateway:
    """``/ipns/`` names resolved, and their records sent, from ``records``."""

    def __init__(self, records: RecordStore) -> None:
        self.records = records

    def parse(self, request: web.Request) -> tuple[CID, str, str]:
        """The name of an ``/ipns/`` request, as it was spelled, and the path after it: a
        400 for what is not a name, a redirect for a name not in its own spelling."""
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
        return name, head, path

    async def resolve(self, name: CID, head: str, path: str) -> tuple[CID, list[str], str]:
        """The ``/ipfs/`` content that ``name``'s verified record points at (through other
        names held here, as kubo follows ``/ipns/`` values), with ``path`` below it: its
        root CID, path segments, and a ``Cache-Control`` for the shortest TTL on the way.
        ``head`` is the name as the request spelled it."""
        try:
            resolved = await asyncio.to_thread(resolve_path, name, None, self.records)
        except NotFoundError as exc:
            raise web.HTTPNotFound(text=f"{exc}\n") from None
        except IpnsError as exc:
            raise web.HTTPBadGateway(text=f"/ipns/{head}: {exc}\n") from None
        ttl = max(0, resolved.ttl // 1_000_000_000)
        root, inner = parse_cid(resolved.path)
        return root, path_segments(f"{inner}/{path}"), f"public, max-age={ttl}"

    async def record(self, request: web.Request, name: CID, head: str) -> web.Response:
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


__all__ = ["IpnsGateway", "records_for"]
