"""Opening and walking a large catalog by its CID, against plain intake on the same files.

A catalog tree of EUREC4A's shape is generated here: a root, a dozen platform catalogs
and instrument catalogs under them, 150 files holding 1400 data entries (zarr stores by
``ipfs://`` CID, OPeNDAP and ``https://`` zarr locations with ``auth: null``, ``plugins``
keys, descriptions and metadata as the real catalog has them; no sub-catalog includes
itself, so both sides walk the same tree).  The tree is added to a local repository.

- *intake*: ``intake.open_catalog(<root file>)`` and ``walk(depth=10)``, from disk;
- *howto*: ``howto.get_intake_catalog(use_ipfs=CID)`` and ``walk(depth=10)``, every block
  in the local repository (read from disk and hashed, no HTTP).

Each round runs each side in its own new process, which times its own work (imports
excluded: intake, intake_xarray and howto's file system are imported before the clock
starts).  Best of ``--repeat`` rounds.  Goal: howto takes at most 1.5 times intake's
time.  Exits 1 when the goal is missed or howto cannot open the catalog (not with
``--no-goal``).

Usage: ``python benchmarks/bench_catalog.py [--files 150] [--entries 1400] [--repeat 5]
[--no-goal]``
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

GOAL = 1.5
PLATFORMS = 12

CHILD = """
import json, sys, time
import intake, intake_xarray  # noqa: F401
import howto, howto.fs, howto.catalog.pinned  # noqa: F401
side, target = sys.argv[1], sys.argv[2]
start, cpu = time.perf_counter(), time.process_time()
try:
    if side == "intake":
        cat = intake.open_catalog(target)
    else:
        cat = howto.get_intake_catalog(use_ipfs=target)
    names = sorted(cat.walk(depth=10))
except Exception as exc:
    print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
    sys.exit(0)
seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
digest = __import__("hashlib").sha256("\\n".join(names).encode()).hexdigest()[:16]
print(json.dumps({"seconds": seconds, "cpu": cpu, "names": len(names), "digest": digest}))
"""


def fake_cid(rng: random.Random) -> str:
    """A well-formed CIDv1 (dag-pb, sha2-256) of random bytes: a walk opens no data."""
    from multiformats import CID, multihash

    digest = multihash.digest(rng.randbytes(32), "sha2-256")
    return str(CID("base32", 1, "dag-pb", digest))


def data_entry(rng: random.Random, platform: str, instrument: str, i: int) -> dict:
    """One data entry, in one of the forms the real catalog uses."""
    kind = rng.random()
    metadata = {
        "platform": platform,
        "instrument": instrument,
        "level": rng.choice([1, 2, 3]),
        "maintainers": [{"name": "Someone", "email": "someone@example.org"}],
    }
    description = f"{instrument} on {platform}, product {i}: " + "measured values " * 4
    if kind < 0.55:
        base = "https://observations.example.org/thredds/dodsC/EUREC4A"
        return {
            "description": description,
            "driver": "opendap",
            "args": {"urlpath": f"{base}/{platform}/{instrument}/v{i}.nc", "auth": None,
                     "engine": "netcdf4", "chunks": {}},
            "metadata": metadata,
        }  # fmt: skip
    if kind < 0.9:
        return {
            "description": description,
            "driver": "zarr",
            "args": {"urlpath": f"ipfs://{fake_cid(rng)}", "consolidated": True},
            "metadata": metadata,
        }
    return {
        "description": description,
        "driver": "zarr",
        "args": {
            "urlpath": f"https://data.example.org/{platform}/{instrument}/{i}.zarr",
            "consolidated": True,
        },
        "metadata": metadata,
    }


def write_yaml(path: Path, sources: dict, plugins: bool = True) -> None:
    doc: dict = {}
    if plugins:
        doc["plugins"] = {"source": [{"module": "intake_xarray"}]}
    doc["sources"] = sources
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False, width=100))


def subcatalog(description: str, path: str) -> dict:
    return {"description": description, "driver": "yaml_file_cat", "args": {"path": path}}


def generate(folder: Path, files: int, entries: int, seed: int = 20200202) -> Path:
    """The catalog tree: ``files`` YAML files, ``entries`` data entries; its root file."""
    rng = random.Random(seed)
    platforms = min(PLATFORMS, (files - 1) // 2)  # each with at least one instrument
    if platforms < 1:
        raise ValueError(f"{files} files are too few: a root, a platform and an instrument")
    leaves = files - 1 - platforms
    per_platform = [leaves // platforms + (p < leaves % platforms) for p in range(platforms)]
    counts = [entries // leaves + (i < entries % leaves) for i in range(leaves)]
    leaf = 0
    root_sources = {}
    for p, instruments in enumerate(per_platform):
        platform = f"PLATFORM{p:02d}"
        platform_sources = {}
        for k in range(instruments):
            instrument = f"instrument_{k:02d}"
            sources = {
                f"{instrument}_{i:03d}": data_entry(rng, platform, instrument, i)
                for i in range(counts[leaf])
            }
            write_yaml(folder / platform / f"{instrument}.yaml", sources)
            platform_sources[instrument] = subcatalog(
                f"{instrument} on {platform}", f"{{{{CATALOG_DIR}}}}/{instrument}.yaml"
            )
            leaf += 1
        write_yaml(folder / platform / "main.yaml", platform_sources)
        root_sources[platform] = subcatalog(platform, f"{{{{CATALOG_DIR}}}}/{platform}/main.yaml")
    root = folder / "catalog.yml"
    write_yaml(root, root_sources)
    return root


def run_child(side: str, target: str, env: dict) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, side, target],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=150, help="catalog files (default 150)")
    parser.add_argument("--entries", type=int, default=1400, help="data entries (1400)")
    parser.add_argument("--repeat", type=int, default=5, help="rounds, best kept (default 5)")
    parser.add_argument("--no-goal", action="store_true", help="report only")
    args = parser.parse_args(argv)

    from howto.blocks.repo import Repo
    from howto.catalog import PROFILE
    from howto.unixfs.add import add

    with tempfile.TemporaryDirectory(prefix="howto-bench-catalog-") as tmp:
        tree = Path(tmp) / "catalog"
        root = generate(tree, args.files, args.entries)
        files = sorted(tree.rglob("*.y*ml"))
        size = sum(p.stat().st_size for p in files)
        repo = Path(tmp) / "repo"
        cid = str(add(tree, repo=Repo(repo), **PROFILE))
        print(
            f"catalog: {len(files)} files, {args.entries} data entries, {size / 1e6:.2f} MB "
            f"of YAML, root CID {cid}"
        )
        env = {**os.environ, "HOWTO_REPO": str(repo), "HOWTO_GATEWAYS": ""}
        env.pop("IPFS_GATEWAY", None)
        runs: dict[str, list[dict]] = {"intake": [], "howto": []}
        for round_ in range(1, args.repeat + 1):
            order = ["intake", "howto"] if round_ % 2 else ["howto", "intake"]
            for side in order:
                result = run_child(side, str(root) if side == "intake" else cid, env)
                runs[side].append(result)
                if "error" in result:
                    print(f"  round {round_}: {side:7s} failed: {result['error'][:300]}")
                else:
                    print(
                        f"  round {round_}: {side:7s} {result['seconds']:7.3f} s "
                        f"(CPU {result['cpu']:.3f} s), {result['names']} names walked",
                        flush=True,
                    )
    print()
    failures = []
    good = {side: [r for r in results if "error" not in r] for side, results in runs.items()}
    if not good["intake"]:
        print("FAIL: plain intake could not open the generated catalog")
        return 1
    reference = min(r["seconds"] for r in good["intake"])
    print(f"open + walk(depth=10), best of {args.repeat} rounds, each in a new process")
    print(f"  intake.open_catalog (files on disk): {reference:7.3f} s  (reference)")
    if not good["howto"]:
        error = runs["howto"][0]["error"]
        print(f"  howto.get_intake_catalog(CID):       refused: {error[:300]}")
        failures.append("howto cannot open the catalog")
    else:
        best = min(r["seconds"] for r in good["howto"])
        ratio = best / reference
        print(f"  howto.get_intake_catalog(CID):       {best:7.3f} s  ratio {ratio:.2f}")
        print(f"  goal: at most {GOAL} x intake's time")
        names = {r["names"] for r in good["howto"]} | {r["names"] for r in good["intake"]}
        digests = {r["digest"] for r in good["howto"]} | {r["digest"] for r in good["intake"]}
        same = "yes" if len(digests) == 1 else f"NO ({sorted(names)} names)"
        print(f"  both walks give the same names: {same}")
        if ratio > GOAL:
            failures.append(f"howto takes {ratio:.2f} x intake's time, above {GOAL}")
    load, cpus = os.getloadavg()[0], os.cpu_count() or 1
    if load > cpus:
        print(f"note: load average {load:.1f} on {cpus} CPUs, wall-clock figures are noisy")
    if args.no_goal:
        print("(no goal checked)")
        return 0
    for failure in failures:
        print(f"FAIL: {failure}")
    print("PASS" if not failures else "FAILED")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
