"""A catalog of the real EUREC4A shape, pinned and opened by CID, judged entry by entry.

``catalog_shapes.write_tree`` writes 150+ nested YAML files with ``plugins`` keys,
1200 opendap entries with ``auth: null``, zarr stores on ``ipfs://Qm…`` and
``ipfs://bafy…`` (some whose blocks are in the repository, some whose blocks are
nowhere), zarr over ``https://``, kerchunk references, ``simplecache::`` URLs, templated
entries and a sub-catalog that includes itself.  The tree is added to the test's
repository and opened as ``get_intake_catalog(use_ipfs=CID)`` opens it.
"""

from __future__ import annotations

import functools
import http.server
import json
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
from catalog_shapes import reference_file, write_tree

import howto
from howto.catalog import PROFILE
from howto.catalog.check import check
from howto.catalog.parse import MAX_CATALOG_BYTES, structure_marks
from howto.catalog.pinned import (
    MAX_FILES,
    MAX_TOTAL_BYTES,
    MAX_TOTAL_ENTRIES,
    MAX_TOTAL_MARKS,
    load_tree,
)
from howto.cli import main
from howto.errors import CatalogError, UnverifiedDataWarning
from howto.retrieval.discovery import configured_gateway

VALUES = [0.0, 1.0, 2.0, 3.0]


@pytest.fixture(autouse=True)
def offline(no_configured_gateway):
    assert configured_gateway() is None


def tiny_zarr(folder: Path, values: list[float]) -> Path:
    import xarray as xr

    xr.Dataset({"t": ("z", np.array(values))}).to_zarr(folder, zarr_format=2, consolidated=False)
    return folder


@pytest.fixture
def eurec4a(tmp_path):
    """The generated tree, pinned: (root CID, the generator's intentions)."""
    data = tiny_zarr(tmp_path / "t.zarr", VALUES)
    real = {"Qm": str(howto.add(data, hidden=True)), "bafy": str(howto.add(data, **PROFILE))}
    other = tiny_zarr(tmp_path / "other.zarr", [9.0, 8.0])
    nowhere = {
        "Qm": str(howto.add(other, only_hash=True, hidden=True)),
        "bafy": str(howto.add(other, only_hash=True, **PROFILE)),
    }
    pinned_refs = tmp_path / "pinned.json"
    pinned_refs.write_text(reference_file(data, f"ipfs://{real['Qm']}"))
    gone_refs = tmp_path / "gone.json"
    gone_refs.write_text(reference_file(other, f"ipfs://{nowhere['Qm']}"))
    in_dag = f"ipfs://{real['bafy']}"
    references = {
        "verified.json": reference_file(data, in_dag),
        "mixed.json": reference_file(data, in_dag, outside="https://127.0.0.1:9/t/0"),
        "local.json": reference_file(data, in_dag, outside="file:///etc/hostname"),
        "pinned": str(howto.add(pinned_refs)),
        "nowhere": str(howto.add(gone_refs, only_hash=True)),
    }
    shape = write_tree(tmp_path / "eurec4a", real, nowhere, references)
    return str(howto.add(shape.root, **PROFILE)), shape


def verdict_when_listed(entry: object) -> str:
    """The verdict an opened catalog shows for an entry without opening it."""
    marker = entry.describe()["metadata"].get("howto", {})
    return marker.get("verdict", "verified" if marker.get("verified", True) else "location")


def test_the_eurec4a_shape_opens_with_every_entry_listed_and_judged(eurec4a) -> None:
    cid, shape = eurec4a
    assert shape.files >= 150 and len(shape.verdicts) >= 1000
    cat = howto.get_intake_catalog(use_ipfs=cid)
    assert cat.description == "EUREC4A Intake Data Catalog"
    walked = cat.walk(depth=10)
    assert sorted(walked) == sorted(shape.verdicts)
    seen = {name: verdict_when_listed(entry) for name, entry in walked.items()}
    # a kerchunk entry whose reference file is in the DAG is judged when it is opened
    pending = ("simulations.refs_mixed", "simulations.refs_local")
    assert [seen.pop(name) for name in pending] == ["verified", "verified"]
    assert seen == {k: v for k, v in shape.verdicts.items() if k not in pending}

    report = check(cid, offline=True)
    assert report.files == shape.files
    assert report.totals() == {v: shape.count(v) for v in ("verified", "location", "refused")}


def test_verified_entries_read_checked_bytes_and_the_rest_say_why_not(eurec4a) -> None:
    cid, shape = eurec4a
    cat = howto.get_intake_catalog(use_ipfs=cid)
    for name in shape.readable:
        assert cat[name].to_dask()["t"].values.tolist() == VALUES, name
    for name in shape.missing:
        with pytest.raises(Exception, match=r"bafy|Qm|not available|No group"):
            cat[name].to_dask()
    with pytest.raises(CatalogError, match=r"entry 'poldirad_gone': .* not available"):
        cat.simulations.poldirad_gone.to_dask()

    with pytest.raises(CatalogError) as info:
        cat["P07.inst1.P07-1-011"].to_dask()
    message = str(info.value)
    assert message.startswith(f"ipfs://{cid}/P07/inst1.yaml: entry 'P07-1-011': ")
    assert "verified_only=False" in message and "\n" not in message

    with pytest.raises(CatalogError, match=r"includes itself") as info:
        cat.ATR.wv.CRDS.walk()
    assert str(info.value).startswith(f"ipfs://{cid}/ATR/isotope-analyzer-wv.yaml: entry 'CRDS'")
    with pytest.raises(CatalogError, match=r"kerchunk targets are locations.*verified_only"):
        cat.simulations.refs_mixed.to_dask()
    with pytest.raises(CatalogError, match=r"kerchunk target 'file:///etc/hostname' is a local"):
        cat.simulations.refs_local.to_dask()
    with pytest.raises(CatalogError, match=r"templates are not allowed"):
        cat.barbados.lidar_0.read()
    with pytest.raises(CatalogError, match=r"driver 'json' is not allowed"):
        cat.simulations.params_0.read()


def test_verified_only_false_marks_locations_and_warns_once(eurec4a) -> None:
    cid, shape = eurec4a
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cat = howto.get_intake_catalog(use_ipfs=cid, verified_only=False)
    unverified = [w for w in caught if issubclass(w.category, UnverifiedDataWarning)]
    assert len(unverified) == 1
    listed_as_location = shape.count("location") - 1  # refs_mixed: known when opened
    assert f"{listed_as_location} location-addressed entries" in str(unverified[0].message)

    entries = cat.walk(depth=10)
    opendap = entries["P03.inst0.P03-0-005"].describe()
    assert opendap["metadata"]["howto"] == {"verified": False}
    assert opendap["metadata"]["doi"] == "https://doi.org/10.25326/000"
    assert opendap["args"]["urlpath"].startswith("https://observations.example.org/")
    assert opendap["args"]["engine"] == "netcdf4" and opendap["container"] == "xarray"
    assert "howto" not in entries["c3ontext.real_bafy_0"].describe()["metadata"]
    for name, verdict in shape.verdicts.items():
        if verdict == "refused":
            with pytest.raises(CatalogError, match=f"entry '{name.rsplit('.', 1)[1]}'"):
                cat[name].read()
    with pytest.warns(UnverifiedDataWarning, match="1 kerchunk targets are read unverified"):
        cat.simulations.refs_mixed  # noqa: B018 (opening the entry is what warns)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_folder(tmp_path):
    """A real HTTP server on 127.0.0.1 serving ``tmp_path / "www"``."""
    www = tmp_path / "www"
    www.mkdir()
    handler = functools.partial(_Quiet, directory=str(www))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_location_entry_opens_as_intake_would_only_when_asked(tmp_path, http_folder) -> None:
    www, base = http_folder
    tiny_zarr(www / "t.zarr", VALUES)
    import xarray as xr

    xr.open_zarr(www / "t.zarr").to_netcdf(www / "t.nc")
    (www / "refs.json").write_text(reference_file(www / "t.zarr", f"{base}/t.zarr"))
    root = tmp_path / "cat"
    root.mkdir()
    (root / "catalog.yml").write_text(
        "plugins:\n  source:\n    - module: intake_xarray\nsources:\n"
        f"  web:\n    driver: zarr\n    args:\n      urlpath: {base}/t.zarr\n"
        "      consolidated: false\n"
        f"  dap:\n    driver: netcdf\n    args:\n      urlpath: simplecache::{base}/t.nc\n"
        "      auth: null\n      chunks: null\n      engine: h5netcdf\n"
        "  kerchunk:\n    driver: zarr\n    args:\n      urlpath: reference://\n"
        f"      storage_options: {{fo: {base}/refs.json}}\n      consolidated: false\n"
        f"  cached:\n    driver: netcdf\n    args:\n      urlpath: simplecache::{base}/t.nc\n"
        f"      storage_options: {{simplecache: {{cache_storage: '{tmp_path}/cache'}}}}\n"
    )
    cid = str(howto.add(root, **PROFILE))
    for name in ("web", "kerchunk"):
        with pytest.raises(CatalogError, match="verified_only=False"):
            howto.get_intake_catalog(cid)[name].to_dask()
    with pytest.warns(UnverifiedDataWarning, match="3 location-addressed entries"):
        cat = howto.get_intake_catalog(cid, verified_only=False)
    for name in ("web", "dap", "kerchunk"):
        assert cat[name].read()["t"].values.tolist() == VALUES
        assert cat.walk()[name].describe()["metadata"]["howto"] == {"verified": False}
    with pytest.raises(CatalogError, match="storage option 'simplecache' is not allowed"):
        cat.cached.read()
    assert not (tmp_path / "cache").exists()


def _diamond(levels: int, fanout: int) -> dict[str, bytes]:
    files = {}
    for level in range(levels):
        body = "".join(
            f"  to_{n}:\n    driver: yaml_file_cat\n    args:\n"
            f"      path: '{{{{ CATALOG_DIR }}}}/f{level + 1}.yml'\n"
            for n in range(fanout)
        )
        files[f"f{level}.yml"] = ("sources:\n" + body).encode()
    files[f"f{levels}.yml"] = b"sources:\n  end:\n    driver: zarr\n    args:\n      urlpath: x\n"
    return files


def test_a_diamond_of_sub_catalogs_is_read_and_parsed_once_per_file(tmp_path) -> None:
    files = _diamond(3, 100)  # 4 files, each naming the next one 100 times
    reads: list[str] = []
    root = "ipfs://bafkqaaa"

    def read(url: str, limit: int) -> bytes:
        reads.append(url)
        return files[url.removeprefix(root + "/")]

    tree = load_tree(f"{root}/f0.yml", read)
    assert sorted(reads) == [f"{root}/f{n}.yml" for n in range(4)]
    assert len(list(tree.entries())) == 301

    # pinned and opened by CID: one catalog object per file, shared by the 100 entries
    (tmp_path / "d").mkdir()
    for name, data in {**files, "catalog.yml": files["f0.yml"]}.items():
        (tmp_path / "d" / name).write_bytes(data)
    cat = howto.get_intake_catalog(str(howto.add(tmp_path / "d", **PROFILE)))
    assert len(cat) == 100 and cat.to_0.to_7 is cat.to_99.to_42
    assert list(cat.to_3.to_4.to_5) == ["end"]


def test_a_tree_at_every_limit_loads_and_one_more_file_is_refused_alone() -> None:
    """1024 files, 16 MiB and the structure-mark and entry budgets, all nearly used up."""
    root = "ipfs://bafkqaaa"
    children = MAX_FILES - 1
    per_child = (MAX_TOTAL_ENTRIES - children) // children
    entry = "  e{n}:\n    driver: zarr\n    args:\n      urlpath: ipfs://bafkqaaa/d{n}\n"
    files = {
        "catalog.yml": "sources:\n"
        + "".join(
            f"  c{i}:\n    driver: yaml_file_cat\n    args:\n"
            f"      path: '{{{{ CATALOG_DIR }}}}/c{i}.yml'\n"
            for i in range(children)
        )
    }
    used_marks = structure_marks(files["catalog.yml"])
    used_bytes = len(files["catalog.yml"])
    body = "sources:\n" + "".join(entry.format(n=n) for n in range(per_child))
    prefix = "description: '"  # one mark of its own
    marks_each = (MAX_TOTAL_MARKS - used_marks) // children - structure_marks(body) - 1
    bytes_each = (MAX_TOTAL_BYTES - used_bytes) // children - len(body) - marks_each - 16
    assert marks_each > 0 and 0 < bytes_each < MAX_CATALOG_BYTES
    padding = prefix + ":" * marks_each + "x" * bytes_each + "'\n"
    for i in range(children):
        files[f"c{i}.yml"] = padding + body
    total = sum(len(text) for text in files.values())
    assert 0.99 * MAX_TOTAL_BYTES < total <= MAX_TOTAL_BYTES
    assert 0.99 * MAX_TOTAL_MARKS < sum(map(structure_marks, files.values())) <= MAX_TOTAL_MARKS

    def read(url: str, limit: int) -> bytes:
        return files[url.removeprefix(root + "/")].encode()

    tree = load_tree(f"{root}/catalog.yml", read)
    assert len(tree.files) == MAX_FILES
    assert {j.verdict for _, j in tree.entries()} == {"verified"}
    assert len(list(tree.entries())) > 0.99 * MAX_TOTAL_ENTRIES

    files["catalog.yml"] += "  extra:\n    driver: yaml_file_cat\n    args:\n"
    files["catalog.yml"] += "      path: '{{ CATALOG_DIR }}/extra.yml'\n"
    files["extra.yml"] = "sources: {}\n"
    tree = load_tree(f"{root}/catalog.yml", read)
    extra = tree.files[f"{root}/catalog.yml"].entries["extra"]
    assert extra.verdict == "refused" and f"would pass {MAX_FILES} files" in extra.reason
    assert sum(j.verdict == "verified" for _, j in tree.entries()) == len(list(tree.entries())) - 1


def test_base_60_numbers_and_long_digit_strings_stay_text(tmp_path) -> None:
    sexagesimal = "1" + ":1" * 100_000
    text = (
        f"sources:\n  t:\n    driver: zarr\n    args:\n      urlpath: ipfs://bafkqaaa\n"
        f"    metadata:\n      x: {sexagesimal}\n      y: {'7' * 5000}\n      z: 12\n"
    )
    root = tmp_path / "c"
    root.mkdir()
    (root / "catalog.yml").write_text(text)
    cid = str(howto.add(root, **PROFILE))
    metadata = howto.get_intake_catalog(cid).walk()["t"].describe()["metadata"]
    assert metadata["x"] == sexagesimal and metadata["y"] == "7" * 5000 and metadata["z"] == 12

    # near 1 MiB, the same number holds more colons than a whole tree may: refused unparsed
    (root / "catalog.yml").write_text(text.replace(sexagesimal, "1" + ":1" * 450_000))
    cid = str(howto.add(root, **PROFILE))
    with pytest.raises(CatalogError, match="YAML structure marks"):
        howto.get_intake_catalog(cid)


def test_catalog_check_prints_a_table_or_json_and_fails_on_refusals(eurec4a, capsys) -> None:
    cid, shape = eurec4a
    assert main(["--offline", "catalog", "check", cid]) == 1
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:2] == ["verdict", "entry"]
    assert len(table) == len(shape.verdicts) + 2
    assert any(
        line.startswith("refused") and "ATR/isotope-analyzer-wv.yaml:CRDS" in line for line in table
    )
    assert f"{len(shape.verdicts)} entries in {shape.files} files" in table[-1]

    assert main(["catalog", "check", "--offline", cid, "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["totals"] == {v: shape.count(v) for v in ("verified", "location", "refused")}
    entries = {e["entry"]: e for e in report["entries"]}
    assert entries["refs_mixed"]["verdict"] == "location"
    assert "https://127.0.0.1:9/t/0" in entries["refs_mixed"]["reason"]
    assert entries["poldirad_gone"]["verdict"] == "verified"
    assert entries["poldirad_gone"]["reason"].startswith("references not available: ")

    assert main(["--offline", "catalog", "check", str(shape.root)]) == 1
    assert "refused" in capsys.readouterr().out


def test_catalog_check_of_a_clean_catalog_exits_zero(capsys) -> None:
    assert main(["--offline", "catalog", "check", howto.get_latest_catalog_cid()]) == 0
    out = capsys.readouterr().out
    assert "0 location, 0 refused" in out.splitlines()[-1]
    assert main(["catalog", "check", "bafy-not-a-cid"]) == 1
    assert capsys.readouterr().err.startswith("howto catalog check: error: ")
