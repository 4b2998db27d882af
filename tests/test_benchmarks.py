"""The benchmark command runs end to end (tiny sizes): every tool's Jacobian agrees with dualjac's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_quick_benchmark_run_agrees_and_writes_json(tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "quick.json"
    # a subprocess: the run sets thread counts (and JAX's float64 mode) for its whole process
    r = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--quick", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    data = json.loads(out.read_text())
    workloads = {row["workload"] for row in data["results"]}
    assert {"W1 f64", "W1 f32", "W2", "W3", "W4", "W5", "W6", "W7"} <= workloads, workloads
    checked = [row for row in data["results"] if row["ok"] is not None]
    assert checked and all(row["ok"] for row in checked), [row for row in checked if not row["ok"]]


def test_interleaved_timer_runs(tmp_path):
    pytest.importorskip("torch")
    r = subprocess.run(
        [sys.executable, "-m", "benchmarks.interleaved", "--only", "W7", "--quick", "--rounds", "2", "--max-s", "60"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "| W7 | dualjac |" in r.stdout and "| W7 | torch.func grad |" in r.stdout


def test_w8_dask_quick_run_checks_and_writes_json(tmp_path):
    pytest.importorskip("distributed")
    out = tmp_path / "w8.json"
    r = subprocess.run(
        [sys.executable, "-m", "benchmarks.w8_dask", "--quick", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    data = json.loads(out.read_text())
    assert [run["rows"] for run in data["runs"]] == [2**12, 2**11]
    for run in data["runs"]:
        assert run["first_block_ok"] and run["tasks"] >= run["blocks"] and len(run["worker_growth_MiB"]) == 2
        assert 0 < run["task_compute_s"] and run["rows_per_s"] > 0
