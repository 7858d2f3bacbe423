"""Formats: the bytes of content addressing, with no I/O of their own.

CIDs and the hash policy (``cids``), dag-pb nodes and UnixFS data (``dagpb``), DAG-JSON
(``dagjson``) and CAR files (``car``).  Imports nothing of howto but ``howto.errors``.
"""

from ..lazy import exports

__all__, __getattr__, __dir__ = exports(
    __name__,
    {
        "car": [
            "MAX_HEADER_SIZE",
            "MAX_SECTION_SIZE",
            "CARError",
            "cid_length",
            "encode_header",
            "encode_section",
            "section_head",
            "read_car",
            "read_car_raw",
            "write_car",
        ],
        "cids": [
            "RAW_CID_PREFIX",
            "DAG_CBOR",
            "DAG_PB",
            "IDENTITY",
            "MAX_CID_TEXT",
            "MAX_DIGEST",
            "MAX_IDENTITY",
            "MAX_PATH_TEXT",
            "MIN_DIGEST",
            "RAW",
            "base32",
            "check_cid",
            "check_multihash",
            "cid_bytes",
            "cid_text",
            "inline_data",
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
