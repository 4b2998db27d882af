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
    # the default runs both allocator settings, each in its own process, and prints both goal blocks
    assert [run["allocator"] for run in data["runs"]] == ["defaults", "kept"]
    assert data["results"] == data["runs"][0]["results"]  # the top level: what docs/make_figures.py reads
    assert "## Allocator: glibc defaults" in r.stdout and "## Allocator: glibc, freed memory kept" in r.stdout
    assert r.stdout.count("- W1 f64: vs best anchor") == 4  # each run's block, and both in the summary
    for run in data["runs"]:
        rows = run["results"]
        workloads = {row["workload"] for row in rows}
        assert {"W1 f64", "W1 f32", "W2", "W3", "W4", "W5", "W6", "W7"} <= workloads, workloads
        checked = [row for row in rows if row["ok"] is not None]
        assert checked and all(row["ok"] for row in checked), [row for row in checked if not row["ok"]]
        kinds = {(row["workload"], row["tool"]): row["kind"] for row in rows}
        assert kinds[("W1 f64", "GEMM floor")] == kinds[("W1 f64", "limit")] == "reference"
        assert kinds[("W1 f64", "torch sum trick AF.jacobian(f(x).sum(0))")] == "anchor"
        assert all(row["faults_per_call"] >= 0 for row in rows if row["median_s"] is not None)
        w3 = next(w for w in run["workloads"] if w["workload"] == "W3")
        assert w3["output_memory"]["output_MiB"] == 64 * 32 * 32 * 8 / 2**20


def test_goals_compare_with_the_best_anchor_not_a_reference():
    from benchmarks.run import goals

    def row(tool, t, kind):
        return {"workload": "W1 f64", "tool": tool, "median_s": t, "kind": kind}

    rows = [
        row("dualjac", 0.040, "dualjac"),
        row("GEMM floor", 0.030, "reference"),
        row("limit", 0.010, "reference"),  # faster than dualjac, but not an anchor
        row("torch.func vmap(jacrev)", 0.050, "anchor"),
        row("torch sum trick AF.jacobian(f(x).sum(0))", 0.038, "anchor"),
        row("jax jit vmap(jacfwd)", None, "anchor"),  # did not run
    ]
    (line,) = goals(rows)
    assert "vs best anchor, torch sum trick AF.jacobian(f(x).sum(0)) (38.00 ms): 1.05 ✗ (≤ 1)" in line
    assert "vs GEMM floor (30.00 ms): 1.33 ✗ (≤ 1.15)" in line and "vs limit (10.00 ms): 4.00 ✗" in line
    rows[4]["median_s"] = 0.041
    assert "vs best anchor, torch sum trick AF.jacobian(f(x).sum(0)) (41.00 ms): 0.98 ✓ (≤ 1)" in goals(rows)[0]


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
