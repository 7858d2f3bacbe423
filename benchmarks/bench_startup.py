"""How quickly does the ``howto`` command start?  Compared with ``python -c pass``.

A command that answers at once (``--version``, ``--help``) should cost little more than
the interpreter itself, and ``howto cat`` of a small block held locally little more than
the imports that reading a block needs (CIDs, the repository): the goals are 100 ms for
``--version`` and ``--help`` and 200 ms for ``cat``, best of the rounds.  Each command
runs as a new process, timed from outside (wall clock, and the CPU time the kernel
reports for it); the rounds take the commands in turn, so a busy moment of the machine
falls on all of them alike.

Usage: ``python benchmarks/bench_startup.py [--repeat 20] [--no-goal]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: The goals, in seconds (best of the rounds).
GOALS = {"howto --version": 0.100, "howto --help": 0.100, "howto cat (local block)": 0.200}


def howto_command() -> list[str]:
    """The ``howto`` script installed beside this interpreter (what a user runs)."""
    script = Path(sys.executable).parent / "howto"
    if script.exists():
        return [str(script)]
    found = shutil.which("howto")
    return [found] if found else [sys.executable, "-m", "howto.cli"]


def timed(cmd: list[str], env: dict) -> tuple[float, float]:
    """Wall-clock and CPU seconds of one run of ``cmd`` (which must succeed)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    errors = proc.stderr.read().decode(errors="replace").strip()
    proc.stderr.close()
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {errors}")
    return wall, usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20, help="rounds, best kept (default 20)")
    parser.add_argument("--no-goal", action="store_true", help="report only, never fail")
    args = parser.parse_args(argv)

    howto = howto_command()
    with tempfile.TemporaryDirectory(prefix="howto-bench-startup-") as tmp:
        env = {**os.environ, "HOWTO_REPO": str(Path(tmp) / "repo")}
        small = Path(tmp) / "small.txt"
        small.write_text("a small file, one block\n")
        cid = subprocess.run(
            [*howto, "add", "-Q", "--cid-version", "1", str(small)],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        ).stdout.strip()
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "python -c 'import howto'": [sys.executable, "-c", "import howto"],
            "howto --version": [*howto, "--version"],
            "howto --help": [*howto, "--help"],
            "howto cat (local block)": [*howto, "cat", cid],
        }
        for cmd in commands.values():  # warm the page cache and the bytecode caches
            timed(cmd, env)
        runs: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
        for _ in range(args.repeat):
            for name, cmd in commands.items():
                runs[name].append(timed(cmd, env))

    reference = min(wall for wall, _ in runs["python -c pass"])
    reference_cpu = min(cpu for _, cpu in runs["python -c pass"])
    print(f"howto start-up: best and median of {args.repeat} rounds, each a new process")
    print(f"reference: python -c pass, best {reference * 1000:.1f} ms ({sys.executable})")
    print(
        f"{'':28s}{'best ms':>9s}{'median ms':>11s}{'ratio':>8s}{'+ms':>8s}"
        f"{'CPU ms':>9s}{'ratio':>8s}{'goal ms':>9s}"
    )
    failures = []
    for name, measured in runs.items():
        best = min(wall for wall, _ in measured)
        median = statistics.median(wall for wall, _ in measured)
        cpu = min(c for _, c in measured)
        goal = GOALS.get(name)
        print(
            f"{name:28s}{best * 1000:9.1f}{median * 1000:11.1f}{best / reference:8.2f}"
            f"{(best - reference) * 1000:8.1f}{cpu * 1000:9.1f}{cpu / reference_cpu:8.2f}"
            f"{goal * 1000 if goal else float('nan'):9.0f}"
        )
        if goal is not None and best > goal:
            failures.append(f"{name} takes {best * 1000:.0f} ms, goal {goal * 1000:.0f} ms")
    load, cpus = os.getloadavg()[0], os.cpu_count() or 1
    busy = (
        f"; load average {load:.1f} on {cpus} CPUs, so wall times are noisy" if load > cpus else ""
    )
    print(f"(ratio: to python -c pass; +ms: what howto adds; goals on the best round{busy})")
    if args.no_goal or not failures:
        print("goals not checked (--no-goal)" if args.no_goal else "PASS")
        return 0
    print("\n".join(f"FAIL: {failure}" for failure in failures) + "\nFAILED")
    return 1


if __name__ == "__main__":
    sys.exit(main())
