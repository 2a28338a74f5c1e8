"""bench/run.py's tables from a results file, and bench/load.py's round end to end, small.

No timings are asserted: the load generator's round must complete with every update
accepted and the global model right; the figures themselves are for `make bench`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import run as bench_run

ROOT = Path(__file__).resolve().parent.parent


def fake_results() -> dict:
    row = bench_run.row
    failed = row("gateway", "bench/gateway.py: FAILED, exit status 1: mosquitto did not start", None, "")
    failed["met"], failed["failed"] = False, True
    rows = [
        row("firmware/X25519", "firmware: X25519", 1045.0, "µs", 52.2, "libsodium", 20.0, "<= 40", "x"),
        row("coordinator/http", "coordinator ingestion over HTTP", 720.0, "msg/s", 4501.0, "crypto floor",
            0.16, ">= 0.5"),
        row("mask/derive", "CPython masking: derive mask", 2.3, "ms", 2.31, "floor", 1.004),
        failed,
    ]
    return {"started": "2026-11-28T12:00:00+00:00", "seconds": 600.0, "quick": False,
            "machine": {"platform": "Linux", "cpu": "Some CPU", "cpus": 2, "python": "3.11.7",
                        "load_average": [1.0, 0.5, 0.25]},
            "benches": {"firmware": {"seconds": 60.0, "status": "ok"},
                        "gateway": {"seconds": 3.0, "status": "exit status 1"}},
            "rows": rows, "not_run": ["bench/new.py"]}


def test_rows_know_whether_their_target_is_met():
    assert bench_run.row("a", "a", 1.0, "s", 2.0, "ref", 20.0, "<= 40", "x")["met"] is True
    assert bench_run.row("b", "b", 1.0, "s", 2.0, "ref", 0.3, ">= 0.5")["met"] is False
    assert bench_run.row("c", "c", 1.0, "s", 2.0, "ref", 0.3)["met"] is None


def test_the_tables_show_every_row_and_the_failed_benchmark():
    results = json.loads(json.dumps(fake_results()))  # as read back from results.json
    text = bench_run.tables(results)
    targets, others = text.split("Other figures")
    assert "| firmware: X25519 | 1,045 µs | libsodium 52.2 µs | 20.0x | <= 40x | yes |" in targets
    assert ("| coordinator ingestion over HTTP | 720 msg/s | crypto floor 4,501 msg/s | 0.16 | >= 0.5 "
            "| **no** |") in targets
    assert "bench/gateway.py: FAILED, exit status 1" in targets and "**no**" in targets
    assert "| CPython masking: derive mask | 2.30 ms | floor 2.31 ms | 1.00 |" in others
    assert "gateway 0.1 min (exit status 1)" in others
    assert "2 x Some CPU" in text
    assert "Not run, since bench/run.py does not read their figures yet: bench/new.py." in text


def test_only_the_text_between_the_markers_is_replaced():
    doc = f"# Performance\n\nprose before\n\n{bench_run.BEGIN}\nold table\n{bench_run.END}\n\nprose after\n"
    new = bench_run.replace_tables(doc, "new table")
    assert new == (f"# Performance\n\nprose before\n\n{bench_run.BEGIN}\nnew table\n{bench_run.END}\n"
                   "\nprose after\n")
    assert bench_run.replace_tables(new, "new table") == new
    appended = bench_run.replace_tables("# Performance\n", "table")
    assert appended == f"# Performance\n\n{bench_run.BEGIN}\ntable\n{bench_run.END}\n"


@pytest.mark.parametrize("store", ["sqlite", "redis"])
def test_the_load_generator_runs_a_whole_round(tmp_path, store):
    out = tmp_path / "load.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "load.py"), "--quick", "--store", store,
                           "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(out.read_text())
    assert result["participants"] == 50 and result["sums"] == 3
    assert result["updates_accepted"] == 50 and result["sum2_accepted"] == 3
    assert result["model_ok"] and result["model_max_error"] <= result["model_tolerance"]
    assert result["coordinator_cpu_s"] > 0 and result["floor_cpu_s"] > 0
    rows = bench_run.load_rows(result)
    assert [r["id"] for r in rows] == [f"load/{store}/50/cpu", f"load/{store}/50/time"]
