"""Catalogs: intake catalogs as data.

``versions`` is the index of pinned versions, ``build`` makes and pins content-addressed
versions of a catalog (``download`` fetches its remote data when asked), ``pinned`` opens
one safely.  The catalog files themselves ship as
``howto.catalogs``.  Imports every layer below ``gateway``.
"""

from ..lazy import exports

__all__, __getattr__, __dir__ = exports(
    __name__,
    {
        "build": [
            "PROFILE",
            "Built",
            "Dataset",
            "Totals",
            "build_ipfs_catalog",
            "convert_catalog",
            "convert_tree",
            "datasets",
            "pin_version",
            "stage_ipfs_tree",
            "url_kind",
            "walk_catalog",
        ],
        "download": ["Fetched", "download_file", "download_zarr", "is_fetchable_url"],
        "pinned": [
            "MAX_CATALOG_BYTES",
            "MAX_DEPTH",
            "MAX_ENTRIES",
            "MAX_FILES",
            "SubcatalogEntry",
            "build_catalog",
            "check_catalog",
            "content_address",
            "load_catalog_text",
            "load_tree",
            "open_pinned_catalog",
        ],
        "versions": [
            "ROOT_NAME",
            "Version",
            "classic_catalog_path",
            "get_latest_catalog_cid",
            "list_catalog_versions",
        ],
    },
)
