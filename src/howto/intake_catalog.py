"""``get_intake_catalog``: the catalog a notebook asks for, classic or locked by CID.

This is where the catalog layer meets the verified ``ipfs://`` file system: a catalog
locked by CID is parsed by ``howto.catalog.pinned`` from bytes that ``howto.fs`` has
checked.
"""

from __future__ import annotations

import functools

from multiformats import CID

from .catalog.versions import ROOT_NAME, classic_catalog_path, get_latest_catalog_cid
from .errors import CatalogError
from .formats.cids import parse_cid, to_cid, v1_str

__all__ = ["MAX_CID_TEXT", "get_intake_catalog"]


#: Longer ``use_ipfs`` text is refused before any parsing (a CID with a path is far shorter).
MAX_CID_TEXT = 512


def _catalog_cid(use_ipfs: bool | str) -> CID | None:
    if isinstance(use_ipfs, bool):
        return to_cid(get_latest_catalog_cid()) if use_ipfs else None
    if not isinstance(use_ipfs, str):
        raise TypeError(f"use_ipfs must be a bool or a CID string, not {type(use_ipfs).__name__}")
    if len(use_ipfs) > MAX_CID_TEXT:
        raise ValueError(f"use_ipfs is {len(use_ipfs)} characters long: not a CID")
    if not use_ipfs.strip():
        raise ValueError(f"use_ipfs={use_ipfs!r} is not a CID")
    cid, path = parse_cid(use_ipfs)
    if path:
        raise ValueError(f"use_ipfs={use_ipfs!r}: give the catalog's root CID without a path")
    return cid


def get_intake_catalog(
    use_ipfs: bool | str = False, *, verified_only: bool = True, **kwargs: object
):
    """The EUREC4A-style intake catalog.

    ``False``: the classic catalog, read from local paths (``kwargs`` go to
    ``intake.open_catalog``).  ``True``: the newest IPFS version in the index.  A CID (``bafy…``,
    ``Qm…``, ``ipfs://…``, ``/ipfs/…``): exactly that version.  IPFS catalogs are read
    through the verified ``ipfs://`` file system and treated as data, not as a program,
    entry by entry (see ``howto.catalog.policy``): content-addressed entries open and are
    verified; entries with templates, environment lookups or local paths stay listed but
    raise ``CatalogError`` when opened; location-addressed entries (``https://``, opendap,
    ``s3://``…) raise too, unless ``verified_only=False``, which opens them as intake
    would, unverified, marked ``metadata["howto"] == {"verified": False}``.
    """
    cid = _catalog_cid(use_ipfs)
    if cid is None:
        import intake

        return intake.open_catalog(str(classic_catalog_path()), **kwargs)
    if not isinstance(verified_only, bool):
        raise TypeError(f"verified_only must be True or False, not {verified_only!r}")
    if kwargs:
        raise TypeError(f"a locked catalog takes no options, got {sorted(kwargs)}")
    from . import fs
    from .catalog.pinned import open_pinned_catalog

    fs.enable()
    # fsspec reuses file system instances: drop them, so that the gateway timeout set now
    # (HOWTO_GATEWAY_TIMEOUT) applies rather than the one of an earlier call.
    fs.VerifiedIPFSFileSystem.clear_instance_cache()
    files = fs.filesystem()
    return open_pinned_catalog(
        f"ipfs://{v1_str(cid)}/{ROOT_NAME}",
        functools.partial(_read_catalog_file, files),
        verified_only=verified_only,
    )


@functools.lru_cache(maxsize=64)
def _root_cid(text: str) -> CID:
    """The CID a catalog's files are under: every file of a tree names the same one."""
    return parse_cid(text)[0]


def _read_catalog_file(files: object, url: str, limit: int) -> bytes:
    """A catalog file's verified bytes; its size is checked before it is read.

    Read with the file system's own reader, in this thread: a tree of a thousand small
    files would otherwise spend most of its time handing each request to fsspec's loop.
    """
    reader = files.reader()
    head, _, path = url.removeprefix("ipfs://").partition("/")
    cid = _root_cid(head)
    _, size, _ = reader.stat(cid, path)
    if size > limit:
        raise CatalogError(f"{url}: {size} bytes, more than a catalog may have")
    return b"".join(reader.read(cid, path))
