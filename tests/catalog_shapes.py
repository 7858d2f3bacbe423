"""A generated catalog tree with the shape of the EUREC4A intake catalog.

The real catalog (eurec4a-intake) is a tree of about 150 YAML files: a root that names one
sub-catalog per platform, platforms that name instruments, and instrument files with
many opendap entries (``auth: null``, ``engine: netcdf4``, ``chunks: null``).  Most files
start with ``plugins: source: [module: intake_xarray]``.  Beside those: zarr stores on
``ipfs://Qm…`` and ``ipfs://bafy…``, zarr over ``https://``, kerchunk references
(``reference://`` with ``storage_options.fo``, and ``reference::ipfs://…``),
``simplecache::https://`` netCDF files, entries with user parameters and Jinja templates,
a ``json`` driver, and one sub-catalog that includes itself.

``write_tree`` writes such a tree and returns what each entry is meant to be, so a test
can compare that with what howto makes of it.  The zarr data it points at are passed in:
CIDs of blocks the test added, and CIDs whose blocks are nowhere.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

PLUGINS = "plugins:\n  source:\n    - module: intake_xarray\n\n"
SERVER = "https://observations.example.org/thredds/dodsC/EUREC4A"
SWIFT = "https://swift.example.org/v1/dkrz_0913c8f3-e7b6-4f94-9221-06880d4ccfea"


@dataclass
class Shape:
    """What the generator wrote: each entry's dotted name → its intended verdict."""

    root: Path
    verdicts: dict[str, str] = field(default_factory=dict)
    files: int = 0
    readable: list[str] = field(default_factory=list)  # verified entries with real blocks
    missing: list[str] = field(default_factory=list)  # verified entries with no blocks

    def count(self, verdict: str) -> int:
        return sum(v == verdict for v in self.verdicts.values())


def _sub(name: str, path: str, description: str, driver: str = "yaml_file_cat") -> str:
    return (
        f'  {name}:\n    args:\n      path: "{{{{CATALOG_DIR}}}}/{path}"\n'
        f"    description: '{description}'\n    driver: {driver}\n    metadata: {{}}\n\n"
    )


def _opendap(name: str, url: str) -> str:
    return (
        f"  {name}:\n    description: measurements {name}\n    driver: opendap\n"
        f"    args:\n      urlpath: {url}\n      auth: null\n      chunks: null\n"
        "      engine: netcdf4\n    metadata:\n"
        "      maintainer: A. Person <a.person[at]example.org>\n"
        "      doi: https://doi.org/10.25326/000\n\n"
    )


def _zarr(name: str, url: str, consolidated: bool = True) -> str:
    return (
        f"  {name}:\n    args:\n      consolidated: {str(consolidated).lower()}\n"
        f"      urlpath: {url}\n    description: a zarr store\n    driver: zarr\n\n"
    )


def _references(name: str, fo: str, extra: str = "") -> str:
    return (
        f"  {name}:\n    driver: zarr\n    description: kerchunk references\n    args:\n"
        f"      urlpath: reference://\n      storage_options:\n        fo: {fo}\n{extra}"
        "      consolidated: false\n    metadata: {}\n\n"
    )


class _Writer:
    def __init__(self, shape: Shape) -> None:
        self.shape = shape

    def file(self, path: str, body: str, plugins: bool = True) -> None:
        target = self.shape.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text((PLUGINS if plugins else "") + "sources:\n\n" + body)
        self.shape.files += 1

    def expect(self, dotted: str, verdict: str) -> None:
        self.shape.verdicts[dotted] = verdict


def reference_file(zarr: Path, base: str, outside: str = "") -> str:
    """kerchunk JSON (version 1) for the zarr v2 folder ``zarr`` found at ``base`` (such as
    ``ipfs://<cid>``): metadata inline, chunks as targets under ``base``; ``outside``
    replaces one target by another URL."""
    refs: dict[str, object] = {}
    for path in sorted(p for p in zarr.rglob("*") if p.is_file()):
        key = path.relative_to(zarr).as_posix()
        if path.name.startswith(".") or path.name.endswith(".json"):
            refs[key] = path.read_text()
        else:
            refs[key] = [f"{base}/{key}"]
    if outside:
        chunk = next(k for k, v in refs.items() if isinstance(v, list))
        refs[chunk] = [outside]
    return json.dumps({"version": 1, "refs": refs})


def write_tree(
    root: Path,
    real: dict[str, str],
    nowhere: dict[str, str],
    references: dict[str, str],
    platforms: int = 50,
    instruments: int = 2,
    per_instrument: int = 12,
) -> Shape:
    """Write the tree under ``root``; return the intended verdict of every entry.

    ``real`` and ``nowhere`` map ``"Qm"``/``"bafy"`` to zarr CIDs with and without
    blocks; ``references`` maps a file name to kerchunk JSON text, written under
    ``Simulations/refs/`` (``"verified.json"``, ``"mixed.json"`` with a location among
    its targets, ``"local.json"`` with a local file among them are expected), and
    ``references["pinned"]`` is the CID of a reference file added on its own,
    ``references["nowhere"]`` that of one whose blocks are nowhere.
    """
    shape = Shape(root)
    w = _Writer(shape)
    top = ""
    for p in range(platforms):
        name = f"P{p:02d}"
        top += _sub(name, f"{name}/main.yaml", f"Data from platform {p}")
        w.expect(name, "verified")
        body = ""
        for i in range(instruments):
            inst = f"inst{i}"
            body += _sub(inst, f"{inst}.yaml", f"instrument {i}")
            w.expect(f"{name}.{inst}", "verified")
            entries = ""
            for e in range(per_instrument):
                entry = f"{name}-{i}-{e:03d}"
                entries += _opendap(entry, f"{SERVER}/{name}/{inst}/{entry}.nc")
                w.expect(f"{name}.{inst}.{entry}", "location")
            w.file(f"{name}/{inst}.yaml", entries, plugins=bool((p + i) % 7))
        w.file(f"{name}/main.yaml", body)

    # the ATR isotope analyser: a sub-catalog that names itself (and says so in its args)
    top += _sub("ATR", "ATR/main.yaml", "Data from the ATR aircraft")
    w.expect("ATR", "verified")
    w.file("ATR/main.yaml", _sub("wv", "isotope-analyzer-wv.yaml", "water vapour"))
    w.expect("ATR.wv", "verified")
    body = (
        '  CRDS:\n    args:\n      path: "{{CATALOG_DIR}}/isotope-analyzer-wv.yaml"\n'
        "      description: 'Calibrated water vapour isotopes'\n    driver: yaml_file_cat\n"
        "    metadata:\n      doi: https://doi.org/10.25326/244\n\n"
    )
    w.expect("ATR.wv.CRDS", "refused")
    body += _opendap("ATR-0125", f"{SERVER}/ATR/vapour/ATR-0125.nc")
    w.expect("ATR.wv.ATR-0125", "location")
    w.file("ATR/isotope-analyzer-wv.yaml", body, plugins=False)

    # content-addressed zarr stores, as C3ONTEXT has them
    top += _sub("c3ontext", "C3ONTEXT/C3ONTEXT.yaml", "Meso-scale patterns")
    w.expect("c3ontext", "verified")
    body = ""
    for kind in ("Qm", "bafy"):
        for n in range(3):
            body += _zarr(f"real_{kind}_{n}", f"ipfs://{real[kind]}", consolidated=False)
            w.expect(f"c3ontext.real_{kind}_{n}", "verified")
            shape.readable.append(f"c3ontext.real_{kind}_{n}")
        for n in range(2):
            body += _zarr(f"gone_{kind}_{n}", f"ipfs://{nowhere[kind]}")
            w.expect(f"c3ontext.gone_{kind}_{n}", "verified")
            shape.missing.append(f"c3ontext.gone_{kind}_{n}")
    w.file("C3ONTEXT/C3ONTEXT.yaml", body, plugins=False)

    # simulations: zarr over https, kerchunk references, a json driver
    top += _sub("simulations", "Simulations/main.yaml", "Simulation outputs")
    w.expect("simulations", "verified")
    body = ""
    for n in range(20):
        body += _zarr(f"les_{n:02d}", f"{SWIFT}/les_{n:02d}.zarr")
        w.expect(f"simulations.les_{n:02d}", "location")
    for n in range(3):
        body += _references(f"bc_{n}", f"{SWIFT}/CTRL_ERA5/bc_{n}.ref")
        w.expect(f"simulations.bc_{n}", "location")
    for name in ("verified", "mixed", "local"):
        (root / "Simulations" / "refs").mkdir(parents=True, exist_ok=True)
        (root / "Simulations" / "refs" / f"{name}.json").write_text(references[f"{name}.json"])
        body += _references(
            f"refs_{name}",
            f'"{{{{CATALOG_DIR}}}}/refs/{name}.json"',
            "        remote_protocol: ipfs\n",
        )
    w.expect("simulations.refs_verified", "verified")
    shape.readable.append("simulations.refs_verified")
    w.expect("simulations.refs_mixed", "location")  # known once its file is read
    w.expect("simulations.refs_local", "refused")  # likewise
    body += (
        "  poldirad:\n    driver: zarr\n    description: gridded radar data\n    args:\n"
        f"      urlpath: reference::ipfs://{references['pinned']}\n"
        "      consolidated: false\n    metadata:\n      doi: https://doi.org/10.25326/217\n\n"
    )
    w.expect("simulations.poldirad", "verified")
    shape.readable.append("simulations.poldirad")
    body += (
        "  poldirad_gone:\n    driver: zarr\n    args:\n"
        f"      urlpath: reference::ipfs://{references['nowhere']}\n      consolidated: false\n\n"
    )
    w.expect("simulations.poldirad_gone", "verified")
    for n in range(2):
        body += (
            f"  params_{n}:\n    args:\n      urlpath: {SWIFT}/params_{n}.json.zip\n"
            f"      compression: zip\n    description: parameters\n    driver: json\n\n"
        )
        w.expect(f"simulations.params_{n}", "refused")
    w.file("Simulations/main.yaml", body)

    # JOANNE and BCO: simplecache over https, and entries built from user parameters
    top += _sub(
        "barbados", "barbados/main.yaml", "Barbados", "intake.catalog.local.YAMLFileCatalog"
    )
    w.expect("barbados", "verified")
    body = ""
    for level in (3, 4):
        body += (
            f"  level{level}:\n    driver: netcdf\n    description: dropsondes\n    args:\n"
            f"      chunks: null\n      urlpath: simplecache::{SERVER}/JOANNE/L{level}.nc\n\n"
        )
        w.expect(f"barbados.level{level}", "location")
    for n in range(2):
        body += (
            f"  lidar_{n}:\n    driver: netcdf\n    args:\n"
            f"      urlpath: simplecache::{SERVER}/coral_{{{{date.strftime('%y%m%d')}}}}.nc\n"
            "      chunks: null\n    parameters:\n      date:\n"
            "        description: date of observation\n        type: datetime\n"
            "        default: 2020-02-01\n\n"
        )
        w.expect(f"barbados.lidar_{n}", "refused")
    body += (
        "  buckets:\n    driver: zarr\n    args:\n      urlpath: s3://eurec4a-environment/x\n"
        "      storage_options: {anon: true}\n\n"
        "  local:\n    driver: netcdf\n    args:\n      urlpath: file:///etc/hostname\n\n"
    )
    w.expect("barbados.buckets", "location")
    w.expect("barbados.local", "refused")
    w.file("barbados/main.yaml", body)

    (root / "catalog.yml").write_text(
        'description: "EUREC4A Intake Data Catalog"\n\n' + PLUGINS + "sources:\n\n" + top
    )
    shape.files += 1
    return shape


__all__ = ["Shape", "reference_file", "write_tree"]
