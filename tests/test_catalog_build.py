"""``howto catalog build``: the IPFS catalog from the classic one, pinned versions, faults.

Builds that could write anything run on a copy of ``catalogs/`` in a temporary folder, so
the bundled index and blocks are never touched (and a test checks that they were not).
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from multiformats import CID

import howto
from howto import catalog
from howto.blocks.bundled import catalog_dir
from howto.blocks.chain import CarBlocks
from howto.blocks.repo import Repo
from howto.catalog import PROFILE, build_ipfs_catalog, pin_version, stage_ipfs_tree
from howto.catalog import build as catalog_build
from howto.formats.car import read_car
from howto.formats.cids import v1_str
from howto.unixfs.add import add
from howto.unixfs.resolver import Resolver

RADIOSONDES = "BCO/radiosondes.yml"
DATA = "data/BCO/radiosondes"
LEVEL2 = f"{DATA}/BCO_sounding_20190218T2041_level2.zarr"
NETCDF = f"{DATA}/example_mw41.nc"


def howto_cli(*args: object, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "howto.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **env},
        timeout=300,
    )


def snapshot(directory: Path) -> dict[str, bytes]:
    """The index and every CAR file of a catalog folder, byte for byte."""
    files = [directory / "versions.json", *sorted((directory / "blocks").iterdir())]
    return {str(p.relative_to(directory)): p.read_bytes() for p in files}


def repo_files(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file())


def car_digests(path: Path) -> set[bytes]:
    with open(path, "rb") as f:
        return {bytes(cid.digest) for cid, _ in read_car(f)[1]}


@pytest.fixture
def bundled():
    """The bundled index and blocks, checked to be unchanged after the test."""
    before = snapshot(catalog_dir())
    yield catalog_dir()
    assert snapshot(catalog_dir()) == before


@pytest.fixture
def copy(tmp_path, bundled) -> Path:
    """A private copy of ``catalogs/`` (classic YAML, data, index and blocks)."""
    target = tmp_path / "catalogs"
    shutil.copytree(bundled, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def change_a_description(directory: Path) -> None:
    path = directory / RADIOSONDES
    text = path.read_text()
    assert "Radiosonde soundings from the Barbados" in text
    path.write_text(
        text.replace("Radiosonde soundings from the Barbados", "Soundings from the Barbados")
    )


# --- building -------------------------------------------------------------------------------


def test_rebuilding_the_classic_catalog_gives_the_newest_pinned_cid(howto_repo) -> None:
    root = build_ipfs_catalog(only_hash=True)
    assert v1_str(root) == howto.get_latest_catalog_cid()
    assert repo_files(howto_repo) == []  # -n computes, stores nothing


def test_the_cli_prints_the_same_cid_in_another_process_and_place(copy, tmp_path) -> None:
    """Neither the folder, the file times nor Python's hash seed enter the CID."""
    for path in copy.rglob("*"):
        os.utime(path, (1_000_000_000, 1_000_000_000), follow_symlinks=False)
    in_process = v1_str(build_ipfs_catalog(copy / "catalog.yml", only_hash=True))
    results = [
        howto_cli("catalog", "build", "-n", PYTHONHASHSEED="1"),
        howto_cli(
            "catalog", "build", "-n", "--catalog", "catalogs/catalog.yml", cwd=tmp_path,
            PYTHONHASHSEED="4242",
        ),
    ]  # fmt: skip
    for result in results:
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == [in_process]
    assert in_process == howto.get_latest_catalog_cid()


def test_the_ipfs_tree_rewrites_each_urlpath_to_its_dataset_cid(tmp_path) -> None:
    tree = tmp_path / "tree"
    cids = stage_ipfs_tree(catalog_dir() / "catalog.yml", tree)
    assert {p.relative_to(catalog_dir()).as_posix() for p in cids} == {
        NETCDF,
        LEVEL2,
        f"{DATA}/BCO_sounding_20190218T2041_level1.zarr",
    }
    sources = yaml.safe_load((tree / RADIOSONDES).read_text())["sources"]
    classic = yaml.safe_load((catalog_dir() / RADIOSONDES).read_text())["sources"]
    assert list(sources) == list(classic)
    for name, source in sources.items():
        url = source["args"]["urlpath"]
        assert url.startswith("ipfs://")
        cid = CID.decode(url.removeprefix("ipfs://"))
        assert cid.version == 1
        (local,) = (p for p in cids if p.name in classic[name]["args"]["urlpath"])
        assert cid == add(local, only_hash=True, **PROFILE)
        assert (source["description"], source["metadata"]) == (
            classic[name]["description"],
            classic[name]["metadata"],
        )
    # netCDF4 reads only local files; over IPFS the same file is read with h5netcdf.
    assert classic["level1_netcdf"]["args"]["xarray_kwargs"]["engine"] == "netcdf4"
    assert sources["level1_netcdf"]["args"]["xarray_kwargs"] == {
        "engine": "h5netcdf",
        "decode_times": False,
    }
    assert sources["level2"]["args"]["consolidated"] is True
    # The data travel with the YAML: hidden zarr metadata files included.
    assert (tree / LEVEL2 / ".zmetadata").read_bytes() == (
        catalog_dir() / LEVEL2 / ".zmetadata"
    ).read_bytes()
    sub = yaml.safe_load((tree / "BCO/catalog.yml").read_text())["sources"]["radiosondes"]
    assert sub["args"]["path"] == "{{ CATALOG_DIR }}/radiosondes.yml"


def test_build_adds_every_block_with_raw_leaves_and_cidv1(howto_repo) -> None:
    root = build_ipfs_catalog()
    assert v1_str(root) == howto.get_latest_catalog_cid()
    blocks = list(Resolver(Repo()).walk(root, "all"))  # all present in $HOWTO_REPO
    assert len(repo_files(howto_repo)) >= len(blocks) > 50
    codecs = {b.cid.codec.name for b in blocks}
    assert codecs == {"dag-pb", "raw"}
    assert {b.cid.version for b in blocks} == {1}
    for block in blocks:  # file data only in raw leaves, never wrapped in dag-pb
        if block.cid.codec.name == "dag-pb" and block.kind == "file":
            assert block.node.links, block.cid


# --- pinning --------------------------------------------------------------------------------


def test_pinning_an_unchanged_catalog_is_refused(copy, howto_repo) -> None:
    before = snapshot(copy)
    result = howto_cli("catalog", "build", "--catalog", copy / "catalog.yml", "--lock", "v3")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"howto catalog build: error: nothing changed: the catalog is still "
        f"{howto.get_latest_catalog_cid()}"
    ]
    assert snapshot(copy) == before
    assert repo_files(howto_repo) == []


def test_a_new_pin_goes_next_to_the_given_catalog_and_holds_only_new_blocks(
    copy, howto_repo
) -> None:
    change_a_description(copy)
    result = howto_cli(
        "catalog", "build", "--catalog", copy / "catalog.yml", "--lock", "v3", "--note", "shorter"
    )
    assert result.returncode == 0, result.stderr
    versions = catalog.list_catalog_versions(copy)
    assert [v.version for v in versions] == ["v1", "v2", "v3"]
    v3 = versions[-1]
    assert result.stdout.splitlines() == [f"locked v3: {v3.cid}"]
    assert v3.previous == versions[1].cid and v3.note == "shorter"
    assert v3.date == dt.date.today().isoformat()
    assert v3.cid == v1_str(build_ipfs_catalog(copy / "catalog.yml", only_hash=True))
    cars = sorted((copy / "blocks").glob("*.car"))
    assert [c.name for c in cars] == ["v1.car", "v2.car", "v3.car"]
    with open(copy / "blocks/v3.car", "rb") as f:
        assert [str(r) for r in read_car(f)[0]] == [v3.cid]
    new = car_digests(copy / "blocks/v3.car")
    assert new and not new & (car_digests(cars[0]) | car_digests(cars[1]))
    # Only the changed YAML and the directories above it are new.
    assert len(new) == 3
    walked = list(Resolver(CarBlocks(cars)).walk(v3.cid, "all"))
    assert {bytes(b.cid.digest) for b in walked} >= new
    assert repo_files(howto_repo) == []  # pinning builds in a scratch repository

    # --pin, the flag's former name, still works (hidden from --help)
    again = howto_cli("catalog", "build", "--catalog", copy / "catalog.yml", "--pin", "v3")
    assert again.returncode == 1
    assert again.stderr.splitlines() == [
        "howto catalog build: error: version 'v3' is already locked"
    ]


def test_help_shows_lock_and_hides_its_old_name_pin() -> None:
    result = howto_cli("catalog", "build", "--help")
    assert result.returncode == 0, result.stderr
    assert "--lock VERSION" in result.stdout and "--pin" not in result.stdout


def test_a_failed_index_write_leaves_no_car_behind(copy, monkeypatch) -> None:
    change_a_description(copy)
    before = snapshot(copy)

    def refuse(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(catalog_build.os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        pin_version("v3", "x", classic=copy / "catalog.yml")
    assert snapshot(copy) == before


def test_a_car_missing_from_the_index_does_not_count_as_pinned(copy, tmp_path) -> None:
    """A stray CAR (say, from an interrupted pin) must not hide blocks from the next pin."""
    change_a_description(copy)
    other = tmp_path / "other"
    shutil.copytree(copy, other)
    stray = pin_version("v3", "first try", directory=other)
    shutil.copy(other / "blocks/v3.car", copy / "blocks/v3.car")  # a CAR but no index line
    pinned = pin_version("v3", "second try", directory=copy)
    assert pinned.cid == stray.cid
    cars = sorted((copy / "blocks").glob("*.car"))
    assert len(list(Resolver(CarBlocks(cars)).walk(pinned.cid, "all"))) > 50
    assert car_digests(copy / "blocks/v3.car") == car_digests(other / "blocks/v3.car")


# --- faults ----------------------------------------------------------------------------------


def break_yaml(directory: Path) -> tuple[str, str]:
    path = directory / RADIOSONDES
    text = path.read_text()
    path.write_text(text.replace("      consolidated: true\n", "      consolidated: [true\n", 1))
    return RADIOSONDES, "invalid YAML (line "


def remove_netcdf(directory: Path) -> tuple[str, str]:
    (directory / NETCDF).unlink()
    return RADIOSONDES, f"entry 'level1_netcdf': catalogs/{NETCDF} does not exist"


def corrupt_zarr_metadata(directory: Path) -> tuple[str, str]:
    path = directory / LEVEL2 / ".zmetadata"
    path.write_text(path.read_text()[:200])
    return RADIOSONDES, "entry 'level2' does not open: "


def truncate_netcdf(directory: Path) -> tuple[str, str]:
    with open(directory / NETCDF, "r+b") as f:
        f.truncate(4096)
    return RADIOSONDES, "entry 'level1_netcdf' does not open: "


@pytest.mark.parametrize(
    "fault", [break_yaml, remove_netcdf, corrupt_zarr_metadata, truncate_netcdf]
)
@pytest.mark.parametrize("pin", [True, False], ids=["pin", "build"])
def test_a_broken_catalog_stops_the_build_with_one_line(copy, howto_repo, fault, pin) -> None:
    change_a_description(copy)  # so that only the fault can stop a pin
    file, message = fault(copy)
    before = snapshot(copy)
    args = ["catalog", "build", "--catalog", "catalogs/catalog.yml"]
    result = howto_cli(*args, *(["--lock", "v3", "--note", "x"] if pin else []), cwd=copy.parent)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"howto catalog build: error: catalogs/{file}: ")
    assert message in lines[0]
    assert result.stdout == ""
    assert snapshot(copy) == before
    assert repo_files(howto_repo) == []
