"""From one radiosonde sounding to its products: level 1 as zarr, and level 2.

The sounding is the EUREC4A example of the ``eurec4a-snd`` converter: a Vaisala RS41 launched
from the Barbados Cloud Observatory (BCO).  Its netCDF file is *level 1*: one record per
second of flight, on the dimensions ``(trajectory, levels)``.  This module

* opens level 1, optionally repairing its broken time variables (:func:`open_level1`),
* writes any dataset as a deterministic, consolidated zarr store (:func:`to_zarr`),
* derives *level 2*, the ascent on a regular altitude grid (:func:`level2`), and
* writes both products next to each other (:func:`build_products`), also from the shell::

      python -m howto.sounding catalogs/data/BCO/radiosondes
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr
from numcodecs import Zstd

__all__ = ["build_products", "level2", "open_level1", "product_stem", "to_zarr"]

#: The one compressor of every array we write.  Zstd runs single-threaded and has no
#: time-dependent header, so equal arrays compress to equal bytes.
COMPRESSOR = Zstd(level=5)

#: zarr format 2 (``.zarray``/``.zattrs``/``.zmetadata``): read by zarr-python 2 and 3,
#: intake-xarray and zarr.js alike, and plain files for the ipfs:// file system.
ZARR_FORMAT = 2

#: The units of level-1 ``flight_time``: they point at the launch without naming a date.
_FLIGHT_TIME_UNITS = "seconds since launchtime"

#: CF attributes of the level-2 variables (the level-1 names are kept).
_LEVEL2_ATTRS: dict[str, dict[str, str]] = {
    "alt": {
        "standard_name": "altitude",
        "long_name": "altitude above mean sea level",
        "units": "m",
        "positive": "up",
        "axis": "Z",
    },
    "flight_time": {"long_name": "time since launch", "units": "s"},
    "pressure": {"standard_name": "air_pressure", "long_name": "pressure", "units": "hPa"},
    "temperature": {
        "standard_name": "air_temperature",
        "long_name": "dry-bulb temperature",
        "units": "degree_Celsius",
    },
    "dewPoint": {
        "standard_name": "dew_point_temperature",
        "long_name": "dew-point temperature",
        "units": "degree_Celsius",
    },
    "humidity": {
        "standard_name": "relative_humidity",
        "long_name": "relative humidity over liquid water",
        "units": "%",
    },
    "mixingRatio": {
        "standard_name": "humidity_mixing_ratio",
        "long_name": "water vapour mixing ratio",
        "units": "g kg-1",
    },
    "ascentRate": {"long_name": "ascent rate of the sonde", "units": "m s-1"},
    "latitude": {"standard_name": "latitude", "long_name": "latitude", "units": "degree_north"},
    "longitude": {
        "standard_name": "longitude",
        "long_name": "longitude",
        "units": "degree_east",
    },
    "u": {"standard_name": "eastward_wind", "long_name": "eastward wind", "units": "m s-1"},
    "v": {"standard_name": "northward_wind", "long_name": "northward wind", "units": "m s-1"},
    "windSpeed": {"standard_name": "wind_speed", "long_name": "wind speed", "units": "m s-1"},
    "windDirection": {
        "standard_name": "wind_from_direction",
        "long_name": "direction the wind blows from, clockwise from north",
        "units": "degree",
    },
}

#: Global attributes of level 1 that describe the launch and still hold for level 2.
_KEPT_GLOBALS = (
    "platform_name",
    "location",
    "surface_altitude",
    "instrument",
    "radiosonde_type",
    "number_of_Probe",
    "launch_unixtime",
    "latitude_of_launch_location",
    "longitude_of_launch_location",
    "contact_person",
    "institution",
)


def _add_history(attrs: dict, line: str) -> None:
    """Append one line to ``attrs['history']`` (no time stamp: outputs stay reproducible)."""
    previous = attrs.get("history")
    attrs["history"] = f"{previous}\n{line}" if previous else line


def _launch(ds: xr.Dataset) -> dt.datetime:
    """The launch time from the global attribute ``launch_unixtime`` (UTC)."""
    if "launch_unixtime" not in ds.attrs:
        raise ValueError("the sounding has no 'launch_unixtime' attribute")
    seconds = int(ds.attrs["launch_unixtime"])
    return dt.datetime.fromtimestamp(seconds, tz=dt.UTC)


def _repair_times(ds: xr.Dataset) -> xr.Dataset:
    """Put the launch time into ``launch_time`` and make ``flight_time`` decodable."""
    ds = ds.copy()
    seconds = int(ds.attrs["launch_unixtime"])
    old = ds["launch_time"]
    launch = np.datetime64(seconds, "s").astype("datetime64[ns]")
    attrs = {k: v for k, v in old.attrs.items() if k not in ("units", "calendar")}
    fixed = xr.Variable(old.dims, np.full(old.shape, launch), attrs=attrs)
    # The file's units and calendar are right (xarray may spell the reference date in ISO
    # form when it writes); only the stored value was the fill value.
    fixed.encoding = {
        "units": old.attrs.get("units", "seconds since 1970-01-01 00:00:00 UTC"),
        "calendar": old.attrs.get("calendar", "standard"),
        "dtype": "float64",
    }
    ds["launch_time"] = fixed
    notes = [
        f"launch_time set from the global attribute launch_unixtime={seconds} "
        f"({_launch(ds):%Y-%m-%dT%H:%M:%SZ}); it held the netCDF fill value"
    ]
    flight = ds.get("flight_time")
    if flight is not None and flight.attrs.get("units") == _FLIGHT_TIME_UNITS:
        attrs = {k: v for k, v in flight.attrs.items() if k != "calendar"}
        ds["flight_time"].attrs = {**attrs, "units": "s"}
        notes.append(f"flight_time units {_FLIGHT_TIME_UNITS!r} (no CF time unit) set to 's'")
    _add_history(ds.attrs, "howto.sounding.open_level1: " + "; ".join(notes))
    return ds


def open_level1(path: str | Path, fix_launch_time: bool = False) -> xr.Dataset:
    """Read the level-1 netCDF file into memory, times left encoded unless repaired.

    The file cannot be opened with xarray's time decoding at all: ``launch_time`` holds
    the netCDF fill value (about 1e37 s, far beyond any calendar) and ``flight_time`` is
    in "seconds since launchtime", which names no date.  Both stay plain numbers here.
    With ``fix_launch_time`` the launch time is rebuilt from the global attribute
    ``launch_unixtime`` as a ``datetime64`` with CF encoding (float64 seconds since
    1970-01-01 UTC, the file's calendar), ``flight_time`` gets the units ``s`` (a
    duration), and ``history`` says so.  The input file is never modified.
    """
    with xr.open_dataset(path, engine="netcdf4", decode_times=False) as source:
        ds = source.load()
    return _repair_times(ds) if fix_launch_time else ds


def _encoding(var: xr.Variable) -> dict:
    """Fixed zarr encoding: one chunk per array, :data:`COMPRESSOR`, time units kept."""
    enc: dict = {"chunks": var.shape, "compressors": (COMPRESSOR,)}
    if np.issubdtype(var.dtype, np.datetime64):
        keys = ("units", "calendar", "dtype")
        enc.update({k: var.encoding[k] for k in keys if k in var.encoding})
    return enc


def to_zarr(ds: xr.Dataset, target: str | Path, storage_options: dict | None = None) -> Path | str:
    """Write ``ds`` as a consolidated zarr (format 2) store at ``target``, replacing it.

    The bytes depend on the data only: every array is a single chunk compressed with
    :data:`COMPRESSOR`, all-fill chunks are left out, and nothing records a time or a
    host, so writing the same dataset twice gives identical files.  ``target`` may be an
    fsspec URL (``s3://bucket/key.zarr``), opened with ``storage_options``; the objects
    written there are the same bytes as the files written on disk.
    """
    url = isinstance(target, str) and "://" in target
    target = target if url else Path(target)
    encoding = {name: _encoding(var) for name, var in ds.variables.items()}
    ds.to_zarr(
        target,
        mode="w",
        zarr_format=ZARR_FORMAT,
        consolidated=True,
        encoding=encoding,
        write_empty_chunks=False,
        **({"storage_options": storage_options} if url and storage_options else {}),
    )
    return target


def _ascent(altitude: np.ndarray) -> np.ndarray:
    """Indices of the levels where the sonde is higher than at every earlier level."""
    previous_max = np.maximum.accumulate(np.concatenate([[-np.inf], altitude[:-1]]))
    return np.flatnonzero(altitude > previous_max)


def level2(ds: xr.Dataset, step: float = 10.0) -> xr.Dataset:
    """The ascent of a level-1 sounding on a regular altitude grid, every ``step`` metres.

    Method:

    1. Variables without a single valid value (``mixingRatio`` in the BCO file) are left
       out; then every level with a missing value in any remaining variable is dropped.
    2. Ascent only: a level is kept when the sonde is higher there than at every earlier
       level, so altitude increases strictly and the descent after burst is cut off.
    3. The grid runs from the lowest to the highest kept level, at whole multiples of
       ``step`` (``30, 40, ... m`` for the BCO sounding).
    4. Each variable is interpolated linearly in altitude between the two neighbouring
       levels (:func:`numpy.interp`), except: pressure is interpolated in ``log(p)``
       (exponential in height), and wind as its components ``u`` and ``v``, from which
       ``windSpeed`` and ``windDirection`` are computed again; a direction is never
       averaged, so no spurious 180-degree turns appear where it wraps past north.

    Values are stored as float32 (the precision of level 1), the altitude as float64.
    """
    if "trajectory" in ds.dims:
        if ds.sizes["trajectory"] != 1:
            raise ValueError(f"level2 takes one sounding, not {ds.sizes['trajectory']}")
        ds = ds.isel(trajectory=0)
    if "altitude" not in ds or ds["altitude"].ndim != 1:
        raise ValueError("level2 needs a one-dimensional 'altitude' along the levels")
    (dim,) = ds["altitude"].dims
    profile = {
        name: np.asarray(var.values, dtype="float64")
        for name, var in ds.variables.items()
        if var.dims == (dim,) and name != "altitude" and np.issubdtype(var.dtype, np.number)
    }
    dropped = sorted(name for name, values in profile.items() if np.isnan(values).all())
    profile = {name: values for name, values in profile.items() if name not in dropped}
    altitude = np.asarray(ds["altitude"].values, dtype="float64")
    complete = np.isfinite(altitude) & np.all([np.isfinite(v) for v in profile.values()], 0)
    keep = np.flatnonzero(complete)
    keep = keep[_ascent(altitude[keep])]
    if keep.size < 2:
        raise ValueError("the sounding has fewer than two complete ascending levels")
    z = altitude[keep]
    profile = {name: values[keep] for name, values in profile.items()}
    first, last = int(np.ceil(z[0] / step)), int(np.floor(z[-1] / step))
    grid = np.arange(first, last + 1, dtype="float64") * step

    out: dict[str, np.ndarray] = {}
    if "windSpeed" in profile and "windDirection" in profile:
        speed = profile.pop("windSpeed")
        towards = np.deg2rad(profile.pop("windDirection"))
        u = np.interp(grid, z, -speed * np.sin(towards))
        v = np.interp(grid, z, -speed * np.cos(towards))
        out.update(u=u, v=v, windSpeed=np.hypot(u, v))
        out["windDirection"] = np.mod(180.0 + np.rad2deg(np.arctan2(u, v)), 360.0)
    for name, values in profile.items():
        if name == "pressure":
            out[name] = np.exp(np.interp(grid, z, np.log(values)))
        else:
            out[name] = np.interp(grid, z, values)

    data_vars = {
        name: ("alt", values.astype("float32"), _LEVEL2_ATTRS.get(name) or dict(ds[name].attrs))
        for name, values in sorted(out.items())
    }
    coords: dict = {"alt": ("alt", grid, _LEVEL2_ATTRS["alt"])}
    if "launch_time" in ds and ds["launch_time"].ndim == 0:
        coords["launch_time"] = ds["launch_time"].variable
    attrs = {k: ds.attrs[k] for k in _KEPT_GLOBALS if k in ds.attrs}
    attrs.update(
        title=f"Radiosonde ascent on a {step:g} m altitude grid (level 2)",
        Conventions="CF-1.8",
        featureType="profile",
        description=(
            f"Ascent of the level-1 sounding interpolated linearly in altitude onto a "
            f"regular {step:g} m grid; pressure is interpolated in log(p) and wind as its "
            f"u and v components.  Levels with missing values and levels that are not "
            f"higher than all earlier ones (no descent) are dropped first."
        ),
    )
    if "history" in ds.attrs:
        attrs["history"] = ds.attrs["history"]
    note = f"{keep.size} of {altitude.size} levels interpolated to {grid[0]:g}-{grid[-1]:g} m"
    if dropped:
        note += f"; all-missing variables left out: {', '.join(dropped)}"
    _add_history(attrs, f"howto.sounding.level2: {note}")
    result = xr.Dataset(data_vars, coords=coords, attrs=attrs)
    return result.dropna("alt", how="any")


def product_stem(ds: xr.Dataset) -> str:
    """``<platform>_sounding_<launch YYYYmmddTHHMM>``, e.g. ``BCO_sounding_20190218T2041``."""
    match = re.search(r"\(([^()]+)\)\s*$", str(ds.attrs.get("platform_name", "")))
    platform = match.group(1) if match else "sonde"
    return f"{platform}_sounding_{_launch(ds):%Y%m%dT%H%M}"


def build_products(
    source_dir: str | Path, out_dir: str | Path, fix_launch_time: bool
) -> list[Path]:
    """Write ``<stem>_level1.zarr`` and ``<stem>_level2.zarr`` for every ``*.nc`` in a folder."""
    source_dir, out_dir = Path(source_dir), Path(out_dir)
    sources = sorted(source_dir.glob("*.nc"))
    if not sources:
        raise FileNotFoundError(f"no level-1 netCDF file (*.nc) in {source_dir}")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in sources:
        ds = open_level1(path, fix_launch_time=fix_launch_time)
        stem = product_stem(ds)
        written.append(to_zarr(ds, out_dir / f"{stem}_level1.zarr"))
        written.append(to_zarr(level2(ds), out_dir / f"{stem}_level2.zarr"))
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m howto.sounding SOURCE_DIR [OUT_DIR]``: (re)build the sounding products."""
    parser = argparse.ArgumentParser(prog="python -m howto.sounding", description=main.__doc__)
    parser.add_argument("source_dir", type=Path, help="folder with the level-1 *.nc files")
    parser.add_argument("out_dir", type=Path, nargs="?", help="where to write (default: source)")
    parser.add_argument(
        "--fix-launch-time",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="repair launch_time from launch_unixtime (default: yes)",
    )
    args = parser.parse_args(argv)
    for path in build_products(
        args.source_dir, args.out_dir or args.source_dir, args.fix_launch_time
    ):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
