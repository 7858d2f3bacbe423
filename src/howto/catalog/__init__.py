"""Catalogs: intake catalogs as data.

``versions`` is the index of pinned versions, ``build`` makes and pins content-addressed
versions of a catalog (``download`` fetches its remote data when asked), ``parse`` reads
catalog YAML as bounded data, ``policy`` judges each entry (verified, location, refused),
``pinned`` opens a tree safely.  The catalog files themselves ship as ``howto.catalogs``.
Imports every layer below ``gateway``.
"""

from ..lazy import exports

__all__, __getattr__, __dir__ = exports(
    __name__,
    {
        "build": [
            "Built",
            "Dataset",
            "PROFILE",
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
        "check": ["Report", "Row", "VERDICTS"],
        "download": [
            "Fetched",
            "MAX_ZARR_KEYS",
            "download_file",
            "download_zarr",
            "is_fetchable_url",
        ],
        "parse": ["CatalogLoader", "MARKS", "MAX_NUMBER_DIGITS", "structure_marks"],
        "pinned": [
            "CatalogFile",
            "ClosedEntry",
            "MAX_ENTRIES",
            "MAX_FILES",
            "MAX_TOTAL_BYTES",
            "MAX_TOTAL_ENTRIES",
            "MAX_TOTAL_MARKS",
            "Reader",
            "ReferenceEntry",
            "SubcatalogEntry",
            "Tree",
            "TreeBudget",
            "build_catalog",
            "load_tree",
            "open_pinned_catalog",
            "read_catalog_file",
        ],
        "policy": [
            "CATALOG_DIR_FORMS",
            "DRIVERS",
            "ENGINES",
            "Judged",
            "LOCATION",
            "LOCATIONS",
            "MAX_REFERENCE_BYTES",
            "REFUSED",
            "STORAGE_OPTIONS",
            "SUBCATALOG",
            "VERIFIED",
            "XARRAY_OPTIONS",
            "cid_text",
            "content_address",
            "entry_error",
            "judge",
            "plain",
            "protocol",
            "reference_targets",
            "short",
            "storage_reason",
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
