"""The BCO sounding: its known defect, the repair, the zarr copy and the level-2 grid."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from howto.sounding import build_products, level2, main, open_level1, product_stem, to_zarr

DATA = Path(__file__).resolve().parents[1] / "catalogs" / "data" / "BCO" / "radiosondes"
NC = DATA / "example_mw41.nc"
STEM = "BCO_sounding_20190218T2041"
LAUNCH = np.datetime64("2019-02-18T20:41:24", "ns")


@pytest.fixture(scope="module")
def raw() -> xr.Dataset:
    return open_level1(NC)


@pytest.fixture(scope="module")
def fixed() -> xr.Dataset:
    return open_level1(NC, fix_launch_time=True)


@pytest.fixture(scope="module")
def l2(fixed: xr.Dataset) -> xr.Dataset:
    return level2(fixed)


def tree(path: Path) -> dict[str, bytes]:
    """Every file below ``path`` (hidden ones included) by relative name."""
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }


def ascending(altitude: np.ndarray) -> np.ndarray:
    """Reference for the ascent selection, written as a plain loop."""
    keep, top = [], -np.inf
    for i, z in enumerate(altitude):
        if z > top:
            keep.append(i)
            top = z
    return np.array(keep)


# --- level 1 ---------------------------------------------------------------------------


def test_netcdf_opens(raw: xr.Dataset) -> None:
    assert dict(raw.sizes) == {"trajectory": 1, "levels": 5783}
    for name in ("altitude", "pressure", "temperature", "humidity", "windSpeed", "windDirection"):
        assert raw[name].dims == ("trajectory", "levels")
    assert raw.attrs["launch_unixtime"] == 1550522484
    assert raw.attrs["platform_name"] == "Barbados Cloud Observatory (BCO)"
    assert float(raw.altitude.min()) == 25.0
    assert float(raw.temperature[0, 0]) == pytest.approx(26.4)
    assert np.isnan(raw.mixingRatio).all()  # the file holds only fill values here


def test_launch_time_is_undecodable_without_the_fix(raw: xr.Dataset) -> None:
    with pytest.raises(ValueError, match="unable to decode time"):
        xr.open_dataset(NC, engine="netcdf4")
    assert float(raw.launch_time[0]) > 1e36  # the netCDF default fill value
    with pytest.raises(ValueError, match="unable to decode time"):
        xr.decode_cf(raw[["launch_time"]])
    assert "history" not in raw.attrs


def test_fix_sets_the_launch_time(raw: xr.Dataset, fixed: xr.Dataset) -> None:
    assert fixed.launch_time.dtype == np.dtype("datetime64[ns]")
    assert fixed.launch_time.values[0] == LAUNCH
    assert fixed.launch_time.encoding["units"].startswith("seconds since 1970-01-01")
    assert "units" not in fixed.launch_time.attrs
    assert fixed.flight_time.attrs["units"] == "s"
    assert "launch_unixtime=1550522484" in fixed.attrs["history"]
    # Nothing else changed, and the raw dataset was not touched.
    times = ["launch_time", "flight_time"]
    xr.testing.assert_identical(
        raw.drop_vars(times).drop_attrs(deep=False), fixed.drop_vars(times).drop_attrs(deep=False)
    )
    np.testing.assert_array_equal(raw.flight_time.values, fixed.flight_time.values)
    assert raw.flight_time.attrs["units"] == "seconds since launchtime"


def test_fixed_times_are_cf_encoded(fixed: xr.Dataset, tmp_path: Path) -> None:
    fixed.drop_vars("trajectory").to_netcdf(tmp_path / "fixed.nc", engine="netcdf4")
    with xr.open_dataset(tmp_path / "fixed.nc", engine="netcdf4") as back:
        assert back.launch_time.values[0] == LAUNCH
        assert back.flight_time.dtype == np.float32  # a duration in s, not a date


# --- zarr ------------------------------------------------------------------------------


def test_zarr_copy_equals_the_netcdf(fixed: xr.Dataset, tmp_path: Path) -> None:
    store = to_zarr(fixed, tmp_path / "l1.zarr")
    assert (store / ".zmetadata").is_file() and (store / ".zgroup").is_file()
    with xr.open_zarr(store, consolidated=True) as back:
        xr.testing.assert_identical(back.load(), fixed)
    with xr.open_zarr(DATA / f"{STEM}_level1.zarr", consolidated=True) as committed:
        xr.testing.assert_identical(committed.load(), fixed)
    raw_nc = xr.open_dataset(NC, engine="netcdf4", decode_times=False)
    with raw_nc, xr.open_zarr(store, decode_times=False) as back:
        for name in ("altitude", "pressure", "temperature", "humidity", "windSpeed"):
            np.testing.assert_array_equal(back[name].values, raw_nc[name].values)


def test_zarr_bytes_are_deterministic(fixed: xr.Dataset, l2: xr.Dataset, tmp_path: Path) -> None:
    for name, ds in (("l1", fixed), ("l2", l2)):
        first = tree(to_zarr(ds, tmp_path / f"{name}-a.zarr"))
        second = tree(to_zarr(ds, tmp_path / f"{name}-b.zarr"))
        assert first == second
        assert ".zmetadata" in first and any(k.endswith("/.zarray") for k in first)
    # A fresh interpreter with another hash seed writes the same bytes, too.
    script = (
        "import sys; from howto.sounding import open_level1, to_zarr; "
        "to_zarr(open_level1(sys.argv[1], fix_launch_time=True), sys.argv[2])"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = tmp_path / "l1-c.zarr"
    subprocess.run([sys.executable, "-c", script, str(NC), str(out)], check=True, env=env)
    assert tree(out) == tree(tmp_path / "l1-a.zarr")


def test_committed_products_are_reproducible(tmp_path: Path) -> None:
    written = build_products(DATA, tmp_path, fix_launch_time=True)
    assert [p.name for p in written] == [f"{STEM}_level1.zarr", f"{STEM}_level2.zarr"]
    for path in written:
        assert tree(path) == tree(DATA / path.name), (
            f"{path.name} is stale: run `python -m howto.sounding catalogs/data/BCO/radiosondes`"
        )


def test_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(DATA), str(tmp_path), "--no-fix-launch-time"]) == 0
    assert capsys.readouterr().out.split() == [
        str(tmp_path / f"{STEM}_level1.zarr"),
        str(tmp_path / f"{STEM}_level2.zarr"),
    ]
    with pytest.raises(ValueError, match="unable to decode time"):
        xr.open_zarr(tmp_path / f"{STEM}_level1.zarr")  # the defect travels unrepaired


def test_product_stem(raw: xr.Dataset) -> None:
    assert product_stem(raw) == STEM


# --- level 2 ---------------------------------------------------------------------------


def test_level2_grid_is_exactly_10_m(l2: xr.Dataset) -> None:
    alt = l2.alt.values
    assert list(l2.dims) == ["alt"]
    assert alt[0] == 30.0 and alt[-1] == 23860.0
    assert np.all(np.diff(alt) == 10.0)
    assert np.all(alt % 10.0 == 0.0)
    assert l2.alt.attrs["standard_name"] == "altitude" and l2.alt.attrs["units"] == "m"


def test_level2_has_no_missing_values_and_cf_attributes(l2: xr.Dataset) -> None:
    assert "mixingRatio" not in l2  # all missing in level 1
    for name, var in l2.data_vars.items():
        assert not np.isnan(var.values).any(), name
        assert var.attrs["units"] and var.attrs["long_name"], name
    assert l2.temperature.attrs["standard_name"] == "air_temperature"
    assert l2.u.attrs["standard_name"] == "eastward_wind"
    assert l2.launch_time.values == LAUNCH
    assert "10 m" in l2.attrs["description"] and "log(p)" in l2.attrs["description"]
    assert "howto.sounding.level2" in l2.attrs["history"]
    assert "launch_unixtime" in l2.attrs["history"]  # level-1 history carried on


def test_level2_values_are_bounded_by_the_raw_profile(raw: xr.Dataset, l2: xr.Dataset) -> None:
    for name in ("temperature", "dewPoint", "humidity", "pressure", "latitude", "longitude"):
        lo, hi = float(raw[name].min()), float(raw[name].max())
        assert lo <= float(l2[name].min()) and float(l2[name].max()) <= hi, name
    assert float(l2.windSpeed.max()) <= float(raw.windSpeed.max())
    assert float(l2.windDirection.min()) >= 0.0 and float(l2.windDirection.max()) < 360.0
    assert np.all(np.diff(l2.pressure.values) <= 0)  # pressure never rises with height


def test_level2_matches_numpy_interp(raw: xr.Dataset, l2: xr.Dataset) -> None:
    z_all = raw.altitude.values[0].astype("float64")
    keep = ascending(z_all)
    assert keep.size == 5777  # the BCO ascent has six levels that are not new heights
    z = z_all[keep]
    at = np.array([100.0, 1000.0, 2500.0, 5000.0, 12340.0, 20000.0])
    got = l2.sel(alt=at)
    for name in ("temperature", "humidity", "latitude", "flight_time"):
        expect = np.interp(at, z, raw[name].values[0].astype("float64")[keep])
        np.testing.assert_allclose(got[name].values, expect, rtol=1e-6, err_msg=name)
    log_p = np.log(raw.pressure.values[0].astype("float64")[keep])
    np.testing.assert_allclose(got.pressure.values, np.exp(np.interp(at, z, log_p)), rtol=1e-6)
    # Where a raw level sits on the grid, level 2 gives back its values.
    on_grid = keep[(z % 10.0 == 0.0) & (raw.windSpeed.values[0][keep] > 2.0)][:50]
    assert on_grid.size > 10
    got = l2.sel(alt=z_all[on_grid])
    np.testing.assert_array_equal(got.temperature.values, raw.temperature.values[0][on_grid])
    np.testing.assert_allclose(got.windSpeed.values, raw.windSpeed.values[0][on_grid], atol=1e-4)
    turn = (got.windDirection.values - raw.windDirection.values[0][on_grid] + 180.0) % 360 - 180
    np.testing.assert_allclose(turn, 0.0, atol=1e-3)


def test_level2_uses_the_ascent_only(fixed: xr.Dataset, l2: xr.Dataset) -> None:
    # Append a fake descent through the whole profile with absurd values: nothing changes.
    descent = fixed.isel(levels=slice(None, None, -1)).copy(deep=True)
    descent["temperature"] = descent.temperature + 100.0
    both = xr.concat([fixed, descent], dim="levels", data_vars="minimal", coords="minimal")
    xr.testing.assert_equal(level2(both), l2)


def test_level2_drops_levels_with_missing_values(fixed: xr.Dataset) -> None:
    holes = fixed.copy(deep=True)
    holes["temperature"][0, 1000:1100] = np.nan
    result = level2(holes)
    assert not np.isnan(result.temperature).any()
    assert result.sizes["alt"] == 2384
    assert "5677 of 5783 levels" in result.attrs["history"]


def test_level2_refuses_several_soundings(fixed: xr.Dataset) -> None:
    two = xr.concat([fixed, fixed], dim="trajectory")
    with pytest.raises(ValueError, match="one sounding"):
        level2(two)
