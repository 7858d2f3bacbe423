"""Reading through the embedded gateway, verified, against reading the same bytes from disk.

1. A zarr store of about 200 MB in 800 chunks (float64 normal random numbers, 2000 x 12500,
   chunks of 50 x 625 = 250 000 bytes, stored without compression so every chunk is its
   real size): ``xr.open_zarr("ipfs://<cid>").load()`` through ``howto.fs`` (every chunk
   checked against its CID) against ``xr.open_zarr(local_dir).load()``.  Goal: a ratio of
   at most 1.5.
   The same store is also read over ``http_floor``: the same aiohttp in the same process,
   answering from memory, with one sha256 pass per chunk and nothing else.  That floor /
   local ratio is the least any in-process verified HTTP read reaches on this machine,
   and ipfs / floor is what howto's own work adds to it.
2. One large file of random bytes: read from disk in 16 MiB pieces, streamed by a plain
   HTTP GET from the gateway (the gateway checks the blocks it reads, the client nothing),
   and read through ``VerifiedIPFSFileSystem.cat_file`` in 16 MiB ranges (both sides check).

Everything lives in a temporary repository, served on 127.0.0.1; best of ``--repeat`` runs
(the zarr reads take turns, so that a slow spell on a shared machine hits them alike).
Exits 1 when the zarr ratio misses its goal.

Usage: ``python benchmarks/bench_gateway.py [--zarr-mb 200] [--file-mb 512] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import http.client
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import xarray as xr
from http_floor import floor_server

MB = 10**6
MIB = 1 << 20
PIECE = 16 * MIB
CHUNK_SHAPE = (50, 625)  # 250 000 bytes of float64
GOAL = 1.5


def best(run: Callable[[], object], repeat: int) -> tuple[float, list[float]]:
    """The fastest of ``repeat`` wall-clock timings of ``run``, and all of them."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times), times


def take_turns(runs: dict[str, Callable[[], object]], repeat: int) -> dict[str, list[float]]:
    """Wall-clock timings of each of ``runs``, ``repeat`` rounds of one run each."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeat):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return times


def make_zarr(path: Path, megabytes: int) -> xr.Dataset:
    columns = 12500
    rows = max(CHUNK_SHAPE[0], round(megabytes * MB / 8 / columns / CHUNK_SHAPE[0]) * 50)
    data = np.random.default_rng(2024).standard_normal((rows, columns))
    ds = xr.Dataset({"v": (("t", "x"), data)}, attrs={"title": "bench_gateway"})
    encoding = {"v": {"chunks": CHUNK_SHAPE, "compressors": None}}
    ds.to_zarr(path, zarr_format=2, consolidated=True, encoding=encoding)
    return ds


def write_random_file(path: Path, size: int) -> None:
    rng = np.random.default_rng(7)
    with open(path, "wb") as f:
        for offset in range(0, size, PIECE):
            f.write(rng.bytes(min(PIECE, size - offset)))


def read_disk(path: Path) -> int:
    buf = bytearray(PIECE)
    total = 0
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            total += n
    return total


def read_http(url: str, cid: str) -> int:
    """Stream ``/ipfs/<cid>`` with a plain GET, the way an unverifying client would."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
    try:
        conn.request("GET", f"/ipfs/{cid}")
        response = conn.getresponse()
        if response.status != 200:
            raise RuntimeError(f"gateway answered {response.status}")
        total = 0
        while piece := response.read(MIB):
            total += len(piece)
        return total
    finally:
        conn.close()


def read_verified(fs, cid: str, size: int) -> int:
    total = 0
    for start in range(0, size, PIECE):
        total += len(fs.cat_file(f"ipfs://{cid}", start=start, end=min(size, start + PIECE)))
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zarr-mb", type=int, default=200, help="zarr size (default 200)")
    parser.add_argument("--file-mb", type=int, default=512, help="file size in MiB (512)")
    parser.add_argument("--repeat", type=int, default=3, help="runs, best kept (default 3)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=UserWarning)  # zarr v2 format notices

    with tempfile.TemporaryDirectory(prefix="howto-bench-gateway-") as tmp:
        tmp = Path(tmp)
        os.environ["HOWTO_REPO"] = str(tmp / "repo")  # nothing touches the user's repository
        from howto import fs as howto_fs
        from howto.add import add
        from howto.gateway import serve
        from howto.repo import Repo

        repo = Repo(tmp / "repo")
        started = time.perf_counter()
        local = tmp / "data.zarr"
        expected = make_zarr(local, args.zarr_mb)
        nbytes = expected["v"].nbytes
        chunks = sum(not p.name.startswith(".") for p in (local / "v").iterdir())
        zarr_cid = add(local, repo=repo, cid_version=1, raw_leaves=True, hidden=True)
        big = tmp / "big.bin"
        size = args.file_mb * MIB
        write_random_file(big, size)
        file_cid = add(big, repo=repo, cid_version=1, raw_leaves=True)
        print(
            f"prepared in {time.perf_counter() - started:.1f} s: zarr {nbytes / MB:.0f} MB in "
            f"{chunks} chunks ({zarr_cid}), file {size / MB:.0f} MB ({file_cid})",
            flush=True,
        )

        with serve(repo) as url:
            os.environ["IPFS_GATEWAY"] = url
            howto_fs.enable()
            remote = f"ipfs://{zarr_cid}"
            got = xr.open_zarr(remote).load()  # also warms both sides
            if not np.array_equal(got["v"].values, expected["v"].values):
                raise SystemExit("the zarr read through the gateway differs from the original")
            with floor_server(local) as floor:
                if not np.array_equal(xr.open_zarr(floor).load()["v"], expected["v"]):
                    raise SystemExit("the zarr read over http_floor differs from the original")
                xr.open_zarr(local).load()
                zarr_runs = take_turns(
                    {
                        "local": lambda: xr.open_zarr(local).load(),
                        "ipfs": lambda: xr.open_zarr(remote).load(),
                        "floor": lambda: xr.open_zarr(floor).load(),
                    },
                    args.repeat,
                )
            t_local, t_ipfs, t_floor = (min(zarr_runs[k]) for k in ("local", "ipfs", "floor"))
            ratio = t_ipfs / t_local

            vfs = howto_fs.VerifiedIPFSFileSystem(gateway_addr=url, timeout=120)
            probe = vfs.cat_file(f"ipfs://{file_cid}", start=size - 1000, end=size)
            with open(big, "rb") as f:
                f.seek(size - 1000)
                if probe != f.read():
                    raise SystemExit("the file read through the gateway differs from the original")
            t_disk, _ = best(lambda: read_disk(big), args.repeat)
            t_http, _ = best(lambda: read_http(url, str(file_cid)), args.repeat)
            t_verified, _ = best(lambda: read_verified(vfs, str(file_cid), size), args.repeat)

    def runs(times: list[float]) -> str:
        return ", ".join(f"{t:.2f}" for t in times)

    print()
    print(f"zarr, {nbytes / MB:.0f} MB in {chunks} chunks, best of {args.repeat}:")
    for name, label in [
        ("local", "xr.open_zarr(local).load()"),
        ("ipfs", "xr.open_zarr(ipfs://).load()"),
        ("floor", "xr.open_zarr(httpfloor://).load()"),
    ]:
        seconds = min(zarr_runs[name])
        print(f"  {label:35s}{seconds:7.2f} s   (runs: {runs(zarr_runs[name])})")
    print(f"  ratio ipfs / local                 {ratio:7.2f}     (goal <= {GOAL})")
    print(f"  ratio floor / local                {t_floor / t_local:7.2f}     (HTTP + one hash)")
    print(f"  ratio ipfs / floor                 {t_ipfs / t_floor:7.2f}     (howto's own cost)")
    print(f"large file, {size / MB:.0f} MB, best of {args.repeat}:")
    for name, seconds in [
        ("disk, 16 MiB reads", t_disk),
        ("gateway, plain HTTP GET", t_http),
        ("gateway, verified 16 MiB ranges", t_verified),
    ]:
        print(
            f"  {name:33s}{seconds:7.2f} s {size / seconds / MB:8.0f} MB/s"
            f"   x{seconds / t_disk:6.1f} the disk time"
        )
    load, cpus = os.getloadavg()[0], os.cpu_count() or 1
    if load > cpus:
        print(f"note: load average {load:.1f} on {cpus} CPUs: wall-clock figures are noisy")
    if ratio > GOAL:
        print(f"FAIL: the verified zarr read takes {ratio:.2f} times the local one (goal {GOAL})")
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
