"""Reads from a gateway at network distance: howto against the physical limit and ipfsspec.

Loopback hides what decides a remote read (round trips), so every figure here goes
through ``howto.relay``: ``howto serve`` in its own process, behind a relay that delays
every byte by half the round-trip time each way and caps the bandwidth (default 25 ms and
100 MB/s, printed with every figure).

- *one stream* (L, the physical limit): the whole zarr store (100 MB in 400 chunks) as
  one CAR (``dag-scope=all``), read by a plain HTTP client.  Every other figure is a
  multiple of it.
- *xarray*: ``xr.open_zarr("ipfs://…").load()``, verified, with a new file system and an
  empty repository each time (a cold read).  Goal: at most 1.5 L, and at least three
  times faster than unmodified ipfsspec reading the same through the same relay.
- *zarr*: zarr's own concurrent read, ``zarr.open_group(…)["v"][:]``.  Goal: at most
  1.5 L and faster than ipfsspec.
- *one chunk*: the bytes the relay carried to read one chunk of the 400 (metadata
  included).  Goal: at most the chunk and 2 MiB.
- *large file*: a 512 MiB file read as ``howto cat`` reads it (CAR windows, verified).
  Goal: at least 80 % of the bandwidth cap.

Best of ``--repeat`` runs, taking turns.  Exits 1 when a goal is missed (not with
``--no-goal``).  Usage: ``python benchmarks/bench_remote.py [--rtt-ms 25]
[--bandwidth-mb 100] [--zarr-mb 100] [--file-mb 512] [--repeat 3] [--no-goal]``
"""

from __future__ import annotations

import argparse
import http.client
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import xarray as xr
from bench_gateway import make_zarr, sha256_speed, start_gateway, take_turns

MB = 10**6
MIB = 1 << 20
GOALS = {"xarray": 1.5, "zarr": 1.5}  # times one stream
IPFSSPEC_FACTOR = 3.0  # xarray through howto at least this much faster than ipfsspec
CHUNK_EXTRA = 2 * MIB
FILE_SHARE = 0.8  # of the bandwidth cap


def one_stream(url: str, cid: object) -> int:
    """Read the whole DAG under ``cid`` as one CAR, as a plain client would; its size."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=300)
    connection.request(
        "GET",
        f"/ipfs/{cid}?format=car&dag-scope=all",
        headers={"Accept": "application/vnd.ipld.car"},
    )
    response = connection.getresponse()
    size = 0
    while piece := response.read(MIB):
        size += len(piece)
    connection.close()
    return size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rtt-ms", type=float, default=25.0, help="round trip (default 25)")
    parser.add_argument("--bandwidth-mb", type=float, default=100.0, help="MB/s (default 100)")
    parser.add_argument("--zarr-mb", type=int, default=100, help="zarr size (default 100)")
    parser.add_argument("--file-mb", type=int, default=512, help="file size in MiB (512)")
    parser.add_argument("--repeat", type=int, default=3, help="runs, best kept (default 3)")
    parser.add_argument("--no-goal", action="store_true", help="report only")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=UserWarning)  # zarr v2 format notices

    sha = sha256_speed()
    latency, bandwidth = args.rtt_ms / 2000, args.bandwidth_mb * MB
    print(f"sha256 on this machine: {sha / MB:.0f} MB/s", flush=True)
    print(f"relay: {args.rtt_ms:g} ms round trip, {bandwidth / MB:.0f} MB/s each way", flush=True)
    with tempfile.TemporaryDirectory(prefix="howto-bench-remote-") as tmp:
        tmp = Path(tmp)
        for name in ("IPFS_GATEWAY", "IPFS_PATH", "HOWTO_GATEWAYS"):
            os.environ.pop(name, None)
        os.environ["HOME"] = str(tmp)
        import fsspec
        import ipfsspec
        import zarr

        from howto import fs as howto_fs
        from howto.blocks.repo import Repo
        from howto.relay import relay
        from howto.retrieval.reader import DagReader
        from howto.retrieval.sources import default_chain
        from howto.unixfs.add import add

        local = tmp / "data.zarr"
        expected = make_zarr(local, args.zarr_mb)
        nbytes = expected["v"].nbytes
        chunk_bytes = (local / "v" / "0.0").stat().st_size
        chunks = sum(not p.name.startswith(".") for p in (local / "v").iterdir())
        options = {"cid_version": 1, "raw_leaves": True, "hidden": True}
        zarr_cid = add(local, repo=Repo(tmp / "served"), **options)
        big = tmp / "big.bin"
        size = args.file_mb * MIB
        with open(big, "wb") as f:
            rng = np.random.default_rng(7)
            for offset in range(0, size, 16 * MIB):
                f.write(rng.bytes(min(16 * MIB, size - offset)))
        file_cid = add(big, repo=Repo(tmp / "served"), cid_version=1, raw_leaves=True)
        empties = iter(range(10**6))

        def empty_repo() -> None:
            os.environ["HOWTO_REPO"] = str(tmp / f"empty-{next(empties)}")

        process, near = start_gateway(tmp / "served")
        try:
            with relay(near, latency=latency, bandwidth=bandwidth) as far:
                remote = f"ipfs://{zarr_cid}"

                def with_fs(kind: type) -> dict:
                    fsspec.register_implementation("ipfs", kind, clobber=True)
                    empty_repo()
                    if kind is howto_fs.VerifiedIPFSFileSystem:
                        kind.clear_instance_cache()
                        return {"gateway_addr": far.url, "timeout": 300}
                    return {"gateway_addr": far.url}

                def xarray_read(kind: type) -> xr.Dataset:
                    return xr.open_zarr(remote, storage_options=with_fs(kind)).load()

                def zarr_read(kind: type) -> np.ndarray:
                    group = zarr.open_group(remote, mode="r", storage_options=with_fs(kind))
                    return group["v"][:]

                verified, plain = howto_fs.VerifiedIPFSFileSystem, ipfsspec.AsyncIPFSFileSystem
                runs = {
                    "stream": lambda: one_stream(far.url, zarr_cid),
                    "xarray": lambda: xarray_read(verified),
                    "zarr": lambda: zarr_read(verified),
                    "ipfsspec xarray": lambda: xarray_read(plain),
                    "ipfsspec zarr": lambda: zarr_read(plain),
                }
                for name, run in runs.items():  # check every route once
                    got = run()
                    values = got if isinstance(got, np.ndarray) else getattr(got, "v", None)
                    if values is not None and not np.array_equal(
                        np.asarray(values), expected["v"].values
                    ):
                        raise SystemExit(f"the {name} read differs from the original")
                times = take_turns(runs, args.repeat)

                before = far.counts()["bytes_down"]
                group = zarr.open_group(remote, mode="r", storage_options=with_fs(verified))
                one = group["v"][0:50, 0:625]
                time.sleep(1.0)  # whatever was fetched ahead has arrived and is counted
                one_chunk = far.counts()["bytes_down"] - before
                if not np.array_equal(one, expected["v"].values[0:50, 0:625]):
                    raise SystemExit("the one-chunk read differs from the original")

                empty_repo()
                streamer = DagReader(default_chain(gateways=[far.url], timeout=300))

                def stream_file() -> int:
                    with open(os.devnull, "wb", buffering=0) as sink:
                        return streamer.read_to(sink, file_cid)

                if stream_file() != size:
                    raise SystemExit("the large file read came back short")
                file_times = take_turns({"file": stream_file}, args.repeat)
                carried = far.counts()
        finally:
            process.terminate()
            process.wait(10)
            fsspec.register_implementation("ipfs", ipfsspec.AsyncIPFSFileSystem, clobber=True)

    best = {name: min(t) for name, t in times.items()}
    limit = best["stream"]
    print()
    print(
        f"zarr, {nbytes / MB:.0f} MB in {chunks} chunks through the relay "
        f"({args.rtt_ms:g} ms, {bandwidth / MB:.0f} MB/s), best of {args.repeat}:"
    )
    for name, label in [
        ("stream", "one stream, a CAR of it all (L)"),
        ("xarray", "xr.open_zarr(ipfs://).load(), howto"),
        ("zarr", "zarr.open_group(ipfs://)[v][:], howto"),
        ("ipfsspec xarray", "xr.open_zarr(ipfs://).load(), ipfsspec"),
        ("ipfsspec zarr", "zarr.open_group(ipfs://)[v][:], ipfsspec"),
    ]:
        runs_text = ", ".join(f"{t:.2f}" for t in times[name])
        print(f"  {label:42s}{best[name]:7.2f} s  {best[name] / limit:5.2f} L  ({runs_text})")
    speedup = best["ipfsspec xarray"] / best["xarray"]
    print(
        f"  howto is {speedup:.1f}x faster than ipfsspec (xarray), "
        f"{best['ipfsspec zarr'] / best['zarr']:.1f}x (zarr)"
    )
    print(
        f"one chunk of {chunks} ({chunk_bytes} bytes): the relay carried {one_chunk} bytes "
        f"({(one_chunk - chunk_bytes) / MIB:.2f} MiB more)"
    )
    file_speed = size / min(file_times["file"])
    print(
        f"large file, {size / MB:.0f} MB, verified: {file_speed / MB:.0f} MB/s = "
        f"{file_speed / bandwidth:.2f} of the cap (sha256 {sha / MB:.0f} MB/s)"
    )
    print(
        f"the relay carried {carried['bytes_down'] / MB:.0f} MB down, "
        f"{carried['bytes_up'] / MB:.1f} MB up, in {carried['connections']} connections"
    )

    failed = []
    for name, goal in GOALS.items():
        if best[name] / limit > goal:
            failed.append(f"{name} at {best[name] / limit:.2f} L > {goal} L")
    if speedup < IPFSSPEC_FACTOR:
        failed.append(f"xarray only {speedup:.1f}x faster than ipfsspec < {IPFSSPEC_FACTOR}")
    if best["zarr"] >= best["ipfsspec zarr"]:
        failed.append("zarr's own read is not faster than with ipfsspec")
    if one_chunk > chunk_bytes + CHUNK_EXTRA:
        failed.append(f"one chunk moved {one_chunk} bytes > chunk + 2 MiB")
    if file_speed / bandwidth < FILE_SHARE:
        failed.append(f"large file at {file_speed / bandwidth:.2f} of the cap < {FILE_SHARE}")
    load, cpus = os.getloadavg()[0], os.cpu_count() or 1
    if load > cpus:
        print(f"note: load average {load:.1f} on {cpus} CPUs: wall-clock figures are noisy")
    for line in failed:
        print(f"{'missed' if args.no_goal else 'FAIL'}: {line}")
    if not failed:
        print("PASS")
    return 1 if failed and not args.no_goal else 0


if __name__ == "__main__":
    sys.exit(main())
