"""The rule for one catalog entry reached by CID: verified, a location, or refused.

A CID promises exactly the bytes it names.  intake, given catalog YAML, would also render
Jinja templates (which can run code and read the environment), import drivers by dotted
name and open whatever URL an entry names.  ``judge`` looks at one entry as plain data and
says what opening it would reach:

- **verified**: every byte comes from ``ipfs://<cid>[/path]``, or from a
  ``{{ CATALOG_DIR }}`` path that stays under the catalog's root CID, and is checked
  against its CID as it is read;
- **location**: a server or bucket (``https://``, opendap, ``s3://``, ``simplecache::``,
  kerchunk references to such places) whose bytes nobody can check; opened only when
  the user passes ``verified_only=False``;
- **refused**, either way: templates other than a leading ``{{ CATALOG_DIR }}``, local
  files (``file://``, plain paths), drivers and arguments that would import code, read
  credentials or redirect reads.

Keys that howto never hands to intake (``parameters``, ``plugins``, ``auth: null``, unknown
entry keys) are ignored.  Nothing here reads a file or opens a connection.
"""

from __future__ import annotations

import base64
import functools
import posixpath
from dataclasses import dataclass, field

from ..errors import CatalogError
from ..formats.cids import MAX_CID_TEXT, MAX_PATH_TEXT, base32, check_cid, parse_cid
from ..formats.dagpb import read_varint

VERIFIED = "verified"
LOCATION = "location"
REFUSED = "refused"

TEMPLATE_MARKS = ("{{", "{%", "{#")
CATALOG_DIR_FORMS = ("{{ CATALOG_DIR }}", "{{CATALOG_DIR}}")

SUBCATALOG = "yaml_file_cat"
#: Accepted driver names → the name handed to intake (its registry, never an import).
DRIVERS = {
    "zarr": "zarr",
    "intake_xarray.xzarr.ZarrSource": "zarr",
    "netcdf": "netcdf",
    "intake_xarray.netcdf.NetCDFSource": "netcdf",
    "opendap": "opendap",
    "intake_xarray.opendap.OpenDapSource": "opendap",
    SUBCATALOG: SUBCATALOG,
    "intake.catalog.local.YAMLFileCatalog": SUBCATALOG,
}
#: xarray options an entry may set: decoding choices, none of which names a resource.
XARRAY_OPTIONS = {
    "chunks",
    "consolidated",
    "decode_cf",
    "decode_coords",
    "decode_timedelta",
    "decode_times",
    "drop_variables",
    "engine",
    "group",
    "mask_and_scale",
    "use_cftime",
    "zarr_format",
}
ENGINES = {"h5netcdf", "netcdf4", "pydap", "scipy", "zarr"}
#: Protocols whose bytes come from a place, not a CID.
LOCATIONS = {"http", "https", "s3", "s3a", "gs", "gcs", "az", "abfs", "abfss"}
#: Keys of a kerchunk ``storage_options`` that may stay when the references are verified.
REFERENCE_OPTIONS = {"fo", "remote_protocol", "target_protocol"}
#: ``storage_options`` a location entry may pass to fsspec: which server, anonymous or
#: not.  Not credentials files, tokens or caches (a cache can write to any folder).
STORAGE_OPTIONS = {"anon", "requester_pays", "client_kwargs", "endpoint_url", "use_ssl"}
CLIENT_OPTIONS = {"endpoint_url", "region_name"}


@dataclass(frozen=True)
class Judged:
    """What one entry is and what opening it would reach.

    ``args`` are the arguments to hand to intake (``urlpath``/``path`` resolved to
    ``ipfs://`` for verified entries, as written for locations); ``references`` is the
    ``ipfs://`` URL of a kerchunk reference file whose targets are checked when opened.
    """

    name: str
    verdict: str
    reason: str = ""
    driver: str = ""
    args: dict = field(default_factory=dict)
    description: str = ""
    metadata: dict = field(default_factory=dict)
    url: str = ""
    references: str = ""

    @property
    def is_catalog(self) -> bool:
        return self.driver == SUBCATALOG


def short(value: object) -> str:
    """``repr`` cut to 80 characters, for one-line messages."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def plain(value: object) -> str:
    """Why ``value`` is not plain, template-free data ('' when it is)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if any(mark in item for mark in TEMPLATE_MARKS):
                return f"templates are not allowed: {short(item)}"
        elif isinstance(item, dict):
            for key, inner in item.items():
                if not isinstance(key, str):
                    return f"keys must be strings, not {short(key)}"
                stack += [key, inner]
        elif isinstance(item, list):
            stack += item
        elif item is not None and not isinstance(item, bool | int | float):
            return f"{type(item).__name__} values are not allowed"
    return ""


def content_address(url: object, folder: str) -> str:
    """The ``ipfs://`` URL that ``url`` names, or ``CatalogError`` with the reason.

    ``folder`` is ``ipfs://<root>/<dir>`` of the catalog file; a ``{{ CATALOG_DIR }}``
    prefix stands for it, and the result must stay under the same root CID.
    """
    if not isinstance(url, str):
        raise CatalogError(f"needs one URL as a string, not {short(url)}")
    for form in CATALOG_DIR_FORMS:
        if url.startswith(form):
            rest = url[len(form) :]
            if rest and not rest.startswith("/"):  # intake would read "<dir>x", not "<dir>/x"
                raise CatalogError(f"{short(url)}: {form} must be followed by '/' or nothing")
            root, _, inside = folder.removeprefix("ipfs://").partition("/")
            joined = posixpath.normpath(posixpath.join(inside, rest.lstrip("/")))
            if joined == ".." or joined.startswith("../"):
                raise CatalogError(f"{short(url)} leaves the catalog's root CID")
            url = f"ipfs://{root}" + ("" if joined == "." else f"/{joined}")
            break
    if reason := plain(url):
        raise CatalogError(reason)
    if not url.startswith("ipfs://"):
        raise CatalogError(f"{short(url)} is not content-addressed")
    head, _, path = url.removeprefix("ipfs://").partition("/")
    if len(path) > MAX_PATH_TEXT:
        raise CatalogError(f"the path in {short(url)} is longer than {MAX_PATH_TEXT} characters")
    try:
        cid = cid_text(head)
    except ValueError as exc:
        raise CatalogError(f"not a CID: {short(url)} ({exc})") from None
    path = path.rstrip("/")
    segments = path.split("/") if path else []
    if any(s in ("", ".", "..") for s in segments):
        raise CatalogError(f"{short(url)} has relative or empty path segments")
    return f"ipfs://{cid}" + (f"/{path}" if path else "")


_BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_BASE58_DIGITS = {c: i for i, c in enumerate(_BASE58)}
_BASE32 = set("abcdefghijklmnopqrstuvwxyz234567")


#: Codecs of the blocks a catalog's data can be in: dag-pb, raw, dag-cbor, dag-json.
_CODECS = {0x70, 0x55, 0x71, 0x0129}


def _check_v1(raw: bytes) -> None:
    """Version 1, a data codec, and a multihash exactly as long as it says."""
    try:
        version, pos = read_varint(raw, 0)
        codec, pos = read_varint(raw, pos)
        _, pos = read_varint(raw, pos)
        size, pos = read_varint(raw, pos)
    except (ValueError, IndexError):
        raise ValueError("truncated") from None
    if version != 1 or codec not in _CODECS or len(raw) - pos != size:
        raise ValueError("not a CIDv1 of a data codec with a whole multihash")


@functools.lru_cache(maxsize=4096)
def cid_text(text: str) -> str:
    """``text`` when it is a CID whose hash howto accepts, else ``ValueError``.

    The two forms catalogs use, CIDv0 (``Qm…``, base58) and CIDv1 in base32
    (``bafy…``), are decoded here with the standard library, a hundred times faster
    than a full parse; other multibases go through ``parse_cid``.  A catalog may name
    thousands of CIDs, and each is checked before the catalog opens.
    """
    if not text or len(text) > MAX_CID_TEXT:
        raise ValueError("empty or too long")
    if len(text) == 46 and text.startswith("Qm") and all(c in _BASE58_DIGITS for c in text):
        number = 0
        for c in text:
            number = number * 58 + _BASE58_DIGITS[c]
        raw = number.to_bytes(35, "big")
        if raw[:3] != b"\x00\x12\x20":
            raise ValueError("not a CIDv0")
        raw = raw[1:]
    elif text[0] == "b" and len(text) > 1 and set(text[1:]) <= _BASE32:
        body = text[1:].upper()
        try:
            raw = base64.b32decode(body + "=" * (-len(body) % 8))
        except ValueError as exc:
            raise ValueError(str(exc)) from None
        if base32(raw) != text[1:]:  # the one encoder, round trip
            raise ValueError("base32 with stray bits at its end")
        _check_v1(raw)
    else:
        return str(parse_cid(text)[0])
    check_cid(raw)
    return text


def protocol(url: str) -> str:
    """The scheme of ``url`` ('' for a plain path)."""
    scheme, sep, _ = url.partition("://")
    return scheme.lower() if sep and scheme.replace("+", "").isalnum() else ""


def _location(url: str) -> str:
    """Why ``url`` is not a location howto may open unverified ('' when it is one)."""
    scheme = protocol(url)
    if scheme in LOCATIONS:
        return ""
    if scheme == "file" or not scheme:
        return f"{short(url)} is a local path"
    return f"protocol {scheme!r} is not allowed"


def _check_xarray_args(args: dict, allowed: set[str]) -> str:
    """Why ``args`` would do more than choose how to decode ('' when they do not)."""
    extra = sorted(set(args) - allowed)
    if extra:
        return f"argument {extra[0]!r} is not allowed in a locked catalog"
    options = args.get("xarray_kwargs", {})
    if not isinstance(options, dict):
        return "'xarray_kwargs' must be a mapping"
    extra = sorted(set(options) - XARRAY_OPTIONS)
    if extra:
        return f"xarray option {extra[0]!r} is not allowed"
    for engine in (args.get("engine"), options.get("engine")):
        if engine is not None and engine not in ENGINES:
            return f"engine {short(engine)} is not allowed"
    return ""


def judge(name: object, source: object, folder: str) -> Judged:
    """The verdict on one entry of the catalog file in ``folder`` (``ipfs://<root>/<dir>``)."""
    label = str(name)
    if not isinstance(source, dict):
        return Judged(label, REFUSED, "an entry must be a mapping")
    description = source.get("description")
    description = description if isinstance(description, str) else ""
    metadata = source.get("metadata") or {}
    kept = {"description": description, "metadata": metadata}
    if reason := plain(kept) or (
        "" if isinstance(metadata, dict) else "'metadata' must be a mapping"
    ):
        return Judged(label, REFUSED, reason)
    driver = DRIVERS.get(source.get("driver")) if isinstance(source.get("driver"), str) else None
    if driver is None:
        return Judged(label, REFUSED, f"driver {short(source.get('driver'))} is not allowed")
    args = source.get("args", {})
    if not isinstance(args, dict):
        return Judged(label, REFUSED, "'args' must be a mapping", driver)
    if driver == SUBCATALOG:
        try:
            path = content_address(args.get("path"), folder)
        except CatalogError as exc:
            why = f"sub-catalog: {exc}"
            if isinstance(args.get("path"), str) and not _location(args["path"]):
                why += " (a sub-catalog at a location is never opened: intake would run it)"
            return Judged(label, REFUSED, why, driver)
        return Judged(label, VERIFIED, "", driver, {"path": path}, description, {}, path)
    args = {k: v for k, v in args.items() if not (k == "auth" and v is None)}
    if reason := plain(_without_catalog_dir(args)):
        return Judged(label, REFUSED, reason, driver)
    return _judge_data(label, driver, args, folder, description, metadata)


def _without_catalog_dir(args: dict) -> dict:
    """``args`` less the URLs that may start with ``{{ CATALOG_DIR }}`` (checked later)."""
    rest = {k: v for k, v in args.items() if k != "urlpath"}
    options = rest.get("storage_options")
    if isinstance(options, dict) and isinstance(options.get("fo"), str):
        if options["fo"].startswith(CATALOG_DIR_FORMS):
            rest["storage_options"] = {k: v for k, v in options.items() if k != "fo"}
    return rest


def _judge_data(
    name: str, driver: str, args: dict, folder: str, description: str, metadata: dict
) -> Judged:
    url = args.get("urlpath")
    if not isinstance(url, str):
        return Judged(name, REFUSED, f"needs one 'urlpath' string, not {short(url)}", driver)
    found = dict(driver=driver, description=description, metadata=metadata)
    if any(url.startswith(form) for form in CATALOG_DIR_FORMS) or url.startswith("ipfs://"):
        if driver == "opendap":
            return Judged(name, REFUSED, "opendap needs a server, not an ipfs:// URL", **found)
        if reason := _check_xarray_args(args, {"urlpath", "xarray_kwargs", *XARRAY_OPTIONS}):
            return Judged(name, REFUSED, reason, **found)
        try:
            resolved = content_address(url, folder)
        except CatalogError as exc:
            return Judged(name, REFUSED, str(exc), **found)
        return Judged(name, VERIFIED, "", args={**args, "urlpath": resolved}, url=resolved, **found)
    if reason := plain(url):
        return Judged(name, REFUSED, reason, **found)
    if url == "reference://" or url.startswith("reference::"):
        return _judge_references(name, args, folder, found)
    if "auth" in args:
        return Judged(name, REFUSED, "'auth' would read credentials", **found)
    target = url.removeprefix("simplecache::")
    if reason := _location(target):
        return Judged(name, REFUSED, reason, **found)
    allowed = {"urlpath", "xarray_kwargs", "storage_options", *XARRAY_OPTIONS}
    if reason := _check_xarray_args(args, allowed) or storage_reason(args.get("storage_options")):
        return Judged(name, REFUSED, reason, **found)
    kind = "opendap server" if driver == "opendap" else f"{protocol(target)} location"
    return Judged(name, LOCATION, kind, args=args, url=url, **found)


def storage_reason(options: object, nested: bool = False) -> str:
    """Why fsspec ``options`` would do more than pick a server ('' when they do not)."""
    if options is None:
        return ""
    if not isinstance(options, dict):
        return "'storage_options' must be a mapping"
    for key, value in options.items():
        if key in LOCATIONS and not nested:
            reason = storage_reason(value, nested=True)
        elif key == "client_kwargs":
            extra = sorted(set(value) - CLIENT_OPTIONS) if isinstance(value, dict) else [key]
            reason = f"client option {extra[0]!r} is not allowed" if extra else ""
        else:
            reason = "" if key in STORAGE_OPTIONS else f"storage option {key!r} is not allowed"
        if reason:
            return reason
    return ""


def _judge_references(name: str, args: dict, folder: str, found: dict) -> Judged:
    """A kerchunk entry: ``reference://`` with ``storage_options.fo``, or ``reference::URL``.

    Its targets are only known once the reference file is read, which happens when the
    entry is opened (``reference_targets``); here the file and the protocols are judged.
    """
    url = args["urlpath"]
    options = args.get("storage_options") or {}
    if not isinstance(options, dict):
        return Judged(name, REFUSED, "'storage_options' must be a mapping", **found)
    fo = url.removeprefix("reference::") if url != "reference://" else options.get("fo")
    if not isinstance(fo, str):
        return Judged(name, REFUSED, "kerchunk references need one 'fo' URL", **found)
    allowed = {"urlpath", "xarray_kwargs", "storage_options", *XARRAY_OPTIONS}
    if reason := _check_xarray_args(args, allowed):
        return Judged(name, REFUSED, reason, **found)
    protocols = {options.get("remote_protocol"), options.get("target_protocol")} - {None}
    for used in sorted(map(str, protocols - {"ipfs"} - LOCATIONS)):
        return Judged(name, REFUSED, f"kerchunk protocol {used!r} is not allowed", **found)
    for key, value in options.items():
        if key in ("remote_options", "target_options"):
            reason = storage_reason(value)
        else:
            reason = "" if key in REFERENCE_OPTIONS else f"storage option {key!r} is not allowed"
        if reason:
            return Judged(name, REFUSED, reason, **found)
    located = dict(args=args, url=fo, references=fo, **found)
    try:
        references = content_address(fo, folder)
    except CatalogError:
        if reason := _location(fo):
            return Judged(name, REFUSED, f"references {reason}", **found)
        return Judged(name, LOCATION, f"references at a {protocol(fo)} location", **located)
    if protocols - {"ipfs"} or set(options) - REFERENCE_OPTIONS:
        return Judged(name, LOCATION, "references read through a location", **located)
    return Judged(name, VERIFIED, "", args=args, url=references, references=references, **found)


def entry_error(where: str, judged: Judged) -> CatalogError:
    """The one-line error that opening a refused or unopened location entry raises."""
    prefix = f"{where}: entry {judged.name!r}"
    if judged.verdict == LOCATION:
        return CatalogError(
            f"{prefix}: {short(judged.url)} is not content-addressed ({judged.reason}); "
            "open the catalog with verified_only=False to read it unverified"
        )
    return CatalogError(f"{prefix}: {judged.reason}")


#: A kerchunk reference file larger than this is refused unread.
MAX_REFERENCE_BYTES = 64 << 20


def reference_targets(data: bytes, remote_protocol: str | None) -> tuple[dict, list[str]]:
    """A kerchunk JSON reference file's content and its targets that are locations.

    Targets are the URLs in ``[url, offset, size]`` references, after kerchunk's simple
    ``{{name}}`` templates are filled in; a path with no protocol is read with
    ``remote_protocol``.  A target that is neither ``ipfs://`` nor a location (a local
    file, another protocol) raises ``CatalogError``, and so does ``gen`` (URLs made by
    Jinja, which would run templates).
    """
    import json

    if len(data) > MAX_REFERENCE_BYTES:
        raise CatalogError(f"kerchunk references of {len(data)} bytes are too large")
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, ValueError):
        raise CatalogError("not a kerchunk JSON reference file") from None
    if not isinstance(doc, dict):
        raise CatalogError("not a kerchunk JSON reference file")
    if "gen" in doc:
        raise CatalogError("kerchunk 'gen' references would render Jinja templates")
    refs = doc.get("refs", doc) if doc.get("version") == 1 else doc
    templates = doc.get("templates") or {}
    if not isinstance(refs, dict) or not isinstance(templates, dict):
        raise CatalogError("not a kerchunk JSON reference file")
    outside: list[str] = []
    for value in refs.values():
        if not isinstance(value, list) or not value or not isinstance(value[0], str):
            continue
        url = value[0]
        for key, text in templates.items():
            url = url.replace("{{" + str(key) + "}}", str(text))
        if not protocol(url) and remote_protocol:
            url = f"{remote_protocol}://{url.lstrip('/')}"
        try:
            content_address(url, "ipfs://")
        except CatalogError:
            if reason := _location(url):
                raise CatalogError(f"kerchunk target {reason}") from None
            outside.append(url)
    return doc, outside


__all__ = [
    "CATALOG_DIR_FORMS",
    "DRIVERS",
    "ENGINES",
    "LOCATION",
    "LOCATIONS",
    "MAX_REFERENCE_BYTES",
    "REFUSED",
    "STORAGE_OPTIONS",
    "SUBCATALOG",
    "VERIFIED",
    "XARRAY_OPTIONS",
    "Judged",
    "cid_text",
    "content_address",
    "entry_error",
    "judge",
    "plain",
    "protocol",
    "reference_targets",
    "short",
    "storage_reason",
]
