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

Where the blocks live is the backend's business: ``howto.repo.Repo``, a ``dict``, or
any ``Mapping`` from CIDv1 strings to bytes.  Reading through an HTTP gateway only needs
a mapping that asks the gateway for single blocks (trustless gateway, ``format=raw``)::

    class GatewayBlocks(collections.abc.Mapping):
        def __init__(self, url):
            self.url = url
        def __getitem__(self, cid):
            request = urllib.request.Request(f"{self.url}/ipfs/{cid}?format=raw",
                                             headers={"Accept": "application/vnd.ipld.raw"})
            try:
                with urllib.request.urlopen(request) as response:
                    return response.read()
            except urllib.error.HTTPError as exc:
                raise KeyError(cid) from exc
        def __iter__(self):  # a gateway cannot list its blocks
            return iter(())
        def __len__(self):
            return 0

    ds = open_dataset(root, GatewayBlocks("http://127.0.0.1:8080"))

The store checks every block against its CID, whatever the backend, so a gateway need
not be trusted; a read-only mapping gives a read-only store, and only the blocks that
a read touches are fetched.

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
