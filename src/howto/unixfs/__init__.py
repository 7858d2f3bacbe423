"""UnixFS: files and directories as DAGs.

``importer`` builds kubo-identical DAGs (``hamt`` shards large directories), ``add`` imports
paths and ``remote`` fsspec URLs into a block store, ``resolver`` walks paths through
dag-pb, HAMT and DAG-CBOR nodes, ``tar`` streams a directory as a tar archive.  Imports
``formats`` and ``blocks``.
"""

from ..lazy import folder_exports

__getattr__, __dir__ = folder_exports(__name__)
