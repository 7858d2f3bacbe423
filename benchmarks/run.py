"""Run every ``benchmarks/bench_*.py`` in turn, each in its own process, then sum up.

Each benchmark prints its own figures and exits non-zero when it misses its target.
``python benchmarks/run.py [NAME ...]`` runs only the benchmarks whose file name contains
one of the NAMEs (``add`` picks ``bench_add.py``).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def discover(selected: list[str]) -> list[Path]:
    """The benchmark scripts, in name order, filtered by ``selected`` when given."""
    scripts = sorted(HERE.glob("bench_*.py"))
    if selected:
        scripts = [s for s in scripts if any(name in s.name for name in selected)]
    return scripts


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks; exit status 1 when any of them failed."""
    selected = sys.argv[1:] if argv is None else argv
    scripts = discover(selected)
    if not scripts:
        print(f"no benchmarks/bench_*.py matches {selected}", file=sys.stderr)
        return 1
    summary = []
    for script in scripts:
        print(f"=== {script.name} ===", flush=True)
        start = time.perf_counter()
        try:
            status = subprocess.run([sys.executable, str(script)], cwd=HERE.parent).returncode
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        summary.append((script.name, status, time.perf_counter() - start))
        print(flush=True)
    print("=== summary ===")
    for name, status, seconds in summary:
        verdict = "ok" if status == 0 else f"FAILED (exit {status})"
        print(f"{name:28s} {verdict:20s} {seconds:8.1f} s")
    return 0 if all(status == 0 for _, status, _ in summary) else 1


if __name__ == "__main__":
    sys.exit(main())
