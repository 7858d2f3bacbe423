"""What a request asks for: the path below its CID or name, and the representation.

The representation comes from ``?format=`` or, failing that, from ``Accept`` (the path
gateway spec's content negotiation); the media types here are the ones the specs name.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from ..retrieval.trustless import CAR_TYPE, RAW_TYPE

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


def path_segments(path: str) -> list[str]:
    """The segments of a path below a CID or a name; ``.`` and ``..`` are refused (a 400),
    so that no path climbs out of the content it starts from."""
    segments = [s for s in path.split("/") if s]
    if any(s in (".", "..") for s in segments):
        raise web.HTTPBadRequest(text="relative path segments are not allowed\n")
    return segments


__all__ = ["FORMATS", "TAR_TYPE", "Wanted", "negotiate", "path_segments"]
