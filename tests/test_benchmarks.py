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
    assert {"W1 f64", "W1 f32", "W2", "W3", "W4", "W5", "W6"} <= workloads, workloads
    checked = [row for row in data["results"] if row["ok"] is not None]
    assert checked and all(row["ok"] for row in checked), [row for row in checked if not row["ok"]]
