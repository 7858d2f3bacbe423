"""Catalogs: intake catalogs as data.

``versions`` is the index of pinned versions, ``build`` makes and pins content-addressed
versions of a catalog, ``parse`` reads catalog YAML as bounded data, ``policy`` judges each
entry (verified, location, refused), ``pinned`` opens a tree safely.  The catalog files
themselves ship as ``howto.catalogs``.  Imports every layer below ``gateway``.
"""

from ..lazy import exports

__all__, __getattr__, __dir__ = exports(
    __name__,
    {
        "build": [
            "PROFILE",
            "Dataset",
            "build_ipfs_catalog",
            "datasets",
            "pin_version",
            "stage_ipfs_tree",
            "walk_catalog",
        ],
        "check": ["Report", "Row", "check"],
        "parse": ["CatalogLoader", "load_catalog_text", "structure_marks"],
        "pinned": [
            "MAX_CATALOG_BYTES",
            "MAX_DEPTH",
            "MAX_ENTRIES",
            "MAX_FILES",
            "MAX_TOTAL_BYTES",
            "MAX_TOTAL_ENTRIES",
            "MAX_TOTAL_MARKS",
            "CatalogFile",
            "ClosedEntry",
            "ReferenceEntry",
            "SubcatalogEntry",
            "Tree",
            "build_catalog",
            "load_tree",
            "open_pinned_catalog",
        ],
        "policy": ["Judged", "content_address", "judge", "reference_targets"],
        "versions": [
            "ROOT_NAME",
            "Version",
            "classic_catalog_path",
            "get_latest_catalog_cid",
            "list_catalog_versions",
        ],
    },
)
