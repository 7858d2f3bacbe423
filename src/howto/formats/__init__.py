"""Formats: the bytes of content addressing, with no I/O of their own.

CIDs and the hash policy (``cids``), dag-pb nodes and UnixFS data (``dagpb``), DAG-JSON
(``dagjson``) and CAR files (``car``).  Imports nothing of howto but ``howto.errors``.
"""

from ..lazy import exports

__all__, __getattr__, __dir__ = exports(
    __name__,
    {
        "car": [
            "CARError",
            "MAX_HEADER_SIZE",
            "MAX_SECTION_SIZE",
            "check_roots",
            "cid_length",
            "encode_header",
            "encode_section",
            "read_car",
            "read_car_raw",
            "section_head",
            "write_car",
        ],
        "cids": [
            "DAG_CBOR",
            "DAG_PB",
            "IDENTITY",
            "MAX_CID_TEXT",
            "MAX_DIGEST",
            "MAX_IDENTITY",
            "MAX_PATH_TEXT",
            "MIN_DIGEST",
            "RAW",
            "RAW_CID_PREFIX",
            "base32",
            "check_cid",
            "check_multihash",
            "cid_bytes",
            "cid_text",
            "inline_data",
            "is_identity",
            "multihash_of",
            "parse_cid",
            "raw_cid",
            "to_cid",
            "v1_str",
            "verify_block",
            "verify_multihash",
            "verify_raw",
        ],
        "dagjson": ["decode", "display"],
        "dagpb": [
            "PBLink",
            "PBNode",
            "UnixFSData",
            "UnixFSType",
            "decode_node",
            "decode_unixfs",
            "encode_node",
            "encode_unixfs",
            "read_varint",
            "varint",
        ],
    },
)
