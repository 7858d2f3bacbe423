"""The catalog benchmark's generator and report (the timings themselves are not tested)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import intake

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_catalog.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_catalog", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_generated_catalog_has_the_files_and_entries_asked_for(tmp_path) -> None:
    bench = load_bench()
    root = bench.generate(tmp_path / "cat", files=150, entries=1400)
    assert len(list((tmp_path / "cat").rglob("*.y*ml"))) == 150
    walked = intake.open_catalog(str(root)).walk(depth=10)
    drivers = [entry.describe()["container"] for entry in walked.values()]
    assert len(walked) == 1400 + 149  # every data entry and every catalog but the root
    assert drivers.count("catalog") == 149
    urls = [
        e.describe()["args"]["urlpath"]
        for e in walked.values()
        if e.describe()["args"].get("urlpath")
    ]
    assert len(urls) == 1400
    assert {u.split("://")[0] for u in urls} == {"ipfs", "https"}


def test_the_benchmark_reports_the_reference_and_howto(tmp_path) -> None:
    args = ["--files", "20", "--entries", "60", "--repeat", "1", "--no-goal"]
    result = subprocess.run(
        [sys.executable, str(BENCH), *args], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "catalog: 20 files, 60 data entries" in out
    assert "intake.open_catalog (files on disk)" in out and "(reference)" in out
    howto_line = next(line for line in out.splitlines() if "howto.get_intake_catalog(CID)" in line)
    assert "ratio" in howto_line or "refused: CatalogError" in howto_line
