"""Names: IPNS keys, signed records, their validation and resolution (``ipns``), and where
keys and records are kept (``storage``: records with the repository, keys on this machine).
Imports ``formats`` and ``blocks``.
"""

from ..lazy import exports

__all__, __getattr__, __dir__ = exports(
    __name__,
    {
        "ipns": [
            "DEFAULT_LIFETIME",
            "MAX_RECORD_BYTES",
            "RECORD_TYPE",
            "KeyStore",
            "Record",
            "RecordStore",
            "best",
            "create_record",
            "inspect_record",
            "name_of",
            "name_text",
            "parse_duration",
            "parse_name",
            "resolve",
            "verify_record",
        ],
        "storage": ["Shelf", "keys_location", "records_location"],
    },
)
