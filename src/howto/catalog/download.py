"""Downloading the data of location-addressed catalog entries, resumably and checked.

``howto catalog build --fetch-remote`` turns ``https://`` entries (a netCDF file, a zarr
store served as plain files) into local copies before adding them.  Each file is first
received into ``NAME.part``; a later run continues it with a ``Range`` request (guarded by
``If-Range`` with the validator the server gave), and only a complete, checked file is
renamed to ``NAME``.  A complete file in the download folder is used again as it is:
delete the folder to fetch afresh.

What "checked" means, per file:

- **size**, always: the server must say how long the file is (``Content-Length``, or the
  total of ``Content-Range``), and exactly that many bytes must arrive;
- **a digest, when the server sends one**: ``Repr-Digest`` (RFC 9530) and ``Digest``
  (RFC 3230) with ``sha-256``, ``sha-512`` or ``md5``; ``Content-MD5`` (RFC 1864) when the
  reply holds the whole file; and an ``ETag`` that is a strong 32-digit hexadecimal value,
  taken as the file's MD5, as S3 and servers like it send for files uploaded whole.  HTTP
  does not promise that an ETag is a digest: a server using such ETags for something else
  makes the download fail with a message naming the header, never succeed silently.

A zarr store over plain HTTP cannot be listed, so it is read from its consolidated
metadata (``.zmetadata``, zarr format 2): the metadata keys it names, and every chunk key
the arrays' shapes and chunks imply.  A chunk the server does not have (404) is one that
was never written (zarr reads it as fill values), so it is left out.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import itertools
import json
import math
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from ..errors import CatalogError

__all__ = ["MAX_ZARR_KEYS", "Fetched", "download_file", "download_zarr", "is_fetchable_url"]

#: Bytes read from a reply at a time.
PIECE = 1 << 20
#: The most keys a zarr store's metadata may imply (a hostile ``.zmetadata`` could claim
#: an array of 10^18 chunks).
MAX_ZARR_KEYS = 1 << 20
#: Seconds to wait for a server before giving up.
TIMEOUT = 60.0

_HEX_MD5 = re.compile(r"[0-9a-fA-F]{32}")
_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")
_UNSATISFIED = re.compile(r"bytes \*/(\d+)")
_ALGORITHMS = {"sha-256": "sha256", "sha-512": "sha512", "md5": "md5"}


@dataclass(frozen=True)
class Fetched:
    """A downloaded file or store: where it is, its size in bytes, and what was checked
    ("size", "size, sha256 from Repr-Digest", …; "kept from an earlier run")."""

    path: Path
    size: int
    checked: str


def is_fetchable_url(url: str) -> bool:
    """Whether ``url`` is plain HTTP(S), which ``--fetch-remote`` can download."""
    return url.startswith(("https://", "http://"))


def _request(url: str, headers: dict[str, str]) -> urllib.request.Request:
    return urllib.request.Request(url, headers={"Accept-Encoding": "identity", **headers})


def _digests(headers: object, whole_body: bool) -> list[tuple[str, str, str]]:
    """The digests of the whole file that the reply's headers give, each as (hashlib
    name, expected hex digest, the header it came from)."""
    found: list[tuple[str, str, str]] = []

    def decoded(value: str, header: str) -> str:
        try:
            return base64.b64decode(value, validate=True).hex()
        except ValueError:
            raise CatalogError(f"{header}: {value!r} is not base64") from None

    for header in ("Repr-Digest", "Digest"):
        for item in (headers.get(header) or "").split(","):
            name, _, value = item.strip().partition("=")
            algorithm = _ALGORITHMS.get(name.strip().lower())
            value = value.strip().strip(":")
            if algorithm and value:
                found.append((algorithm, decoded(value, header), header))
    content_md5 = headers.get("Content-MD5")
    if whole_body and content_md5:
        found.append(("md5", decoded(content_md5.strip(), "Content-MD5"), "Content-MD5"))
    etag = (headers.get("ETag") or "").strip()
    if not etag.startswith("W/") and _HEX_MD5.fullmatch(etag.strip('"')):
        found.append(("md5", etag.strip('"').lower(), "ETag"))
    return found


def _verify(path: Path, size: int, digests: list[tuple[str, str, str]], url: str) -> str:
    """Check the complete file against its size and digests; say what was checked."""
    actual = path.stat().st_size
    if actual < size:
        raise CatalogError(
            f"{url}: the download broke off after {actual} of {size} bytes; "
            "run again to continue it"
        )
    if actual > size:
        path.unlink()  # nothing to continue from
        raise CatalogError(f"{url}: received {actual} bytes, the server announced {size}")
    if not digests:
        return "size"
    hashes = {name: hashlib.new(name) for name, _, _ in digests}
    with open(path, "rb") as f:
        while piece := f.read(PIECE):
            for h in hashes.values():
                h.update(piece)
    for name, expected, header in digests:
        if hashes[name].hexdigest() != expected:
            path.unlink()  # complete and wrong: nothing to continue from
            raise CatalogError(
                f"{url}: the {name} of the {size} bytes received does not match the "
                f"server's {header} ({expected})"
            )
    return "size, " + ", ".join(f"{name} from {header}" for name, _, header in digests)


def _finish(
    part: Path, target: Path, size: int, digests: list[tuple[str, str, str]], url: str
) -> Fetched:
    """Check the received ``part``; only then does it become ``target``."""
    note = part.with_name(part.name + ".json")
    try:
        checked = _verify(part, size, digests, url)
    finally:
        if not part.exists():  # dropped as wrong: its validator goes too
            note.unlink(missing_ok=True)
    part.replace(target)
    note.unlink(missing_ok=True)
    return Fetched(target, size, checked)


def _validator(headers: object) -> str | None:
    """What ``If-Range`` may send back: a strong ETag, else the Last-Modified date."""
    etag = (headers.get("ETag") or "").strip()
    if etag and not etag.startswith("W/"):
        return etag
    return headers.get("Last-Modified")


def download_file(
    url: str, target: Path, progress: bool = True, missing_ok: bool = False
) -> Fetched | None:
    """``url`` into ``target``, continuing ``target.part`` if an earlier run left one.
    ``progress`` shows a bar when standard error is a terminal.

    ``missing_ok``: a 404 gives ``None`` instead of an error (zarr chunks never written).
    """
    if target.exists():
        return Fetched(target, target.stat().st_size, "kept from an earlier run")
    part = target.with_name(target.name + ".part")
    note = target.with_name(target.name + ".part.json")
    target.parent.mkdir(parents=True, exist_ok=True)
    have = part.stat().st_size if part.exists() else 0
    headers: dict[str, str] = {}
    if have:
        headers["Range"] = f"bytes={have}-"
        if note.exists():
            headers["If-Range"] = json.loads(note.read_text()).get("validator") or ""
            if not headers["If-Range"]:
                del headers["If-Range"]
    try:
        reply = urllib.request.urlopen(_request(url, headers), timeout=TIMEOUT)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 404 and missing_ok:
            return None
        if exc.code == 416 and have:
            total = _UNSATISFIED.fullmatch(exc.headers.get("Content-Range") or "")
            if total and int(total.group(1)) == have:  # the earlier run received it all
                digests = _digests(exc.headers, whole_body=False)
                return _finish(part, target, have, digests, url)
            part.unlink()  # the file changed under us: start again
            return download_file(url, target, progress, missing_ok)
        raise CatalogError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CatalogError(f"{url}: cannot download: {reason}") from None
    with reply:
        if reply.status == 206:
            match = _RANGE.fullmatch(reply.headers.get("Content-Range") or "")
            if not match or int(match.group(1)) != have:
                raise CatalogError(f"{url}: the server answered a different range than asked")
            size, mode, start = int(match.group(3)), "ab", have
        else:  # 200: the whole file (the server ignored the range, or it changed)
            length = reply.headers.get("Content-Length")
            if length is None or not length.isdigit():
                raise CatalogError(f"{url}: the server gives no Content-Length to check it by")
            size, mode, start = int(length), "wb", 0
        digests = _digests(reply.headers, whole_body=reply.status == 200)
        validator = _validator(reply.headers)
        note.write_text(json.dumps({"url": url, "validator": validator}))
        with (
            open(part, mode) as out,
            tqdm(
                total=size,
                initial=start,
                unit="B",
                unit_scale=True,
                desc=target.name,
                disable=None if progress else True,  # a bar only on a terminal
                leave=False,
            ) as bar,
        ):
            try:
                while piece := reply.read(PIECE):
                    out.write(piece)
                    bar.update(len(piece))
            except (http.client.HTTPException, OSError):
                pass  # what arrived is kept: the size check below says how much is missing
    return _finish(part, target, size, digests, url)


def _safe_key(key: str, url: str) -> PurePosixPath:
    path = PurePosixPath(key)
    if not key or path.is_absolute() or ".." in path.parts or "\\" in key:
        raise CatalogError(f"{url}/.zmetadata: refused key {key!r}")
    return path


def _chunk_keys(prefix: str, meta: dict, url: str) -> list[str]:
    """Every chunk key of one zarr v2 array."""
    try:
        shape, chunks = list(meta["shape"]), list(meta["chunks"])
        separator = meta.get("dimension_separator") or "."
        counts = [math.ceil(n / c) if c else 0 for n, c in zip(shape, chunks, strict=True)]
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        raise CatalogError(f"{url}/{prefix}.zarray: not zarr v2 array metadata") from None
    if math.prod(counts) > MAX_ZARR_KEYS:
        raise CatalogError(f"{url}/{prefix}.zarray: more than {MAX_ZARR_KEYS} chunks")
    if not counts:  # a zero-dimensional array has one chunk, "0"
        return [f"{prefix}0"]
    return [
        prefix + separator.join(map(str, index))
        for index in itertools.product(*(range(n) for n in counts))
    ]


def download_zarr(url: str, target: Path, progress: bool = True) -> Fetched:
    """A zarr v2 store served as plain files, listed from its ``.zmetadata``, into the
    folder ``target`` (built in ``target.part`` first, every key checked as a file)."""
    if target.exists():
        size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
        return Fetched(target, size, "kept from an earlier run")
    url = url.rstrip("/")
    part = target.with_name(target.name + ".part")
    consolidated = download_file(f"{url}/.zmetadata", part / ".zmetadata", False, True)
    if consolidated is None:
        raise CatalogError(f"{url}: no .zmetadata, so the store cannot be listed over HTTP")
    try:
        metadata = json.loads(consolidated.path.read_bytes())["metadata"]
        keys = list(metadata)
    except (ValueError, KeyError, TypeError):
        raise CatalogError(f"{url}/.zmetadata: not consolidated zarr v2 metadata") from None
    for key in list(metadata):
        if key.endswith(".zarray"):
            keys += _chunk_keys(key[: -len(".zarray")], metadata[key], url)
    size, checks, absent = consolidated.size, {consolidated.checked}, 0
    with tqdm(
        total=len(keys),
        unit="key",
        desc=target.name,
        disable=None if progress else True,
        leave=False,
    ) as bar:
        for key in keys:
            got = download_file(f"{url}/{key}", part / _safe_key(key, url), False, True)
            if got is None:
                if key.endswith((".zarray", ".zgroup", ".zattrs")):
                    raise CatalogError(f"{url}/{key}: named in .zmetadata, but not found")
                absent += 1
            else:
                size += got.size
                checks.add(got.checked)
            bar.update(1)
    part.replace(target)
    checked = "; ".join(sorted(checks))
    if absent:
        checked += f"; {absent} chunks never written"
    return Fetched(target, size, checked)
