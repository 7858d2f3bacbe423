"""Opening the catalogs: classic, newest pinned, one exact CID; the index and its blocks.

Every test runs offline: no gateway is configured, so ``ipfs://`` reads go through the
embedded gateway, which (with an empty ``$HOWTO_REPO``) can only serve the CAR files that
ship in ``catalogs/blocks``.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from multiformats import CID, multihash

import howto
from howto.blocks.bundled import bundled_car_files, catalog_dir
from howto.blocks.chain import CarBlocks
from howto.catalog import classic_catalog_path
from howto.cli import main
from howto.errors import NotFoundError, UnavailableError
from howto.formats.car import read_car
from howto.fs import GatewayTimeout
from howto.retrieval.discovery import configured_gateway
from howto.unixfs.resolver import Resolver

LAUNCH = np.datetime64("2019-02-18T20:41:24", "ns")
NC_FILL = 9.969209968386869e36  # netCDF's default fill value for doubles
ENTRIES = ["level1_netcdf", "level1", "level2"]
# netCDF4 (classic, local file) and h5netcdf (over IPFS) report these differently.
NETCDF_ENCODING = ("dtype", "_FillValue", "missing_value", "units", "calendar", "scale_factor")


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """No IPIP-280 gateway from the environment or the home directory: the embedded one."""
    for name in ("IPFS_GATEWAY", "IPFS_PATH", "XDG_CONFIG_HOME", "HOWTO_GATEWAY_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert configured_gateway() is None


@pytest.fixture(scope="module")
def versions():
    return howto.list_catalog_versions()


def v0_form(cid: str) -> str:
    return str(CID.decode(cid).set(version=0, base="base58btc"))


def unknown_cid() -> str:
    """A well-formed dag-pb CID whose block nobody has."""
    digest = multihash.digest(b"howto: a catalog nobody provides", "sha2-256")
    return str(CID("base32", 1, "dag-pb", digest))


def radiosondes(cat):
    return cat.BCO.radiosondes


def urlpath(cat, entry: str) -> str:
    return radiosondes(cat)._entries[entry].describe()["args"]["urlpath"]


# --- the index -------------------------------------------------------------------------------


def test_index_lists_v1_then_v2_each_pointing_at_the_one_before(versions) -> None:
    assert [v.version for v in versions][:2] == ["v1", "v2"]
    assert len({v.version for v in versions}) == len(versions)
    assert versions[0].previous is None
    for before, after in zip(versions, versions[1:], strict=False):
        assert after.previous == before.cid
        assert dt.date.fromisoformat(before.date) <= dt.date.fromisoformat(after.date)
    for v in versions:
        assert dt.date.fromisoformat(v.date).isoformat() == v.date
        cid = CID.decode(v.cid)
        assert (cid.version, cid.codec.name, cid.base.name) == (1, "dag-pb", "base32")
        assert len(v.note) > 20
    assert len({v.cid for v in versions}) == len(versions)
    assert "launch_time" in versions[0].note and "launch_time" in versions[1].note


def test_index_file_has_exactly_the_documented_fields() -> None:
    raw = json.loads((catalog_dir() / "versions.json").read_text())
    assert list(raw) == ["versions"]
    for item in raw["versions"]:
        assert set(item) == {"version", "date", "cid", "previous", "note"}


def test_latest_cid_is_the_last_version(versions) -> None:
    assert howto.get_latest_catalog_cid() == versions[-1].cid
    assert howto.get_latest_catalog_cid() != versions[0].cid


def test_cli_lists_the_versions(versions, capsys) -> None:
    assert main(["catalog", "versions"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[:3] for line in lines] == [
        [v.version, v.date, v.cid] for v in versions
    ]


# --- the bundled blocks ----------------------------------------------------------------------


def car_digests(path: Path) -> set[bytes]:
    with open(path, "rb") as f:
        return {bytes(cid.digest) for cid, _ in read_car(f)[1]}


def test_every_pinned_version_is_complete_in_the_bundled_cars(versions) -> None:
    cars = bundled_car_files()
    assert [car.name for car in cars] == [f"{v.version}.car" for v in versions]
    resolver = Resolver(CarBlocks(cars))  # CarBlocks checks every block against its CID
    for version in versions:
        walked = list(resolver.walk(version.cid, "all"))
        assert str(walked[0].cid) == version.cid
        assert len(walked) > 50, version.version
        names = {entry.name for entry in resolver.ls(version.cid)}
        assert names == {"catalog.yml", "BCO", "data"}, version.version


def test_each_car_is_rooted_at_its_version(versions) -> None:
    for version in versions:
        with open(catalog_dir() / "blocks" / f"{version.version}.car", "rb") as f:
            roots, _ = read_car(f)
        assert [str(root) for root in roots] == [version.cid]


def test_a_new_version_ships_only_its_new_blocks(versions) -> None:
    v1_car, v2_car = (catalog_dir() / "blocks" / f"{v}.car" for v in ("v1", "v2"))
    v1_blocks, v2_blocks = car_digests(v1_car), car_digests(v2_car)
    assert v1_blocks and v2_blocks
    assert not v1_blocks & v2_blocks
    # Nothing in a CAR is dead weight: all of its blocks belong to its version.
    for car, version in ((v1_car, versions[0]), (v2_car, versions[1])):
        reachable = Resolver(CarBlocks(bundled_car_files())).walk(version.cid, "all")
        assert car_digests(car) <= {bytes(b.cid.digest) for b in reachable}
    # v2 reuses blocks of v1 (the unchanged netCDF file), so its own CAR is not enough.
    with pytest.raises(NotFoundError):
        for _ in Resolver(CarBlocks([v2_car])).walk(versions[1].cid, "all"):
            pass


# --- opening ---------------------------------------------------------------------------------


def test_false_and_the_default_give_the_classic_catalog() -> None:
    for cat in (howto.get_intake_catalog(), howto.get_intake_catalog(False)):
        assert Path(cat.path) == classic_catalog_path()
        here = Path(radiosondes(cat).path).parent
        for entry in ENTRIES:
            template = urlpath(cat, entry)
            assert template.startswith("{{ CATALOG_DIR }}/")
            local = (here / template.removeprefix("{{ CATALOG_DIR }}/")).resolve()
            assert local.exists() and local.is_relative_to(catalog_dir().resolve())


def test_classic_and_newest_list_the_same_entries() -> None:
    def tree(cat) -> dict:
        out = {}
        for name in cat:
            entry = cat._entries[name].describe()
            meta = (entry["description"], entry["metadata"], entry["container"])
            out[name] = (meta, tree(cat[name]) if entry["container"] == "catalog" else None)
        return out

    classic, newest = howto.get_intake_catalog(False), howto.get_intake_catalog(True)
    assert tree(classic) == tree(newest)
    assert list(radiosondes(newest)) == ENTRIES
    for entry in ENTRIES:
        assert urlpath(newest, entry).startswith("ipfs://bafy")


def netcdf_value(value: object) -> object:
    """A char fill value: netCDF4 gives b"\\0" (dtype S1), h5netcdf b"" (S0); same meaning."""
    return bytes(value).rstrip(b"\0") if isinstance(value, bytes) else value


@pytest.mark.parametrize("entry", ENTRIES)
def test_classic_and_newest_give_identical_data(entry) -> None:
    classic = radiosondes(howto.get_intake_catalog(False))[entry]
    newest = radiosondes(howto.get_intake_catalog(True))[entry]
    with classic.to_dask() as a, newest.to_dask() as b:
        a, b = a.load(), b.load()
        xr.testing.assert_identical(a, b)  # values, coordinates and attributes
        for name in a.variables:
            ea, eb = dict(a[name].encoding), dict(b[name].encoding)
            if entry == "level1_netcdf":
                ea = {k: netcdf_value(v) for k, v in ea.items() if k in NETCDF_ENCODING}
                eb = {k: netcdf_value(v) for k, v in eb.items() if k in NETCDF_ENCODING}
            else:
                ea.pop("source", None), eb.pop("source", None)
            np.testing.assert_equal(ea, eb, err_msg=f"{entry}: encoding of {name}")


def assert_version(cat, fixed: bool) -> None:
    """v1 holds the fill value in launch_time; v2 the real launch time."""
    for entry in ("level1", "level2"):
        with radiosondes(cat)[entry].to_dask() as ds:
            value = np.ravel(ds.launch_time.values)[0]
            if fixed:
                assert value == LAUNCH, entry
            else:
                assert value.dtype == np.float64 and value == pytest.approx(NC_FILL), entry
                assert ds.attrs["launch_unixtime"] == 1550522484


@pytest.mark.parametrize("form", ["{}", "ipfs://{}", "/ipfs/{}", " {} "])
def test_a_cid_opens_exactly_that_version(versions, form) -> None:
    v1, v2 = versions[0].cid, versions[1].cid
    assert_version(howto.get_intake_catalog(form.format(v1)), fixed=False)
    assert_version(howto.get_intake_catalog(form.format(v2)), fixed=True)


@pytest.mark.parametrize("form", ["{}", "ipfs://{}", "/ipfs/{}"])
def test_the_cidv0_form_opens_the_same_version(versions, form) -> None:
    v0 = v0_form(versions[0].cid)
    assert v0.startswith("Qm")
    cat = howto.get_intake_catalog(form.format(v0))
    assert_version(cat, fixed=False)
    assert urlpath(cat, "level2") == urlpath(howto.get_intake_catalog(versions[0].cid), "level2")


def test_true_opens_the_newest_version(versions) -> None:
    newest = howto.get_intake_catalog(True)
    assert_version(newest, fixed=True)  # every version after v1 has launch_time fixed
    pinned = howto.get_intake_catalog(versions[-1].cid)
    for entry in ENTRIES:
        assert urlpath(newest, entry) == urlpath(pinned, entry)


def test_versions_share_the_netcdf_and_differ_in_the_zarr_stores(versions) -> None:
    v1 = howto.get_intake_catalog(versions[0].cid)
    v2 = howto.get_intake_catalog(versions[1].cid)
    assert urlpath(v1, "level1_netcdf") == urlpath(v2, "level1_netcdf")
    assert urlpath(v1, "level1") != urlpath(v2, "level1")
    assert urlpath(v1, "level2") != urlpath(v2, "level2")


# --- strict input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["", "   ", "ipfs://", "/ipfs/", "not-a-cid", "bafy", "Qm123", "bafybeigXYZ!"]
)
def test_a_malformed_cid_is_a_value_error_naming_it(text) -> None:
    with pytest.raises(ValueError) as info:
        howto.get_intake_catalog(text)
    assert repr(text) in str(info.value)
    assert not isinstance(info.value, NotFoundError)


def test_a_cid_with_a_path_is_refused(versions) -> None:
    text = f"{versions[-1].cid}/catalog.yml"
    with pytest.raises(ValueError, match="without a path"):
        howto.get_intake_catalog(text)


@pytest.mark.parametrize(
    "value",
    [None, 0, 1, 1.0, b"bafy", ["bafy"], Path("catalog.yml"), CID.decode(unknown_cid())],
    ids=lambda v: type(v).__name__,
)
def test_anything_but_bool_or_str_is_a_type_error(value) -> None:
    with pytest.raises(TypeError, match=type(value).__name__):
        howto.get_intake_catalog(value)


@pytest.mark.parametrize("form", ["{}", "ipfs://{}", "v0"])
def test_a_cid_nobody_provides_fails_fast_with_the_embedded_gateway(form) -> None:
    cid = unknown_cid()
    text = v0_form(cid) if form == "v0" else form.format(cid)
    start = time.monotonic()
    with pytest.raises(UnavailableError) as info:  # nobody has it: not known to be absent
        howto.get_intake_catalog(text)
    assert time.monotonic() - start < 10
    assert cid in str(info.value) and "is not available" in str(info.value)


class SilentGateway:
    """A loopback TCP server that accepts connections and never answers."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        self.connections: list[socket.socket] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                self.connections.append(self.server.accept()[0])
            except TimeoutError:
                continue

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(5)
        for conn in self.connections:
            conn.close()
        self.server.close()


@pytest.fixture
def silent_gateway():
    gateway = SilentGateway()
    yield gateway
    gateway.close()


@pytest.mark.timeout(120)
def test_a_silent_gateway_gives_gateway_timeout_within_the_configured_time(
    silent_gateway, monkeypatch
) -> None:
    # An earlier call made with the default timeout (30 s) must not decide this one's.
    howto.get_intake_catalog(True)
    monkeypatch.setenv("IPFS_GATEWAY", silent_gateway.url)
    monkeypatch.setenv("HOWTO_GATEWAY_TIMEOUT", "1")
    text = unknown_cid()
    start = time.monotonic()
    with pytest.raises(GatewayTimeout) as info:
        howto.get_intake_catalog(text)
    assert time.monotonic() - start < 5
    assert silent_gateway.url in str(info.value) and text in str(info.value)
    assert silent_gateway.connections  # the request did go to the configured gateway


@pytest.mark.timeout(120)
def test_a_silent_gateway_does_not_hide_the_bundled_catalog(silent_gateway, monkeypatch) -> None:
    """Local blocks come first: the gateway, which would stall for 30 s, is never asked."""
    monkeypatch.setenv("IPFS_GATEWAY", silent_gateway.url)
    start = time.monotonic()
    ds = radiosondes(howto.get_intake_catalog(True)).level2.to_dask().load()
    assert ds.sizes["alt"] > 1000
    assert time.monotonic() - start < 15
    assert silent_gateway.connections == []
