"""Buckets: ``howto add s3://…`` against ``howto add`` of the local copy, and a verified
``ipfs://`` zarr read whose blocks live in a bucket repository against s3fs reading the
same zarr straight from the bucket.

Both run against the local S3 server (moto, one Python process on 127.0.0.1), in one run,
so the figures are ratios measured side by side.  The server is slow compared with a real
object store, and its cost shows in both contenders; to say how much of each figure is the
server's, the benchmark also times plain s3fs downloads of the same bytes (no hashing,
no zarr) and sha256 over them in memory.

Goals: a bucket-backed verified zarr read within 1.5x of s3fs's direct read.  ``howto
add s3://…`` has no fixed goal (it must download what the local add reads from disk); its
ratio and the server's share of it are reported.

Usage: ``python benchmarks/bench_bucket.py [--size-mib 96] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import xarray as xr

from howto.blocks.bucket import BucketRepo
from howto.fs import enable
from howto.s3server import local_s3
from howto.unixfs.add import add
from howto.unixfs.remote import WINDOW

MB = 10**6
MAX_ZARR_RATIO = 1.5


def best(fn, repeat: int) -> tuple[float, object]:
    """The fastest of ``repeat`` runs of ``fn`` (seconds) and its last result."""
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def make_tree(root: Path, size: int) -> Path:
    """Many 1 MiB files and one large one, like a zarr store with a big companion file."""
    tree = root / "tree"
    (tree / "chunks").mkdir(parents=True)
    rng = np.random.default_rng(0)
    small = size // 2 // (1 << 20)
    for i in range(small):
        (tree / "chunks" / f"{i:04d}").write_bytes(rng.bytes(1 << 20))
    (tree / "large.bin").write_bytes(rng.bytes(size - small * (1 << 20)))
    return tree


def make_zarr(root: Path, size: int) -> Path:
    values = np.random.default_rng(1).standard_normal(size // 8)
    ds = xr.Dataset({"v": (("x",), values)})
    target = root / "d.zarr"
    ds.to_zarr(
        target,
        zarr_format=2,
        consolidated=True,
        encoding={"v": {"chunks": (1 << 20) // 8, "compressors": None}},
    )
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=96)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--no-goal", action="store_true", help="report only (for a quick run on tiny data)"
    )
    args = parser.parse_args()
    size = args.size_mib << 20
    enable()
    with tempfile.TemporaryDirectory() as tmp, local_s3(["bench"], environ=True) as s3:
        root = Path(tmp)
        fs = s3.filesystem()
        tree = make_tree(root, size)
        fs.put(str(tree), "bench/tree", recursive=True)
        files = sorted(str(p.relative_to(tree)) for p in tree.rglob("*") if p.is_file())
        remote = [f"bench/tree/{name}" for name in files]

        contents = [(tree / name).read_bytes() for name in files]

        def sha256_memory() -> None:
            for data in contents:
                hashlib.sha256(data).digest()

        # the bare download: every byte once, in 16 MiB ranges, all requests at once
        ranges = [
            (path, start, min(start + WINDOW, len(data)))
            for path, data in zip(remote, contents, strict=True)
            for start in range(0, max(len(data), 1), WINDOW)
        ]

        def download() -> None:
            fs.cat_ranges(*map(list, zip(*ranges, strict=True)))

        t_sha, _ = best(sha256_memory, args.repeat)
        t_local, cid_local = best(lambda: add(tree, only_hash=True), args.repeat)
        t_s3, cid_s3 = best(lambda: add("s3://bench/tree", only_hash=True), args.repeat)
        t_get, _ = best(download, args.repeat)
        assert cid_s3 == cid_local, (cid_s3, cid_local)

        store = make_zarr(root, size)
        fs.put(str(store), "bench/d.zarr", recursive=True)
        repo = BucketRepo("s3://bench/repo")
        cid = add(store, repo=repo, hidden=True, cid_version=1, chunker="size-1048576")

        def s3fs_read() -> float:
            opened = xr.open_dataset(
                "s3://bench/d.zarr", engine="zarr", chunks={}, storage_options=s3.storage_options
            )
            return float(opened.v.sum())

        ipfs_options = {"repo": "s3://bench/repo", "offline": True, "skip_instance_cache": True}

        def ipfs_read() -> float:
            opened = xr.open_dataset(
                f"ipfs://{cid}", engine="zarr", chunks={}, storage_options=ipfs_options
            )
            return float(opened.v.sum())

        t_direct, total_direct = best(s3fs_read, args.repeat)
        t_verified, total_verified = best(ipfs_read, args.repeat)
        assert total_direct == total_verified

    mb = size / MB
    print(f"data: {mb:.0f} MB ({len(files)} files); best of {args.repeat}")
    print(f"sha256 in memory:                 {mb / t_sha:8.1f} MB/s")
    print(f"howto add -n, local copy:         {mb / t_local:8.1f} MB/s")
    print(f"howto add -n s3://…:              {mb / t_s3:8.1f} MB/s")
    print(f"s3fs download only (local server):{mb / t_get:8.1f} MB/s (16 MiB ranges at once)")
    print(
        f"add s3:// / add local: {t_s3 / t_local:.2f}x; the server's download alone is "
        f"{t_get / t_s3:.0%} of add s3://"
    )
    ratio = t_verified / t_direct
    print(f"zarr read, s3fs straight from the bucket:      {mb / t_direct:8.1f} MB/s")
    print(f"zarr read, ipfs:// verified, bucket repository: {mb / t_verified:8.1f} MB/s")
    print(f"verified / direct: {ratio:.2f}x (goal <= {MAX_ZARR_RATIO})")
    print(
        f"the server's share: a bare download of as many bytes takes {t_get / t_direct:.0%} "
        f"of the direct read and {t_get / t_verified:.0%} of the verified one"
    )
    if ratio > MAX_ZARR_RATIO and not args.no_goal:
        print("FAILED: the verified read is too slow", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
