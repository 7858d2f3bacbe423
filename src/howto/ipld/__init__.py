"""Zarr on IPLD: a content-addressed zarr store, CAR transfer, metadata-only edits.

``IPLDStore`` is a zarr-python 3 store, so xarray writes and reads it like any other::

    store = IPLDStore({})                       # or IPLDStore() for the local repository
    ds.to_zarr(store, zarr_format=2, consolidated=False)
    root = store.freeze()                       # the CID of the whole dataset
    ds2 = open_dataset(root, store.backend)

Each chunk is a raw block; the hierarchy with its metadata is DAG-CBOR in which the
JSON documents are inlined, so ``root/a/.zarray/shape`` is an IPLD path (``tree.py``
describes the layout and how large hierarchies are cut into blocks of at most 1 MiB).
``to_car()`` and ``import_car()`` move a dataset as one CARv1 file.

Where the blocks live is the backend's business: ``howto.repo.Repo``, a ``dict``, any
``Mapping`` from CIDv1 strings to bytes, or a block chain that reaches gateways.  Readers
elsewhere need none of this: with ``howto.fs.enable()`` (or after
``howto.get_intake_catalog``), one line reads a dataset through any gateway, each block
checked against its CID and only the blocks a read touches fetched::

    ds = xr.open_zarr(f"ipfs://{root}")

``concat``, ``merge``, ``update_attrs`` and ``rename`` make new datasets from frozen
ones by rewriting metadata only: the new root links the very same chunk blocks.
"""

from .codec import Link, decode, encode
from .ops import IncompatibleError, concat, merge, rename, update_attrs
from .store import IPLDStore, open_dataset, open_store
from .tree import MAX_BLOCK_SIZE

__all__ = [
    "MAX_BLOCK_SIZE",
    "IPLDStore",
    "IncompatibleError",
    "Link",
    "concat",
    "decode",
    "encode",
    "merge",
    "open_dataset",
    "open_store",
    "rename",
    "update_attrs",
]
