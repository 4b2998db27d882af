"""``python -m benchmarks.w8_dask``: W8, per-sample Jacobians of W1's MLP for 2**20 rows on Dask.

W1's MLP (16→256→256→16, tanh, float64) on ``--rows`` rows (default 2**20), generated on the
workers block by block (``dask.array.random``: no data on the client), chunked ``--block`` rows
(default 4096) along the batch axis, on a ``distributed.LocalCluster`` of ``--workers`` processes
(default 2) with one thread each. The ``(rows, 16, 16)`` Jacobian is never gathered: each block is
reduced where it is computed, to the sum of its squared entries (``(J * J).sum()``, a tree
reduction), and only that number comes back. The anchors are one in-process ``dj.batch_jacobian``
call on a batch that fits (``--fit`` rows, default 16384), with BLAS on all cores and with one
thread (what a worker has: the cluster's ideal throughput is workers x that).

Reported per cluster run (a fresh cluster each): wall time and throughput (rows/s), and rows per
CPU-second of the workers (user and system time of the worker processes, from before the run to after
it: robust to other jobs sharing the cores, which wall-clock throughput is not); each worker's
peak resident memory during the run (``VmHWM``, reset after a warm-up) and its growth over the
worker's resident memory before the run, next to the same growth for one in-process call on one
block; and the scheduler overhead: wall time minus the tasks' compute time divided by the number of workers
(what the cluster costs beyond the work itself; also per task). To show that the peak follows the
block, not the batch, smaller runs (``--probe-rows`` rows, default 2**16) repeat the measurement
with ``--probe-blocks`` (default 1024, 4096, 16384) rows per block.

The first block's sum is checked against the in-process call on the same rows. ``--quick``: a
smoke run (2**12 rows in blocks of 1024, and 2**11 in blocks of 512; about 10 s). Results go to ``--json``
(default ``benchmarks/results/w8.json``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import dualjac as dj

from .run import ROOT, fmt, machine, median_time, set_threads
from .workloads import mlp_fns, mlp_params

N_IN = 16  # W1: 16 input features, so 16 lanes and (16, 16) per-sample Jacobians


def usage(reset: bool = False) -> dict:
    """This process's resident memory now and its peak (bytes, Linux ``/proc``), its CPU time so far
    (all threads, user and system: page faults included) and its BLAS threads.
    ``reset``: restart the peak from the current resident size first (``/proc/self/clear_refs``), so the
    peak is that of what runs next, not of the process's start (importing distributed peaks higher)."""
    from benchmarks.run import _blas_call

    if reset:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    with open("/proc/self/status") as fh:
        status = dict(line.split(":", 1) for line in fh if ":" in line)
    kib = lambda key: int(status[key].split()[0]) * 1024
    cpu = time.process_time()
    return {"rss": kib("VmRSS"), "peak": kib("VmHWM"), "cpu_s": cpu, "blas_threads": _blas_call("get_num_threads")}


def _inputs(rows: int, block: int) -> Any:
    import dask.array as da

    return da.random.default_rng(1).standard_normal((rows, N_IN), chunks=(block, N_IN))


def cluster_run(f: Any, rows: int, block: int, workers: int) -> dict:
    """One fresh LocalCluster: warm it up, then reduce the Jacobian of ``rows`` rows block by block."""
    import distributed

    with distributed.LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=logging.ERROR,
        memory_limit=0,  # measure memory, do not manage it (no spilling, no pausing)
    ) as cluster, distributed.Client(cluster) as client:
        warm = dj.batch_jacobian(f, _inputs(64 * workers, 64))  # every worker imports dualjac, runs f
        (warm * warm).sum().compute()
        before = client.run(usage, True)
        J = dj.batch_jacobian(f, _inputs(rows, block))
        total = (J * J).sum()
        with distributed.get_task_stream(client) as stream:
            t0 = time.perf_counter()
            value = float(total.compute())
            wall = time.perf_counter() - t0
        after = client.run(usage)
        first = float((J[:block] * J[:block]).sum().compute())
        x0 = _inputs(rows, block)[:block].compute()  # one block, for the check
    compute = sum(
        s["stop"] - s["start"] for task in stream.data for s in task["startstops"] if s["action"] == "compute"
    )
    tasks = len(stream.data)
    busy = compute / workers
    cpu = sum(after[w]["cpu_s"] - before[w]["cpu_s"] for w in after)
    ref = dj.batch_jacobian(f, x0)
    ok = abs(first - float((ref * ref).sum())) <= 1e-12 * abs(first)
    mib = 2**-20
    return {
        "rows": rows,
        "block": block,
        "blocks": -(-rows // block),
        "workers": workers,
        "wall_s": wall,
        "rows_per_s": rows / wall,
        "worker_cpu_s": cpu,
        "rows_per_cpu_s": rows / cpu,
        "tasks": tasks,
        "task_compute_s": compute,
        "overhead_s": wall - busy,
        "overhead_fraction": (wall - busy) / wall,
        "overhead_per_task_ms": 1e3 * (wall - busy) * workers / max(tasks, 1),
        "worker_peak_MiB": sorted(a["peak"] * mib for a in after.values()),
        "worker_growth_MiB": sorted((after[w]["peak"] - before[w]["rss"]) * mib for w in after),
        "worker_blas_threads": sorted({a["blas_threads"] for a in after.values()}, key=str),
        "sum_sq": value,
        "first_block_ok": ok,
    }


def in_process(f: Any, rows: int) -> dict:
    """The anchor: one ``dj.batch_jacobian`` call on ``rows`` rows in this process: its peak resident
    memory over the resident size before it (measured first, as on a fresh worker), its time (median
    of 3) and the CPU time of one more call."""
    x = np.random.default_rng(1).standard_normal((rows, N_IN))
    before = usage(reset=True)
    dj.batch_jacobian(f, x)
    growth = usage()["peak"] - before["rss"]
    t = median_time(lambda: dj.batch_jacobian(f, x), repeats=3)
    cpu = time.process_time()
    dj.batch_jacobian(f, x)
    cpu = time.process_time() - cpu
    return {"rows": rows, "median_s": t, "rows_per_s": rows / t, "cpu_s": cpu, "rows_per_cpu_s": rows / cpu,
            "growth_MiB": growth / 2**20}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2**20)
    parser.add_argument("--block", type=int, default=4096)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--fit", type=int, default=16384, help="rows of the in-process anchor call")
    parser.add_argument("--probe-rows", type=int, default=2**16)
    parser.add_argument("--probe-blocks", default="1024,4096,16384")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 2**12 rows, blocks of 1024")
    parser.add_argument("--json", type=Path, default=ROOT / "results" / "w8.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.block, args.fit, args.probe_rows, args.probe_blocks = 2**12, 1024, 512, 2**11, "512"
    threads = set_threads(None)
    info = machine()
    command = "python -m benchmarks.w8_dask" + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip()
    print(f"# {command}\n# {info['cpu']}, {info['cores']} cores; numpy {info['numpy']}; in-process BLAS threads "
          f"{threads}; workers: {args.workers} processes x 1 thread; load {os.getloadavg()[0]:.1f}")  # fmt: skip
    f = mlp_fns(mlp_params([N_IN, 256, 256, 16], np.float64))[0]

    anchor = in_process(f, args.fit)
    set_threads(1)  # what one worker has: the cluster's ideal is workers x this
    single = in_process(f, args.fit)
    set_threads(threads)
    block_anchor = in_process(f, args.block)
    print(f"in-process: {args.fit} rows in {fmt(anchor['median_s'])}; with 1 thread {fmt(single['median_s'])}",
          file=sys.stderr)  # fmt: skip
    runs = []
    configs = [(args.rows, args.block)] + [(args.probe_rows, int(b)) for b in args.probe_blocks.split(",") if b]
    for rows, block in configs:
        print(f"cluster: {rows} rows in blocks of {block} ...", end="", flush=True, file=sys.stderr)
        r = cluster_run(f, rows, block, args.workers)
        print(f" {fmt(r['wall_s'])}", file=sys.stderr)
        runs.append(r)

    print(f"\n| run | rows | block | wall | rows/s | ÷ in-process ({threads} threads) | rows per CPU-s | ÷ in-process "
          "(1 thread) | worker peak RSS (MiB) | growth over warm (MiB) | overhead | per task | check |")
    print("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|:-:|")
    for i, r in enumerate(runs):
        print(f"| {'W8' if i == 0 else 'probe'} | {r['rows']:,} | {r['block']:,} | {fmt(r['wall_s'])} | "
              f"{r['rows_per_s']:,.0f} | {r['rows_per_s'] / anchor['rows_per_s']:.2f} | "
              f"{r['rows_per_cpu_s']:,.0f} | {r['rows_per_cpu_s'] / single['rows_per_cpu_s']:.2f} | "
              f"{', '.join(f'{m:.0f}' for m in r['worker_peak_MiB'])} | "
              f"{', '.join(f'{m:.0f}' for m in r['worker_growth_MiB'])} | "
              f"{100 * r['overhead_fraction']:.1f}% ({fmt(r['overhead_s'])}) | {r['overhead_per_task_ms']:.1f} ms | "
              f"{'✓' if r['first_block_ok'] else '✗'} |")  # fmt: skip
    print(f"\nin-process anchor: {args.fit:,} rows in {fmt(anchor['median_s'])} = {anchor['rows_per_s']:,.0f} rows/s "
          f"({threads} BLAS threads), {single['rows_per_s']:,.0f} rows/s and {single['rows_per_cpu_s']:,.0f} rows "
          f"per CPU-s with 1 thread; peak RSS growth "
          f"{anchor['growth_MiB']:.0f} MiB; one {args.block}-row block: "
          f"peak RSS growth {block_anchor['growth_MiB']:.0f} MiB")  # fmt: skip
    args.json.parent.mkdir(parents=True, exist_ok=True)
    out = {"command": command, "machine": info, "load_average": os.getloadavg(), "in_process": anchor,
           "in_process_1_thread": single, "in_process_block": block_anchor, "runs": runs}  # fmt: skip
    args.json.write_text(json.dumps(out, indent=2) + "\n")
    print(f"load average at the end: {os.getloadavg()[0]:.1f} (other processes share these cores)")
    print(f"wrote {args.json}")
    return 0 if all(r["first_block_ok"] for r in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
