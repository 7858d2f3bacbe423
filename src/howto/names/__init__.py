"""Names: IPNS keys of every libp2p type (``keys``); signed records, their validation and
resolution (``ipns``); where keys and records are kept (``storage``: records with the
repository, keys on this machine).  Imports ``formats`` and ``blocks``.
"""

from ..lazy import exports

__all__, __getattr__, __dir__ = exports(
    __name__,
    {
        "ipns": [
            "DEFAULT_LIFETIME",
            "KeyStore",
            "MAX_DEPTH",
            "MAX_RECORD_BYTES",
            "RECORD_TYPE",
            "Record",
            "RecordStore",
            "Resolved",
            "best",
            "create_record",
            "inspect_record",
            "name_of",
            "name_text",
            "parse_duration",
            "parse_name",
            "resolve",
            "resolve_path",
            "verify_record",
        ],
        "keys": [
            "ECDSA",
            "ED25519",
            "IDENTITY",
            "KEY_TYPES",
            "MAX_INLINE_KEY",
            "MAX_NAME_KEY",
            "PrivateKey",
            "PublicKey",
            "RSA",
            "RSA_BITS",
            "SECP256K1",
            "SHA2_256",
            "decode_public_key",
            "key_for_name",
            "public_key",
            "sign",
        ],
        "storage": ["Shelf", "keys_location", "records_location"],
    },
)
