"""dag-pb and UnixFS encoding: known blocks and round trips."""

from howto.formats.cids import DAG_PB, cid_bytes, to_cid
from howto.formats.dagpb import (
    PBLink,
    PBNode,
    UnixFSData,
    UnixFSType,
    decode_node,
    decode_unixfs,
    encode_node,
    encode_unixfs,
    read_varint,
    varint,
)


def cid_of(node: PBNode) -> str:
    return str(to_cid(cid_bytes(encode_node(node), DAG_PB, 0)))


def test_empty_directory_matches_kubo():
    node = PBNode(data=encode_unixfs(UnixFSData(UnixFSType.DIRECTORY)))
    assert encode_node(node) == bytes.fromhex("0a020801")
    assert cid_of(node) == "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"


def test_empty_file_matches_kubo():
    node = PBNode(data=encode_unixfs(UnixFSData(UnixFSType.FILE, filesize=0)))
    assert encode_node(node) == bytes.fromhex("0a0408021800")
    assert cid_of(node) == "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"


def test_links_are_written_before_data_with_empty_names():
    node = PBNode([PBLink(b"\x12\x20" + bytes(32), "", 7)], b"\x08\x02")
    raw = encode_node(node)
    assert raw[0] == 0x12  # field 2 (Links) comes first
    assert b"\x12\x00" in raw  # the empty Name is written, as kubo does
    assert decode_node(raw) == node


def test_unixfs_round_trip_keeps_unpacked_blocksizes():
    meta = UnixFSData(UnixFSType.FILE, filesize=300, blocksizes=[200, 100])
    raw = encode_unixfs(meta)
    assert (
        raw
        == bytes.fromhex("0802") + bytes.fromhex("18ac02") + bytes.fromhex("20c801") + b"\x20\x64"
    )
    assert decode_unixfs(raw) == meta


def test_varint_round_trip():
    for n in (0, 1, 127, 128, 300, 2**35 + 5):
        assert read_varint(varint(n), 0) == (n, len(varint(n)))
