"""``python -m benchmarks.interleaved --only W4,W7``: the same workloads as ``benchmarks.run``, timed
round-robin (one call of each tool per round, in a shuffled order, for ``--rounds`` rounds), so that
every tool sees the same background load. On a shared machine whose load swings from second to second, a sequential run
can time two tools under different loads; here a ratio compares calls made moments apart. Reported per
tool: the minimum and the median over rounds, and dualjac's over each (the minimum is the least
disturbed call of each tool). Slow tools (a first call over ``--max-s`` seconds) are left out.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time

import numpy as np

from .run import fmt, set_threads
from .workloads import all_workloads


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="W4,W7", help="comma-separated workload prefixes")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--max-s", type=float, default=1.0, help="leave out tools slower than this per call")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    args = parser.parse_args(argv)
    threads = set_threads(args.threads)
    only = [p.strip() for p in args.only.split(",")]
    print(f"# python -m benchmarks.interleaved {' '.join(argv if argv is not None else sys.argv[1:])}".rstrip())
    print(f"# BLAS/torch threads {threads}; {args.rounds} rounds, one call of each tool per round\n")
    print("| workload | tool | min | median | dualjac ÷ this (min) | dualjac ÷ this (median) |")
    print("|---|---|--:|--:|--:|--:|")
    for key, build in all_workloads(args.quick):
        if not any(key.startswith(p) for p in only):
            continue
        wl = build()
        tools = []
        for t in wl.tools:
            if t.call is None:
                continue
            t.call()  # warm-up
            t0 = time.perf_counter()
            t.call()  # the slow-tool filter times a warm call
            if time.perf_counter() - t0 <= args.max_s:
                tools.append(t)
        times: dict[str, list[float]] = {t.name: [] for t in tools}
        order = np.random.default_rng(0)  # each round in another order: a fixed one times the tool
        gc.disable()  # after its own library's call warm, and the first of each library cold
        try:
            for _ in range(args.rounds):
                for t in order.permutation(np.array(tools, dtype=object)):
                    t0 = time.perf_counter()
                    t.call()
                    times[t.name].append(time.perf_counter() - t0)
        finally:
            gc.enable()
        d_min, d_med = min(times["dualjac"]), float(np.median(times["dualjac"]))
        for name, ts in times.items():
            lo, med = min(ts), float(np.median(ts))
            print(f"| {wl.key} | {name} | {fmt(lo)} | {fmt(med)} | {d_min / lo:.2f} | {d_med / med:.2f} |")
        del wl
        gc.collect()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
