"""howto: content-addressed scientific data, verified.

The helpers a notebook needs: ``get_intake_catalog`` for the EUREC4A catalogs (classic,
newest IPFS version, or one pinned CID), ``add`` for kubo-identical CIDs, ``serve`` for a
loopback gateway, and ``CAStore``, the teaching store of the book's third chapter.
"""

from importlib.metadata import PackageNotFoundError, version

from .add import add
from .castore import CAStore
from .catalog import get_intake_catalog, get_latest_catalog_cid, list_catalog_versions
from .errors import (
    CatalogError,
    GatewayError,
    HashPolicyError,
    HowtoError,
    IntegrityError,
    NotFoundError,
)


def serve(*args: object, **kwargs: object):
    """Run a gateway on 127.0.0.1 for a ``with`` block (see ``howto.gateway.serve``).

    Imported on first use, so ``import howto`` stays quick for the command line.
    """
    from .gateway import serve as _serve

    return _serve(*args, **kwargs)


try:
    __version__ = version("howto")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0"

__all__ = [
    "CAStore",
    "CatalogError",
    "GatewayError",
    "HashPolicyError",
    "HowtoError",
    "IntegrityError",
    "NotFoundError",
    "__version__",
    "add",
    "get_intake_catalog",
    "get_latest_catalog_cid",
    "list_catalog_versions",
    "serve",
]
