"""How fast is ``howto add -n``?  Compared with sha256 itself and with ipfs-unixfs-importer.

Importing a file costs at least one sha256 pass over its bytes, so hashlib's sha256 over
the same file, read from disk in 256 KiB chunks, is the ceiling.  The goal: howto reaches
75% of it on a 1 GiB file while its peak memory stays under 150 MB.

Every contender runs in its own child process.  The Python children time their own work
(interpreter start-up and imports excluded); node is timed from outside, and the time it
needs for an empty file is subtracted.  Peak RSS comes from the kernel's rusage of each
child, collected with ``os.wait4`` (``getrusage(RUSAGE_CHILDREN)`` would give the maximum
over *all* children so far, mixing node's 1 GiB buffer into howto's figure).

Usage: ``python benchmarks/bench_add.py [--size-mib 1024] [--repeat 3] [--no-oracle]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
MIN_RATIO = 0.75
MAX_RSS_BYTES = 150 * 10**6
MB = 10**6

SHA256_CHILD = """
import hashlib, json, sys, time
buf = bytearray(262144)
view = memoryview(buf)
h = hashlib.sha256()
start, cpu = time.perf_counter(), time.process_time()
with open(sys.argv[1], "rb", buffering=0) as f:
    while n := f.readinto(buf):
        h.update(view[:n])
seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
print(json.dumps({"seconds": seconds, "cpu": cpu, "result": h.hexdigest()}))
"""

HOWTO_CHILD = """
import json, sys, time
from howto import add
start, cpu = time.perf_counter(), time.process_time()
cid = add(sys.argv[1], only_hash=True, cid_version=int(sys.argv[2]))
seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
print(json.dumps({"seconds": seconds, "cpu": cpu, "result": str(cid)}))
"""


@dataclass
class Run:
    seconds: float  # wall-clock time of the work
    cpu: float  # CPU time (user + system) of the work
    result: str
    max_rss: int  # bytes


def measure(cmd: list[str], timed_outside: bool = False) -> Run:
    """Run ``cmd``; its time (its own report, or wall time), output and peak RSS."""
    with tempfile.TemporaryFile() as errors:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errors, cwd=ROOT)
        out = proc.stdout.read().decode()
        proc.stdout.close()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        if proc.returncode:
            errors.seek(0)
            message = errors.read().decode(errors="replace").strip()
            raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}): {message}")
    max_rss = usage.ru_maxrss * 1024  # kilobytes on Linux
    if timed_outside:
        return Run(wall, usage.ru_utime + usage.ru_stime, out.strip(), max_rss)
    report = json.loads(out)
    return Run(report["seconds"], report["cpu"], report["result"], max_rss)


def ensure_oracle() -> Path | None:
    """The npm importer the test suite uses, installed the same way when missing."""
    if shutil.which("node") is None:
        print("ipfs-unixfs-importer: skipped, node is not installed")
        return None
    if shutil.which("npm") is None:
        print("ipfs-unixfs-importer: skipped, npm is not installed")
        return None
    sys.path.insert(0, str(TESTS))
    from conftest import install_oracle

    print("ipfs-unixfs-importer: installing into tests/.oracle when missing", flush=True)
    return install_oracle()


def write_random_file(path: Path, size: int) -> None:
    block = 4 * 1024 * 1024
    with open(path, "wb") as f:
        remaining = size
        while remaining:
            n = min(block, remaining)
            f.write(os.urandom(n))
            remaining -= n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="file size (default 1024)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds, best kept (default 3)")
    parser.add_argument("--no-oracle", action="store_true", help="skip ipfs-unixfs-importer")
    args = parser.parse_args(argv)

    oracle = None if args.no_oracle else ensure_oracle()
    size = args.size_mib * 1024 * 1024
    python = sys.executable
    contenders: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory(prefix="howto-bench-add-") as tmp:
        data = Path(tmp) / "data.bin"
        empty = Path(tmp) / "empty.bin"
        empty.write_bytes(b"")
        print(f"writing {args.size_mib} MiB of random bytes to {data} ...", flush=True)
        write_random_file(data, size)
        contenders["sha256 (hashlib)"] = [python, "-c", SHA256_CHILD, str(data)]
        contenders["howto add -n (CIDv0)"] = [python, "-c", HOWTO_CHILD, str(data), "0"]
        contenders["howto add -n --cid-version 1"] = [python, "-c", HOWTO_CHILD, str(data), "1"]
        if oracle:
            contenders["ipfs-unixfs-importer"] = ["node", str(oracle), "default", "0", str(data)]

        measure(contenders["sha256 (hashlib)"])  # warm the page cache and the interpreter
        node_startup = Run(0.0, 0.0, "", 0)
        if oracle:
            node_cmd = ["node", str(oracle), "default", "0", str(empty)]
            starts = [measure(node_cmd, timed_outside=True) for _ in range(3)]
            node_startup = Run(min(r.seconds for r in starts), min(r.cpu for r in starts), "", 0)

        runs: dict[str, list[Run]] = {name: [] for name in contenders}
        for round_ in range(1, args.repeat + 1):
            for name, cmd in contenders.items():
                outside = cmd[0] == "node"
                run = measure(cmd, timed_outside=outside)
                if outside:
                    run.seconds = max(run.seconds - node_startup.seconds, 1e-9)
                    run.cpu = max(run.cpu - node_startup.cpu, 1e-9)
                runs[name].append(run)
                print(
                    f"  round {round_}: {name:30s} {size / run.seconds / MB:8.1f} MB/s"
                    f" ({size / run.cpu / MB:6.1f} MB per CPU second)"
                    f"  peak RSS {run.max_rss / MB:7.1f} MB",
                    flush=True,
                )

    sha = runs["sha256 (hashlib)"]
    ceiling = min(r.seconds for r in sha)
    cpu_ceiling = min(r.cpu for r in sha)
    print()
    print(f"howto add benchmark: {args.size_mib} MiB file, best of {args.repeat} rounds")
    if oracle:
        print(f"(node start-up, {node_startup.seconds:.2f} s, subtracted for the npm importer)")
    print(
        f"{'':30s}{'MB/s':>8s}{'ratio':>8s}{'MB/CPU-s':>10s}{'ratio':>8s}{'peak RSS MB':>13s}"
        "  result"
    )
    for name, name_runs in runs.items():
        best = min(r.seconds for r in name_runs)
        cpu = min(r.cpu for r in name_runs)
        rss = max(r.max_rss for r in name_runs)
        print(
            f"{name:30s}{size / best / MB:8.1f}{ceiling / best:8.3f}{size / cpu / MB:10.1f}"
            f"{cpu_ceiling / cpu:8.3f}{rss / MB:13.1f}  {name_runs[0].result}"
        )
    print("(ratio: throughput relative to sha256; wall-clock, then per CPU second)")
    load, cpus = os.getloadavg()[0], os.cpu_count() or 1
    if load > cpus:
        print(f"note: load average {load:.1f} on {cpus} CPUs, wall-clock figures are noisy")
    failures = []
    for name in ("howto add -n (CIDv0)", "howto add -n --cid-version 1"):
        per_round = [s.seconds / r.seconds for s, r in zip(sha, runs[name], strict=True)]
        best_ratio = ceiling / min(r.seconds for r in runs[name])
        rss = max(r.max_rss for r in runs[name])
        print(
            f"{name}: {best_ratio:.3f} of sha256's throughput (rounds: "
            f"{', '.join(f'{x:.3f}' for x in per_round)}; median "
            f"{statistics.median(per_round):.3f}), peak RSS {rss / MB:.1f} MB"
        )
        if best_ratio < MIN_RATIO:
            failures.append(f"{name} reaches {best_ratio:.2f} of sha256, below {MIN_RATIO}")
        if rss >= MAX_RSS_BYTES:
            failures.append(f"{name} peaked at {rss / MB:.0f} MB, limit {MAX_RSS_BYTES / MB:.0f}")
    if oracle:
        ours = runs["howto add -n --cid-version 1"][0].result
        theirs = runs["ipfs-unixfs-importer"][0].result
        agree = "yes" if ours == theirs else "NO"
        print(f"CIDv1 root agrees with ipfs-unixfs-importer: {agree}")
        if ours != theirs:
            failures.append(f"CID mismatch: howto {ours}, ipfs-unixfs-importer {theirs}")
    for failure in failures:
        print(f"FAIL: {failure}")
    print("PASS" if not failures else "FAILED")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
