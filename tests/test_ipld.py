"""Zarr on IPLD: the store, the published ipldstore example, CAR transfer, metadata-only
operations and hierarchies split into blocks."""

from __future__ import annotations

import asyncio
import io
import json
import warnings

import dag_cbor
import numpy as np
import pytest
import xarray as xr
import zarr
from multiformats import CID, multihash
from zarr.core.buffer import default_buffer_prototype

from howto.blocks.repo import Repo
from howto.errors import IntegrityError, NotFoundError
from howto.formats.car import CARError, read_car, write_car
from howto.ipld import (
    MAX_BLOCK_SIZE,
    IncompatibleError,
    IPLDStore,
    Link,
    concat,
    decode,
    encode,
    merge,
    open_dataset,
    open_store,
    rename,
    update_attrs,
)
from howto.ipld.codec import DAG_CBOR, RAW

PUBLISHED_ROOT = "bafyreidn66mk3fktszrfwayonvpq6y3agtnb5e5o22ivof5tgikbxt7k6u"
PUBLISHED_CHUNK = "bafkreihc4ibtvz7btvualgou5mfbgwncwshmlovmoudgyml7x6crlhcu54"
PUBLISHED_CAR_SIZE = 356


class Recording(dict):
    """A dict backend that remembers which blocks were written and read."""

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.written: list[str] = []
        self.read: list[str] = []

    def __setitem__(self, key: str, value: bytes) -> None:
        self.written.append(key)
        super().__setitem__(key, value)

    def __getitem__(self, key: str) -> bytes:
        self.read.append(key)
        return super().__getitem__(key)

    def reset(self) -> None:
        self.written.clear()
        self.read.clear()


def codec_of(cid: str) -> int:
    # CIDv1 sha2-256 strings start "bafk" for raw and "bafy" for DAG-CBOR blocks;
    # decoding a CID object costs far more, which 100 000 chunks would feel.
    known = {"bafk": RAW, "bafy": DAG_CBOR}
    return known.get(cid[:4]) or Link(CID.decode(cid)).codec


def buf(data: bytes):
    return default_buffer_prototype().buffer.from_bytes(data)


def run(coro):
    return asyncio.run(coro)


async def collect(iterator) -> list[str]:
    return [item async for item in iterator]


def write(
    ds: xr.Dataset,
    backend,
    fmt: int = 2,
    encoding: dict | None = None,
    limit=MAX_BLOCK_SIZE,
    **kwargs,
) -> CID:
    """Write ``ds`` uncompressed (unless ``encoding`` says otherwise) and freeze it."""
    store = IPLDStore(backend, max_block_size=limit)
    enc = {name: {"compressors": None} for name in ds.variables}
    for name, extra in (encoding or {}).items():
        if name in enc:
            enc[name] = {**enc[name], **extra}
    kwargs.setdefault("consolidated", False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zarr's notes on v3 consolidated metadata
        ds.to_zarr(store, encoding=enc, zarr_format=fmt, **kwargs)
    return store.freeze()


def chunk_links(root: CID, backend) -> set[str]:
    """The raw blocks (chunks) the DAG under ``root`` links to."""
    store = open_store(root, backend)
    return {str(link) for link, _ in store.blocks() if link.codec == RAW}


# -- the codec ----------------------------------------------------------------------


LINK = Link(CID.decode(PUBLISHED_CHUNK))
SAMPLES = [
    None,
    True,
    False,
    0,
    23,
    24,
    255,
    256,
    65535,
    65536,
    2**32 - 1,
    2**32,
    2**64 - 1,
    -1,
    -24,
    -25,
    -(2**64),
    0.0,
    -0.0,
    1.5,
    1e300,
    "",
    "zarr",
    "größe ☃",
    b"",
    b"\x00\xff" * 40,
    [],
    [1, [2, [3]]],
    {"b": 1, "a": 2, "aa": 3, "": 4, "é": 5, "z" * 30: 6},
    {"shape": [3], "nested": {"link": LINK, "list": [LINK, None]}},
    "x" * 70000,
    list(range(300)),
]


@pytest.mark.parametrize("obj", SAMPLES, ids=range(len(SAMPLES)))
def test_codec_matches_dag_cbor(obj):
    def as_cid(value):  # what dag_cbor expects in place of a Link
        if isinstance(value, Link):
            return CID.decode(value.raw)
        if isinstance(value, dict):
            return {k: as_cid(v) for k, v in value.items()}
        if isinstance(value, list):
            return [as_cid(v) for v in value]
        return value

    reference = dag_cbor.encode(as_cid(obj))
    assert encode(obj) == reference
    assert decode(reference) == obj


@pytest.mark.parametrize(
    "obj, error",
    [
        (float("nan"), ValueError),
        (float("inf"), ValueError),
        ({1: "a"}, TypeError),
        (2**64, ValueError),
        (object(), TypeError),
    ],
)
def test_codec_refuses_what_dag_cbor_cannot_hold(obj, error):
    with pytest.raises(error):
        encode(obj)


@pytest.mark.parametrize(
    "data",
    [
        b"\x01\x02",  # trailing byte
        b"\x9f\xff",  # indefinite-length list
        b"\xc1\x00",  # tag 1 (date)
        b"\xf9\x3c\x00",  # half-precision float
        b"\xa1\x01\x02",  # integer map key
        b"\xd8\x2a\x41\x01",  # link without the 0x00 prefix
        b"\x62a",  # truncated string
    ],
)
def test_decode_rejects_non_dag_cbor(data):
    with pytest.raises(ValueError):
        decode(data)


def test_link_string_and_codec():
    cid = CID.decode(PUBLISHED_ROOT)
    link = Link(cid)
    assert str(link) == PUBLISHED_ROOT and link.codec == DAG_CBOR
    assert link.cid == cid and Link(link) == link and len({link, Link(bytes(cid))}) == 1
    assert codec_of(PUBLISHED_CHUNK) == RAW


# -- section 2: the published ipldstore example ------------------------------------


def published_root_object() -> dict:
    """The root object printed in ipldstore's README, with its chunk link."""
    return {
        ".zattrs": {},
        ".zgroup": {"zarr_format": 2},
        "a": {
            ".zarray": {
                "chunks": [3],
                "compressor": None,
                "dtype": "<i8",
                "fill_value": None,
                "filters": None,
                "order": "C",
                "shape": [3],
                "zarr_format": 2,
            },
            ".zattrs": {"_ARRAY_DIMENSIONS": ["a"]},
            "0": LINK,
        },
    }


def example_store(backend) -> IPLDStore:
    store = IPLDStore(backend)
    ds = xr.Dataset({"a": ("a", [1, 2, 3])})
    ds.to_zarr(store, encoding={"a": {"compressors": None}}, consolidated=False, zarr_format=2)
    return store


def test_published_object_has_the_published_cid():
    data = encode(published_root_object())
    assert str(Link.of(data, DAG_CBOR)) == PUBLISHED_ROOT
    assert data == dag_cbor.encode(dag_cbor.decode(data))


def test_todays_zarr_differs_from_the_published_example_by_one_key():
    backend = {}
    store = example_store(backend)
    root = store.freeze()
    today = decode(backend[str(root)])

    # The chunk is byte-identical: the same 24 bytes give the same CID.
    assert today["a"]["0"] == LINK
    assert np.frombuffer(backend[PUBLISHED_CHUNK], "<i8").tolist() == [1, 2, 3]

    # zarr-python 3 also writes the (default) dimension separator into .zarray; that
    # one extra key is the whole difference, and it changes the root CID and CAR size.
    expected = published_root_object()
    expected["a"][".zarray"]["dimension_separator"] = "."
    assert today == expected
    assert str(root) != PUBLISHED_ROOT
    extra = len(encode("dimension_separator")) + len(encode("."))
    assert len(store.to_car()) == PUBLISHED_CAR_SIZE + extra == 378


def test_published_example_reproduced():
    backend = {}
    store = example_store(backend)
    # Write .zarray as the zarr of 2022 did: without "dimension_separator", whose default
    # is "." anyway, so the array reads back the same.
    zarray = json.loads(run(store.get("a/.zarray", default_buffer_prototype())).to_bytes())
    del zarray["dimension_separator"]
    run(store.set("a/.zarray", buf(json.dumps(zarray, indent=4).encode())))

    root = store.freeze()
    assert str(root) == PUBLISHED_ROOT
    assert sorted(backend) == sorted([PUBLISHED_ROOT, PUBLISHED_CHUNK])
    assert decode(backend[PUBLISHED_ROOT]) == published_root_object()
    car = store.to_car()
    assert len(car) == PUBLISHED_CAR_SIZE

    # ...and it travels: a fresh backend gets the same root and the same values.
    new_backend = {}
    new_store = IPLDStore(new_backend)
    assert new_store.import_car(car) == root
    assert new_backend == backend
    assert new_store.freeze() == root
    ds = xr.open_zarr(new_store, consolidated=False)
    assert ds.a.values.tolist() == [1, 2, 3]


# -- section 1: the store -----------------------------------------------------------


def sample_dataset() -> xr.Dataset:
    rng = np.random.default_rng(1)
    return xr.Dataset(
        {
            "t": (("time", "x"), rng.normal(size=(40, 30)), {"units": "K"}),
            "flag": ("time", rng.integers(0, 5, 40).astype("int8")),
            "elevation": ((), 12.5, {"units": "m"}),
        },
        coords={"time": np.arange(40) * 60.0, "x": np.arange(30)},
        attrs={"title": "sample", "history": "made in a test"},
    )


@pytest.mark.parametrize("fmt", [2, 3])
def test_roundtrip_through_the_local_repository(fmt, howto_repo):
    ds = sample_dataset()
    store = IPLDStore()  # the local repository ($HOWTO_REPO in tests)
    ds.to_zarr(store, zarr_format=fmt, consolidated=False, encoding={"t": {"chunks": (10, 15)}})
    root = store.freeze()
    assert any(howto_repo.joinpath("blocks").rglob("*"))

    reopened = open_dataset(root)  # by CID alone, read-only
    xr.testing.assert_identical(reopened.load(), ds)
    with pytest.raises(ValueError, match="read-only"):
        run(open_store(root).set("zarr.json", buf(b"{}")))
    # chunks are raw blocks, the hierarchy is one DAG-CBOR block (it is small)
    blocks = list(open_store(root).blocks())
    repo = Repo(howto_repo)  # the store files blocks exactly where the repository looks
    assert all(repo.get(link.cid) == data for link, data in blocks)
    kinds = [link.codec for link, _ in blocks]
    assert kinds.count(DAG_CBOR) == 1
    assert kinds.count(RAW) == 8 + 4  # "t" in 4 x 2 chunks; the others in one


def test_metadata_is_traversable():
    backend = {}
    ds = sample_dataset()
    root = write(ds, backend, fmt=3, encoding={"t": {"chunks": (20, 30)}})
    top = decode(backend[str(root)])
    assert top["t"]["zarr.json"]["shape"] == [40, 30]
    assert top["t"]["zarr.json"]["attributes"]["units"] == "K"
    assert top["zarr.json"]["attributes"]["title"] == "sample"
    assert sorted(top["t"]["c"]) == ["0", "1"]
    assert all(isinstance(top["t"]["c"][i]["0"], Link) for i in "01")


def test_same_content_same_cid_whatever_the_write_order():
    ds = sample_dataset()
    first = write(ds, {})
    reordered = ds[["elevation", "flag", "t"]]
    assert write(reordered, {}) == first


def test_store_api_listing_and_deletes():
    store = IPLDStore({})
    keys = {
        "zarr.json": b'{"zarr_format": 3, "node_type": "group", "attributes": {}}',
        "g/zarr.json": b'{"zarr_format": 3, "node_type": "group", "attributes": {}}',
        "g/a/c/0/0": b"chunk 00",
        "g/a/c/0/1": b"chunk 01",
        "g/ab/c/0": b"chunk ab",
    }
    for key, value in keys.items():
        run(store.set(key, buf(value)))
    empty = store.freeze()
    assert sorted(run(collect(store.list()))) == sorted(keys)
    assert sorted(run(collect(store.list_dir("g")))) == ["a", "ab", "zarr.json"]
    assert sorted(run(collect(store.list_dir("g/a/c/0/")))) == ["0", "1"]
    assert sorted(run(collect(store.list_prefix("g/a")))) == ["g/a/c/0/0", "g/a/c/0/1", "g/ab/c/0"]
    assert sorted(run(collect(store.list_prefix("g/a/")))) == ["g/a/c/0/0", "g/a/c/0/1"]
    assert run(store.exists("g/a/c/0/1")) and not run(store.exists("g/a/c"))
    assert run(store.get("g/a/c", default_buffer_prototype())) is None
    part = run(
        store.get("g/a/c/0/1", default_buffer_prototype(), zarr.abc.store.RangeByteRequest(2, 5))
    )
    assert part.to_bytes() == b"unk"
    suffix = zarr.abc.store.SuffixByteRequest(2)
    assert run(store.get("g/ab/c/0", default_buffer_prototype(), suffix)).to_bytes() == b"ab"

    run(store.delete("g/ab/c/0"))
    assert store.root is None
    assert sorted(run(collect(store.list_dir("g")))) == ["a", "zarr.json"]  # empty folders go
    run(store.set("g/ab/c/0", buf(b"chunk ab")))
    assert store.freeze() == empty  # back to the same content, back to the same CID


def test_editing_an_opened_root_makes_a_new_version():
    backend = {}
    ds = sample_dataset()
    root = write(ds, backend)
    store = IPLDStore(backend, root)
    assert store.root == root
    xr.Dataset({"extra": ("time", np.ones(40))}).to_zarr(store, mode="a", consolidated=False)
    new = store.freeze()
    assert new != root
    xr.testing.assert_identical(open_dataset(root, backend).load(), ds)  # old one intact
    assert "extra" in open_dataset(new, backend)


def test_documents_json_cannot_carry_in_cbor_stay_raw():
    backend = {}
    ds = xr.Dataset({"a": ("x", [1.0, 2.0])}, attrs={"missing": float("nan"), "n": 1})
    root = write(ds, backend)
    top = decode(backend[str(root)])
    assert isinstance(top[".zattrs"], Link) and top[".zattrs"].codec == RAW
    assert b"NaN" in backend[str(top[".zattrs"])]
    attrs = open_dataset(root, backend).attrs
    assert np.isnan(attrs["missing"]) and attrs["n"] == 1


def test_every_block_is_checked():
    backend = {}
    root = write(sample_dataset(), backend)
    chunk = sorted(chunk_links(root, backend))[0]
    backend[chunk] = backend[chunk][:-1] + bytes([backend[chunk][-1] ^ 1])
    with pytest.raises(IntegrityError, match=chunk):
        open_dataset(root, backend).load()
    backend[str(root)] = encode({"zarr.json": {}})
    with pytest.raises(IntegrityError):
        open_store(root, backend)


def test_missing_root_is_reported():
    with pytest.raises(NotFoundError):
        open_store(PUBLISHED_ROOT, {})


def test_car_import_checks_completeness_and_is_atomic(howto_repo):
    backend = {}
    root = write(sample_dataset(), backend)
    car = IPLDStore(backend, root).to_car()
    roots, blocks = read_car(io.BytesIO(car))
    blocks = list(blocks)
    assert roots == [root] and {str(c) for c, _ in blocks} == set(backend)

    partial = io.BytesIO()
    write_car(partial, roots, blocks[:-1])
    repo = Repo(howto_repo)
    with pytest.raises(CARError, match="lacks 1 block"):
        IPLDStore(repo).import_car(partial.getvalue())
    assert not any(repo.has(cid) for cid, _ in blocks)  # nothing landed

    store = IPLDStore.from_car(car, repo)
    assert store.root == root and all(repo.has(cid) for cid, _ in blocks)
    xr.testing.assert_identical(open_dataset(root, repo).load(), sample_dataset())

    tampered = bytearray(car)
    tampered[-1] ^= 1
    with pytest.raises(CARError):
        IPLDStore({}).import_car(bytes(tampered))


def test_open_zarr_through_a_gateway(howto_repo, tmp_path):
    """``xr.open_zarr("ipfs://<root>")`` reads an IPLDStore dataset through any gateway,
    with the verified file system, as it reads a UnixFS zarr folder."""
    import howto.fs
    from howto.gateway import serve

    ds = sample_dataset()
    node = Repo(tmp_path / "node")
    root = write(ds, node, fmt=2)
    with serve(node) as url:
        howto.fs.enable()
        got = xr.open_zarr(
            f"ipfs://{root}", consolidated=False, storage_options={"gateway_addr": url}
        )
        xr.testing.assert_identical(got.load(), ds)
        fs = howto.fs.filesystem(gateway_addr=url)
        assert fs.info(f"{root}/flag")["type"] == "directory"
        assert json.loads(fs.cat(f"{root}/flag/.zarray"))["shape"] == list(ds.flag.shape)
        with pytest.raises(FileNotFoundError):
            fs.cat(f"{root}/no-such-array/.zarray")


def test_reader_paths_through_dag_cbor(tmp_path):
    """The shared reader (fs, command line) follows links inside DAG-CBOR, stops with 404
    on a missing key and with PathNotSupportedError on a path ending inside a block."""
    from howto.blocks.chain import Chain
    from howto.errors import NotFoundError, PathNotSupportedError
    from howto.retrieval.reader import DagReader

    leaf = Repo(tmp_path / "r")
    with leaf.transaction() as txn:
        inner = dag_cbor.encode({"bar": {"hello": "this is not a link"}})
        inner_cid = CID("base32", 1, "dag-cbor", multihash.digest(inner, "sha2-256"))
        outer = dag_cbor.encode({"foo": {"link": inner_cid}})
        outer_cid = CID("base32", 1, "dag-cbor", multihash.digest(outer, "sha2-256"))
        txn.put(inner_cid, inner)
        txn.put(outer_cid, outer)
    reader = DagReader(Chain([leaf]))
    assert reader.resolve(outer_cid, "foo/link") == [outer_cid, inner_cid]
    from howto.fs import filesystem
    from howto.gateway import serve

    with serve(leaf) as url:  # the file system, through a gateway, with an empty repository
        fs = filesystem(gateway_addr=url)
        assert fs.cat(f"{outer_cid}/foo/link") == inner
        with pytest.raises(FileNotFoundError):
            fs.cat(f"{outer_cid}/foo/missing")
    with pytest.raises(PathNotSupportedError):
        reader.resolve(outer_cid, "foo/link/bar")
    with pytest.raises(NotFoundError):
        reader.resolve(outer_cid, "foo/missing")


# -- section 3: metadata-only operations ---------------------------------------------


def sounding(k: int, levels: int = 50) -> xr.Dataset:
    rng = np.random.default_rng(k)
    alt = np.arange(levels) * 20.0
    return xr.Dataset(
        {
            "ta": ("alt", 300 - 0.0065 * alt + rng.normal(size=levels), {"units": "K"}),
            "p": ("alt", 1000 * np.exp(-alt / 8000) + rng.normal(size=levels), {"units": "hPa"}),
        },
        coords={
            "alt": ("alt", alt, {"units": "m"}),
            "launch_time": ((), 3600.0 * k, {"units": "s"}),
        },
        attrs={"title": f"sounding {k}"},
    )


def assert_metadata_only(backend: Recording, inputs: list[CID], result: CID) -> None:
    """No chunk was read or written, and the result links exactly the input chunks."""
    assert not [k for k in backend.written if codec_of(k) != DAG_CBOR]
    assert not [k for k in backend.read if codec_of(k) != DAG_CBOR]
    backend.reset()
    before = set().union(*(chunk_links(root, backend) for root in inputs))
    assert chunk_links(result, backend) <= before


@pytest.mark.parametrize("fmt", [2, 3])
def test_concat_soundings_along_a_new_dimension(fmt):
    backend = Recording()
    roots = [write(sounding(k), backend, fmt) for k in (1, 2, 3)]
    backend.reset()
    result = concat(roots, "sounding", backend=backend)
    assert_metadata_only(backend, roots, result)

    expected = xr.concat([sounding(k) for k in (1, 2, 3)], "sounding")
    xr.testing.assert_identical(open_dataset(result, backend).load(), expected)
    # Writing xarray's own concatenation gives the very same CID: the same chunks.
    stacked = {name: {"chunks": (1, *expected[name].shape[1:])} for name in ("ta", "p")}
    stacked["launch_time"] = {"chunks": (1,)}
    assert write(expected, Recording(), fmt, stacked) == result
    assert chunk_links(result, backend) == set().union(*(chunk_links(r, backend) for r in roots))


@pytest.mark.parametrize("fmt", [2, 3])
def test_concat_along_an_existing_dimension(fmt):
    backend = Recording()
    full = sounding(7, levels=100)
    chunks = {name: {"chunks": (20,)} for name in ("ta", "p", "alt")}
    parts = [
        full.isel(alt=slice(0, 40)),
        full.isel(alt=slice(40, 80)),
        full.isel(alt=slice(80, 95)),
    ]
    roots = [write(part, backend, fmt, chunks) for part in parts]
    backend.reset()
    result = concat(roots, "alt", backend=backend)
    assert_metadata_only(backend, roots, result)
    assert result == write(full.isel(alt=slice(0, 95)), Recording(), fmt, chunks)
    xr.testing.assert_identical(open_dataset(result, backend).load(), full.isel(alt=slice(0, 95)))


def test_concat_two_dimensional_arrays_along_time():
    backend = Recording()
    ds = sample_dataset()
    chunks = {"t": {"chunks": (10, 15)}, "flag": {"chunks": (10,)}, "time": {"chunks": (10,)}}
    roots = [write(ds.isel(time=slice(0, 20)), backend, 3, chunks)]
    roots.append(write(ds.isel(time=slice(20, 40)), backend, 3, chunks))
    backend.reset()
    result = concat(roots, "time", backend=backend)
    assert_metadata_only(backend, roots, result)
    assert result == write(ds, Recording(), 3, chunks)


def test_stacking_sharded_arrays():
    backend = {}
    shards = {name: {"chunks": (10,), "shards": (50,)} for name in ("ta", "p")}
    roots = [write(sounding(k), backend, 3, shards) for k in (1, 2)]
    result = concat(roots, "sounding", backend=backend)
    meta = decode(backend[str(result)])["ta"]["zarr.json"]
    assert meta["shape"] == [2, 50]
    sharding = [codec for codec in meta["codecs"] if codec["name"] == "sharding_indexed"]
    assert sharding[0]["configuration"]["chunk_shape"] == [1, 10]
    expected = xr.concat([sounding(1), sounding(2)], "sounding")
    xr.testing.assert_identical(open_dataset(result, backend).load(), expected)


def test_concat_refuses_chunk_grids_that_do_not_line_up():
    backend = {}
    full = sounding(7, levels=100)
    chunks = {name: {"chunks": (20,)} for name in ("ta", "p", "alt")}
    roots = [write(full.isel(alt=slice(0, 30)), backend, encoding=chunks)]
    roots.append(write(full.isel(alt=slice(30, 60)), backend, encoding=chunks))
    with pytest.raises(
        IncompatibleError, match="30 values along 'alt', not a multiple of the chunk size 20"
    ):
        concat(roots, "alt", backend=backend)

    other = write(full.isel(alt=slice(30, 60)), backend, encoding={"ta": {"chunks": (10,)}})
    with pytest.raises(IncompatibleError, match="encoding differs .*chunks"):
        concat([roots[0], other], "alt", backend=backend)


def test_concat_refuses_what_would_change_meaning_or_shape():
    backend = {}
    a, b = sounding(1), sounding(2)
    b["ta"].attrs["units"] = "degC"
    with pytest.raises(IncompatibleError, match="attributes differ.*units"):
        concat([write(a, backend), write(b, backend)], "sounding", backend=backend)
    short = sounding(2, levels=40)
    with pytest.raises(IncompatibleError, match="dimension coordinate 'alt' differs"):
        concat([write(a, backend), write(short, backend)], "sounding", backend=backend)
    with pytest.raises(IncompatibleError, match="zarr formats"):
        concat([write(a, backend, 2), write(a, backend, 3)], "sounding", backend=backend)
    renamed = sounding(2).rename({"p": "pressure"})
    with pytest.raises(IncompatibleError, match="other variables"):
        concat([write(a, backend), write(renamed, backend)], "sounding", backend=backend)


@pytest.mark.parametrize("fmt", [2, 3])
def test_merge_disjoint_variables(fmt):
    backend = Recording()
    full = sounding(4)
    roots = [write(full[["ta"]], backend, fmt), write(full[["p"]], backend, fmt)]
    backend.reset()
    result = merge(roots, backend=backend)
    assert_metadata_only(backend, roots, result)
    assert result == write(full, Recording(), fmt)  # "alt" is shared: identical links

    clash = sounding(5)[["ta"]]
    with pytest.raises(IncompatibleError, match="'ta' is in dataset 0 and dataset 1"):
        merge([roots[0], write(clash, backend, fmt)], backend=backend)
    longer = sounding(5, levels=60)[["p"]].rename({"p": "q"})
    with pytest.raises(IncompatibleError, match="'alt' has size 50 in dataset 0 but 60"):
        merge([roots[0], write(longer, backend, fmt)], backend=backend)


@pytest.mark.parametrize("fmt", [2, 3])
def test_attribute_edits_and_renames(fmt):
    backend = Recording()
    ds = sounding(6)
    root = write(ds, backend, fmt)
    backend.reset()

    edited = update_attrs(root, {"units": "kelvin", "note": [1, 2]}, "ta", backend=backend)
    edited = update_attrs(edited, {"campaign": "EUREC4A"}, drop=["title"], backend=backend)
    assert_metadata_only(backend, [root], edited)
    want = ds.copy()
    want["ta"].attrs.update(units="kelvin", note=[1, 2])
    want.attrs = {"campaign": "EUREC4A"}
    assert edited == write(want, Recording(), fmt)

    backend.reset()
    renamed = rename(root, {"alt": "height", "ta": "temperature"}, backend=backend)
    assert_metadata_only(backend, [root], renamed)
    want = ds.rename({"alt": "height", "ta": "temperature"})
    assert renamed == write(want, Recording(), fmt)
    xr.testing.assert_identical(open_dataset(renamed, backend).load(), want)
    with pytest.raises(KeyError):
        rename(root, {"nope": "x"}, backend=backend)
    with pytest.raises(ValueError, match="two variables"):
        rename(root, {"ta": "p"}, backend=backend)


@pytest.mark.parametrize("fmt", [2, 3])
def test_consolidated_metadata_follows_the_edit(fmt):
    backend = {}
    roots = [write(sounding(k), backend, fmt, consolidated=True) for k in (1, 2)]
    result = concat(roots, "sounding", backend=backend)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = xr.open_zarr(open_store(result, backend), consolidated=True).load()
    xr.testing.assert_identical(ds, xr.concat([sounding(1), sounding(2)], "sounding"))


# -- section 4: large hierarchies ---------------------------------------------------


def fill_chunks(store: IPLDStore, path: str, count: int) -> None:
    """Write ``count`` one-value int32 chunks straight through the store API."""

    async def fill() -> None:
        for i in range(count):
            await store.set(f"{path}/c/{i}", buf(np.int32(i).tobytes()))

    run(fill())


def test_an_array_of_100_000_chunks_is_split_into_blocks():
    n = 100_000
    backend = Recording()
    store = IPLDStore(backend)
    group = zarr.open_group(store, mode="w", zarr_format=3)
    group.create_array("x", shape=(n,), chunks=(1,), dtype="int32", compressors=None, fill_value=-1)
    group.create_array("y", shape=(2,), chunks=(2,), dtype="int8", compressors=None)
    fill_chunks(store, "x", n)
    root = store.freeze()

    hierarchy = {k: v for k, v in backend.items() if codec_of(k) == DAG_CBOR}
    assert len(hierarchy) > 4
    assert max(map(len, hierarchy.values())) <= MAX_BLOCK_SIZE
    top = decode(backend[str(root)])
    assert isinstance(top["x"], Link) and isinstance(top["y"], Link)  # a block per array
    assert top["zarr.json"]["node_type"] == "group"  # metadata still inline and readable
    x_node = decode(backend[str(top["x"])])
    assert x_node["zarr.json"]["shape"] == [n]
    index = x_node["c"]  # 100 000 links do not fit one block: a shard index
    assert isinstance(index, list) and all(isinstance(link, Link) for _, link in index)

    # Readers do not notice, and fetch only the blocks on their path.
    backend.reset()
    array = zarr.open_array(open_store(root, backend), path="x", mode="r")
    assert array[76543] == 76543
    assert len(backend.read) <= 6
    store2 = open_store(root, backend)
    keys = run(collect(store2.list_prefix("x/c/")))
    assert len(keys) == n and len(set(keys)) == n
    assert (
        run(store2.get("x/c/99999", default_buffer_prototype())).to_bytes()
        == np.int32(99999).tobytes()
    )

    # The layout depends only on the content: reopening, editing back and forth and
    # freezing again gives the same root; one changed chunk changes few blocks.
    again = IPLDStore(backend, root)
    run(again.set("x/c/5", buf(np.int32(-5).tobytes())))
    backend.reset()
    changed = again.freeze()
    assert changed != root and len([k for k in backend.written if codec_of(k) == DAG_CBOR]) <= 4
    run(again.set("x/c/5", buf(np.int32(5).tobytes())))
    assert again.freeze() == root

    # A CAR carries the whole thing (import_car checks that no block is missing).
    copy = {}
    assert IPLDStore(copy).import_car(IPLDStore(backend, root).to_car()) == root
    assert len(copy) == len(hierarchy) + n  # "y" has no chunk; "changed" stays behind


def test_tiny_block_limit_nests_indexes():
    backend = {}
    store = IPLDStore(backend, max_block_size=2048)
    zarr.create_array(
        store, name="v", shape=(3000,), chunks=(1,), dtype="int32", fill_value=-1, compressors=None
    )
    fill_chunks(store, "v", 3000)
    attrs = {f"attribute {i}": "x" * 50 for i in range(60)}  # a 3 kB group document
    zarr.open_group(store, mode="a", zarr_format=3).attrs.update(attrs)
    root = store.freeze()

    # Only a single document larger than the limit may exceed it, in a block of its own.
    top = decode(backend[str(root)])
    big_doc = top["zarr.json"]
    assert isinstance(big_doc, Link) and len(backend[str(big_doc)]) > 2048
    sizes = [len(data) for link, data in open_store(root, backend).blocks() if link != big_doc]
    assert max(sizes) <= 2048

    index = decode(backend[str(top["v"])])["c"]
    index = decode(backend[str(index)]) if isinstance(index, Link) else index
    assert isinstance(index, list)
    assert all(isinstance(decode(backend[str(link)]), list) for _, link in index)  # nested

    array = zarr.open_array(open_store(root, backend), path="v", mode="r")
    assert (array[:] == np.arange(3000)).all()
    assert zarr.open_group(open_store(root, backend), mode="r").attrs["attribute 59"] == "x" * 50


def test_metadata_operations_read_split_hierarchies():
    small, usual = {}, {}
    split = [write(sounding(k), small, limit=512) for k in (1, 2)]
    assert all(isinstance(decode(small[str(root)])["ta"], Link) for root in split)
    whole = [write(sounding(k), usual) for k in (1, 2)]
    assert all(isinstance(decode(usual[str(root)])["ta"], dict) for root in whole)
    # same content, cut differently; the result is cut by the usual limit: same CID
    assert concat(split, "sounding", backend=small) == concat(whole, "sounding", backend=usual)


def test_links_print_as_cid_text_through_the_one_base32_encoder():
    """The codec names links with ``cid_text``; that encoder agrees with RFC 4648 (the
    standard library's, unpadded and lower case) at every length, and is the only one in
    the package."""
    import base64
    import os
    from pathlib import Path

    from howto.formats.cids import base32, cid_text
    from howto.ipld.codec import Link

    for length in range(0, 41):
        raw = os.urandom(length)
        assert base32(raw) == base64.b32encode(raw).decode().rstrip("=").lower()
    for data, codec in ((b"x", RAW), (b"\xa0", DAG_CBOR)):
        link = Link.of(data, codec)
        assert str(link) == cid_text(link.raw) == str(CID.decode(link.raw).set(base="base32"))
    v0 = CID("base58btc", 0, "dag-pb", multihash.digest(b"node", "sha2-256"))
    assert str(Link(bytes(v0))) == str(v0)
    package = Path(__file__).resolve().parents[1] / "src" / "howto"
    encoders = [p.name for p in package.rglob("*.py") if "b32encode(" in p.read_text()]
    assert encoders == []
