"""UnixFS: files and directories as DAGs.

``importer`` builds kubo-identical DAGs (``hamt`` shards large directories), ``add`` imports
paths and ``remote`` fsspec URLs into a block store, ``resolver`` walks paths through
dag-pb, HAMT and DAG-CBOR nodes, ``tar`` streams a directory as a tar archive.  Imports
``formats`` and ``blocks``.
"""

from ..lazy import exports

__all__, __getattr__, __dir__ = exports(
    __name__,
    {
        "add": ["PROGRESS_MIN_BYTES", "STDIN", "add_paths", "check_paths"],
        "hamt": [
            "FANOUT",
            "MURMUR3_X64_64",
            "SHARD_THRESHOLD",
            "build_directory",
            "estimated_size",
            "name_hash",
            "shard_lookup_index",
            "shard_problem",
            "slot_of",
        ],
        "importer": [
            "Added",
            "DEFAULT_CHUNK",
            "Importer",
            "MAX_CHUNK",
            "MAX_LINKS",
            "Node",
            "Options",
            "parse_chunker",
            "walk",
        ],
        "remote": [
            "RemoteEntry",
            "list_tree",
            "name_of",
            "open_url",
            "stat_url",
            "tree_size",
            "walk_url",
        ],
        "resolver": [
            "Block",
            "BlockCache",
            "Entry",
            "HAMT_MAX_DEPTH",
            "MAX_WALK",
            "Resolver",
            "as_cid",
            "cbor_links",
            "decode_ipld",
        ],
        "tar": ["MAX_TAR_PATHS", "ClientLeft", "TarEntry", "UnsafeNameError", "entries", "stream"],
    },
)
