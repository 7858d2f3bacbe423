"""``howto catalog build`` on a catalog tree written elsewhere, and ``--fetch-remote``.

The tree mixes what real catalogs hold: local data, ``ipfs://`` entries (CIDv0 and v1),
OPeNDAP, ``s3://`` and chained URLs, and a sub-catalog that includes itself.  The remote
data (a netCDF file and a small zarr store) come from an ``http.server`` on 127.0.0.1,
started here, that answers ``Range`` requests and can break a reply off or lie about a
digest.
"""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml

from howto.catalog import PROFILE, convert_catalog, convert_tree
from howto.catalog.download import download_file
from howto.errors import CatalogError
from howto.formats.cids import parse_cid, v1_str
from howto.unixfs.add import add

HELLO_V0 = "QmWATWQ7fVPP2EFGu71UkfnqhYXDYH566qy47CnJDgvs8u"  # kubo's "hello world\n"
BAFY = "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"  # "hello world"


class Handler(SimpleHTTPRequestHandler):
    """Files under the server's folder, with ``Range``, a strong ETag (the MD5, as S3
    sends) and ``Content-MD5``; ``server.cut`` breaks the first reply for a path off after
    that many bytes, ``server.lie`` sends a wrong ``Repr-Digest`` for a path."""

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.reply(head=False)

    def do_HEAD(self) -> None:
        self.reply(head=True)

    def reply(self, head: bool) -> None:
        server = self.server
        path = self.path.split("?")[0]
        server.requests.append((path, self.headers.get("Range")))
        file = Path(server.folder, path.lstrip("/"))
        if not file.is_file():
            self.send_error(404)
            return
        data = file.read_bytes()
        start, status = 0, 200
        wanted = self.headers.get("Range")
        if wanted and wanted.startswith("bytes=") and wanted.endswith("-"):
            start = int(wanted[6:-1])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        body = data[start:]
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", f'"{hashlib.md5(data).hexdigest()}"')
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_header("Content-MD5", base64.b64encode(hashlib.md5(body).digest()).decode())
        if path in server.lie:
            wrong = base64.b64encode(hashlib.sha256(b"not these bytes").digest()).decode()
            self.send_header("Repr-Digest", f"sha-256=:{wrong}:")
        self.end_headers()
        if head:
            return
        cut = server.cut.pop(path, None)
        if cut is not None:
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


class Server:
    def __init__(self, folder: Path) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.folder = folder
        self.httpd.requests = []
        self.httpd.cut = {}
        self.httpd.lie = set()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def requests(self) -> list[tuple[str, str | None]]:
        return self.httpd.requests

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def write_data(folder: Path) -> xr.Dataset:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(7)
    ds = xr.Dataset(
        {"q": (("time", "level"), rng.standard_normal((50, 20)))},
        coords={"time": np.arange(50), "level": np.arange(20) * 10.0},
        attrs={"title": "fetched"},
    )
    ds.to_netcdf(folder / "sonde.nc", engine="netcdf4")
    ds.to_zarr(folder / "sonde.zarr", zarr_format=2, consolidated=True,
               encoding={"q": {"chunks": (10, 10)}})  # fmt: skip
    return ds


@pytest.fixture
def served(tmp_path):
    folder = tmp_path / "www"
    ds = write_data(folder / "data")
    server = Server(folder)
    server.dataset = ds
    server.folder = folder
    yield server
    server.close()


def entry(driver: str, urlpath: str, **args: object) -> dict:
    return {"driver": driver, "args": {"urlpath": urlpath, **args}}


def foreign_tree(base: Path, url: str) -> Path:
    """A catalog tree in EUREC4A's shape: plugins, a platform sub-catalog including itself."""
    (base / "data").mkdir(parents=True)
    write_data(base / "local")
    root = base / "catalog.yml"
    root.write_text(yaml.safe_dump({
        "plugins": {"source": [{"module": "intake_xarray"}]},
        "sources": {
            "SHIP": {"driver": "yaml_file_cat",
                     "args": {"path": "{{CATALOG_DIR}}/SHIP/main.yaml"}},
            "local_nc": entry("netcdf", "{{ CATALOG_DIR }}/local/sonde.nc",
                              xarray_kwargs={"engine": "netcdf4"}),
            "pinned_v0": entry("zarr", f"ipfs://{HELLO_V0}"),
            "pinned_v1": entry("zarr", f"ipfs://{BAFY}/inner/path"),
        },
    }))  # fmt: skip
    (base / "SHIP").mkdir()
    (base / "SHIP" / "main.yaml").write_text(yaml.safe_dump({
        "plugins": {"source": [{"module": "intake_xarray"}]},
        "sources": {
            "again": {"driver": "yaml_file_cat",
                      "args": {"path": "{{CATALOG_DIR}}/main.yaml"}},
            "remote_nc": entry("netcdf", f"{url}/data/sonde.nc"),
            "remote_zarr": entry("zarr", f"{url}/data/sonde.zarr", consolidated=True),
            "opendap": {"driver": "opendap",
                        "args": {"urlpath": f"{url}/thredds/dodsC/sonde.nc", "auth": None}},
            "bucket": entry("zarr", "s3://bucket/sonde.zarr"),
            "cached": entry("netcdf", f"simplecache::{url}/data/sonde.nc",
                            storage_options={"simplecache": {"same_names": True}}),
            "kerchunk": entry("zarr", "reference://",
                              storage_options={"fo": f"{url}/refs.json"}),
        },
    }))  # fmt: skip
    return root


def sources(tree: Path, name: str) -> dict:
    return yaml.safe_load((tree / name).read_text())["sources"]


def test_without_fetching_remote_entries_are_kept_and_counted(served, tmp_path) -> None:
    root = foreign_tree(tmp_path / "cat", served.url)
    out = tmp_path / "out"
    cids, totals = convert_tree(root, out)
    assert (totals.local, totals.fetched, totals.ipfs, totals.location) == (1, 0, 2, 6)
    assert str(totals) == "entries: 1 rewritten local, 0 fetched, 2 kept ipfs, 6 kept location"
    top, ship = sources(out, "catalog.yml"), sources(out, "SHIP/main.yaml")
    local_cid = add(tmp_path / "cat" / "local" / "sonde.nc", only_hash=True, **PROFILE)
    assert top["local_nc"]["args"]["urlpath"] == f"ipfs://{local_cid}"
    assert top["pinned_v0"]["args"]["urlpath"] == f"ipfs://{v1_str(parse_cid(HELLO_V0)[0])}"
    assert top["pinned_v1"]["args"]["urlpath"] == f"ipfs://{BAFY}/inner/path"
    original = sources(tmp_path / "cat", "SHIP/main.yaml")
    assert ship == original  # every location-addressed entry as it was
    assert served.requests == []  # nothing was downloaded
    assert not (out / "_fetched").exists()


def test_fetch_remote_downloads_checks_adds_and_rewrites(served, tmp_path) -> None:
    root = foreign_tree(tmp_path / "cat", served.url)
    downloads = tmp_path / "downloads"
    built = convert_catalog(root, only_hash=True, fetch_remote=True, downloads=downloads)
    totals = built.totals
    assert (totals.local, totals.fetched, totals.ipfs, totals.location) == (1, 3, 2, 3)
    # The netCDF file is checked by its size, its Content-MD5 and its ETag (an MD5).
    assert f"{served.url}/data/sonde.nc: size, md5 from Content-MD5, md5 from ETag" in (
        totals.checked
    )
    out = tmp_path / "out"
    convert_tree(root, out, fetch_remote=True, downloads=downloads)
    ship = sources(out, "SHIP/main.yaml")
    nc_cid = add(served.folder / "data" / "sonde.nc", only_hash=True, **PROFILE)
    zarr_cid = add(served.folder / "data" / "sonde.zarr", only_hash=True, **PROFILE)
    assert ship["remote_nc"]["args"] == {
        "urlpath": f"ipfs://{nc_cid}",
        "xarray_kwargs": {"engine": "h5netcdf"},
    }
    assert ship["remote_zarr"]["args"] == {"urlpath": f"ipfs://{zarr_cid}", "consolidated": True}
    assert ship["cached"]["args"] == ship["remote_nc"]["args"]  # its cache options dropped
    assert ship["opendap"]["args"]["urlpath"].startswith(served.url)  # never fetched
    assert ship["bucket"]["args"]["urlpath"] == "s3://bucket/sonde.zarr"
    host = served.url.removeprefix("http://").replace(":", "_")
    copied = out / "_fetched" / host / "data" / "sonde.zarr"
    xr.testing.assert_identical(xr.open_zarr(copied).load(), served.dataset)
    # A second build uses the downloads it already has: no request at all.
    before = len(served.requests)
    again = convert_catalog(root, only_hash=True, fetch_remote=True, downloads=downloads)
    assert again.root == built.root and len(served.requests) == before


def test_a_broken_off_download_continues_with_a_range_request(served, tmp_path) -> None:
    path = "/data/sonde.nc"
    size = (served.folder / "data" / "sonde.nc").stat().st_size
    served.httpd.cut[path] = 3000
    target = tmp_path / "dl" / "sonde.nc"
    with pytest.raises(CatalogError, match=f"broke off after 3000 of {size} bytes"):
        download_file(served.url + path, target, progress=False)
    assert not target.exists()
    got = download_file(served.url + path, target, progress=False)
    assert served.requests == [(path, None), (path, "bytes=3000-")]
    assert (
        got.size == size and target.read_bytes() == (served.folder / "data/sonde.nc").read_bytes()
    )
    assert got.checked == "size, md5 from ETag"  # a 206 reply's Content-MD5 is the part's
    # The complete file left as a .part (a run stopped after the last byte): 416, then kept.
    target.rename(target.with_name("sonde.nc.part"))
    served.requests.clear()
    assert download_file(served.url + path, target, progress=False).size == size
    assert served.requests == [(path, f"bytes={size}-")]


def test_a_digest_that_does_not_match_stops_the_build_and_keeps_nothing(served, tmp_path) -> None:
    root = foreign_tree(tmp_path / "cat", served.url)
    served.httpd.lie.add("/data/sonde.nc")
    downloads = tmp_path / "downloads"
    with pytest.raises(CatalogError) as info:
        convert_catalog(root, only_hash=True, fetch_remote=True, downloads=downloads)
    message = str(info.value)
    assert "main.yaml: entry " in message and "/data/sonde.nc: the sha256" in message
    assert "does not match the server's Repr-Digest" in message
    assert not [p for p in downloads.rglob("sonde.nc*")]  # neither the file nor a part


def test_a_chunk_never_written_is_left_out_but_metadata_must_exist(served, tmp_path) -> None:
    from howto.catalog.download import download_zarr

    store = served.folder / "data" / "sonde.zarr"
    (store / "q" / "0.1").unlink()  # zarr reads a missing chunk as fill values
    got = download_zarr(f"{served.url}/data/sonde.zarr", tmp_path / "a.zarr", progress=False)
    assert got.checked.endswith("1 chunks never written")
    assert not (tmp_path / "a.zarr" / "q" / "0.1").exists()
    (store / "q" / ".zattrs").unlink()
    with pytest.raises(CatalogError, match="q/.zattrs: named in .zmetadata, but not found"):
        download_zarr(f"{served.url}/data/sonde.zarr", tmp_path / "b.zarr", progress=False)


def test_the_command_prints_the_cid_and_the_totals(served, tmp_path) -> None:
    root = foreign_tree(tmp_path / "cat", served.url)
    args = ["catalog", "build", "-n", "--catalog", root, "--fetch-remote"]
    result = subprocess.run(
        [sys.executable, "-m", "howto.cli", *map(str, args), "--downloads", tmp_path / "dl"],
        capture_output=True, text=True, timeout=300, env={**os.environ},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    expected = convert_catalog(root, only_hash=True, fetch_remote=True, downloads=tmp_path / "dl")
    assert result.stdout.split() == [str(expected.root)]
    assert "entries: 1 rewritten local, 3 fetched, 2 kept ipfs, 3 kept location" in result.stderr
    bad = ["catalog", "build", "-n", "--catalog", root, "--fetch-remote", "--downloads"]
    served.httpd.lie.add("/data/sonde.nc")
    failed = subprocess.run(
        [sys.executable, "-m", "howto.cli", *map(str, bad), tmp_path / "dl2"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert failed.returncode == 1
    assert failed.stderr.startswith("howto catalog build: error: ")
    assert "Repr-Digest" in failed.stderr.splitlines()[-1]


def test_an_ipfs_entry_whose_cid_does_not_parse_stops_the_build(served, tmp_path) -> None:
    root = foreign_tree(tmp_path / "cat", served.url)
    doc = yaml.safe_load(root.read_text())
    doc["sources"]["pinned_v0"]["args"]["urlpath"] = "ipfs://Qm123notacid/x.zarr"
    root.write_text(yaml.safe_dump(doc))
    with pytest.raises(CatalogError, match=r"catalog.yml: entry 'pinned_v0': .*Qm123notacid"):
        convert_tree(root, tmp_path / "out")


def test_a_zarr_store_without_consolidated_metadata_cannot_be_fetched(served, tmp_path) -> None:
    from howto.catalog.download import download_zarr

    (served.folder / "data" / "sonde.zarr" / ".zmetadata").unlink()
    with pytest.raises(CatalogError, match="no .zmetadata, so the store cannot be listed"):
        download_zarr(f"{served.url}/data/sonde.zarr", tmp_path / "z.zarr", progress=False)
    assert not (tmp_path / "z.zarr").exists()
