"""Blocks: where blocks are kept, and the one protocol to get them.

``chain`` holds the block protocol (``BlockSource``, ``BlockStore``) and the ``Chain`` that asks
sources in order; ``repo`` is the local repository, ``bucket`` a repository in a cloud bucket,
``bundled`` the CAR files that ship with howto.  Imports ``formats``.
"""

from ..lazy import exports

__all__, __getattr__, __dir__ = exports(
    __name__,
    {
        "bucket": [
            "BucketRepo",
            "BucketTransaction",
            "StorageError",
            "is_url",
            "missing_bucket",
            "open_repo",
            "s3_storage_options",
            "storage_options_for",
            "translated",
        ],
        "bundled": ["bundled_car_files", "catalog_dir"],
        "chain": [
            "BlockSource",
            "BlockStore",
            "CarBlocks",
            "Chain",
            "CidLike",
            "MappingBlocks",
            "Putter",
            "combined_error",
            "unavailable",
        ],
        "repo": [
            "Repo",
            "STALE_SECONDS",
            "Transaction",
            "cache_repo_path",
            "default_repo_path",
            "stored_key",
        ],
    },
)
