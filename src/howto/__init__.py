"""howto: content-addressed scientific data, verified.

The helpers a notebook needs: ``get_intake_catalog`` for the EUREC4A catalogs (classic,
newest IPFS version, or one version locked by its CID), ``add`` for kubo-identical CIDs,
``serve`` for a loopback gateway, and ``CAStore``, the teaching store of the book's third
chapter.

The package is built in layers, each a folder that imports only the ones below it:
``formats`` → ``blocks`` → ``unixfs``, ``names``, ``ipld`` → ``retrieval`` → ``gateway`` →
``catalog`` → the faces at the top (``fs``, ``cli``, this module).  ``README.md`` beside
this file maps them.  Names are imported on first use, so ``import howto`` stays quick.
"""

from .errors import (
    CatalogError,
    GatewayError,
    HashPolicyError,
    HowtoError,
    IntegrityError,
    NotFoundError,
    UnavailableError,
)
from .lazy import exports

_lazy, _getattr, __dir__ = exports(
    __name__,
    {
        "unixfs.add": ["add"],
        "castore": ["CAStore"],
        "intake_catalog": ["get_intake_catalog"],
        "catalog.versions": ["get_latest_catalog_cid", "list_catalog_versions"],
        "gateway.server": ["serve"],
    },
)


def __getattr__(name: str) -> object:
    """The lazily imported names, and ``__version__``, looked up in the installed metadata
    on first use (``importlib.metadata`` costs more to import than the rest of this file)."""
    if name != "__version__":
        return _getattr(name)
    from importlib.metadata import PackageNotFoundError, version

    try:
        value = version("howto")
    except PackageNotFoundError:  # running from a source tree without installing
        value = "0.0.0"
    globals()["__version__"] = value
    return value


__all__ = [
    "CatalogError",
    "GatewayError",
    "HashPolicyError",
    "HowtoError",
    "IntegrityError",
    "NotFoundError",
    "UnavailableError",
    "__version__",
    *_lazy,
]
