"""The classic catalog: root -> BCO -> radiosondes, three entries that open through intake."""

from __future__ import annotations

from pathlib import Path

import intake
import numpy as np
import pytest
import yaml

CATALOGS = Path(__file__).resolve().parents[1] / "catalogs"
ROOT = CATALOGS / "catalog.yml"
LAUNCH = np.datetime64("2019-02-18T20:41:24", "ns")
LEVEL1_VARS = {
    "altitude",
    "ascentRate",
    "dewPoint",
    "humidity",
    "launch_time",
    "mixingRatio",
    "temperature",
    "windDirection",
    "windSpeed",
}
LEVEL1_COORDS = {"trajectory", "flight_time", "pressure", "latitude", "longitude"}
LEVEL2_VARS = {
    "ascentRate",
    "dewPoint",
    "flight_time",
    "humidity",
    "latitude",
    "longitude",
    "pressure",
    "temperature",
    "u",
    "v",
    "windDirection",
    "windSpeed",
}


@pytest.fixture(scope="module")
def radiosondes():
    return intake.open_catalog(str(ROOT)).BCO.radiosondes


def test_tree_lists_bco_radiosondes_and_three_entries() -> None:
    cat = intake.open_catalog(str(ROOT))
    assert list(cat) == ["BCO"]
    assert "EUREC4A" in cat.description
    assert list(cat.BCO) == ["radiosondes"]
    assert list(cat.BCO.radiosondes) == ["level1_netcdf", "level1", "level2"]


def test_entries_have_descriptions_and_metadata(radiosondes) -> None:
    for name in radiosondes:
        # intake-xarray 2 sources carry neither; the catalog entry does.
        info = radiosondes._entries[name].describe()
        assert len(info["description"]) > 40, name
        assert info["metadata"]["platform"] == "BCO", name
        assert info["metadata"]["launch_time"] == "2019-02-18T20:41:24Z", name
    level2 = radiosondes._entries["level2"].describe()
    assert "10 m" in level2["description"] and "interpolated linearly" in level2["description"]
    assert level2["metadata"]["grid_spacing_m"] == 10


def test_urlpaths_are_single_relative_paths() -> None:
    """What the IPFS rewrite relies on: one plain ``{{ CATALOG_DIR }}`` path per source."""
    seen, todo = [], [ROOT]
    while todo:
        path = todo.pop()
        for name, source in yaml.safe_load(path.read_text())["sources"].items():
            nested = source["driver"] == "yaml_file_cat"
            value = source["args"]["path" if nested else "urlpath"]
            assert isinstance(value, str), (path, name)
            assert value.startswith("{{ CATALOG_DIR }}/"), (path, name)
            assert not any(c in value for c in "*?["), (path, name)
            local = Path(value.replace("{{ CATALOG_DIR }}", str(path.parent)))
            assert local.exists(), (path, name)
            assert local.resolve().is_relative_to(CATALOGS), (path, name)
            if nested:
                todo.append(local)
            seen.append(name)
    assert sorted(seen) == ["BCO", "level1", "level1_netcdf", "level2", "radiosondes"]


def test_level1_netcdf_opens(radiosondes) -> None:
    with radiosondes.level1_netcdf.to_dask() as ds:
        assert set(ds.data_vars) == LEVEL1_VARS
        assert set(ds.coords) == LEVEL1_COORDS
        assert dict(ds.sizes) == {"trajectory": 1, "levels": 5783}
        assert float(ds.launch_time[0]) > 1e36  # the defect, shown as it is
        assert ds.attrs["launch_unixtime"] == 1550522484


def test_level1_zarr_opens(radiosondes) -> None:
    with radiosondes.level1.to_dask() as ds:
        assert set(ds.data_vars) == LEVEL1_VARS
        assert set(ds.coords) == LEVEL1_COORDS
        assert ds.launch_time.values[0] == LAUNCH
        assert ds.flight_time.attrs["units"] == "s"
        assert ds.temperature.chunks is not None  # lazy, through dask
    with radiosondes.level1_netcdf.to_dask() as raw, radiosondes.level1.to_dask() as ds:
        np.testing.assert_array_equal(ds.temperature.values, raw.temperature.values)


def test_level2_zarr_opens(radiosondes) -> None:
    with radiosondes.level2.to_dask() as ds:
        assert set(ds.data_vars) == LEVEL2_VARS
        assert list(ds.dims) == ["alt"]
        assert np.all(np.diff(ds.alt.values) == 10.0)
        assert ds.launch_time.values == LAUNCH
        assert ds.attrs["featureType"] == "profile"
