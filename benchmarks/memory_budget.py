"""Peak memory of passes that meet values wider than their inputs (``python -m benchmarks.memory_budget``).

The per-pass budget (``dualjac/budget.py``) stops a pass before it allocates a tangent over
``dj.config.tangent_bytes`` and re-plans with fewer lanes; nested transforms budget each level.
Peaks are ``tracemalloc``'s (NumPy allocations included).
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np

import dualjac as dj


def _peak(fn) -> tuple[float, float]:
    tracemalloc.start()
    t = time.perf_counter()
    fn()
    dt = time.perf_counter() - t
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return peak, dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--hessian-n", type=int, nargs="*", default=[100, 200])
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    W1, W2 = rng.standard_normal((16, 4096)) / 4, rng.standard_normal((4096, 16)) / 64
    x = rng.standard_normal((1024, 16))
    default = dj.config.tangent_bytes
    try:
        for mib in (8, 64):
            dj.config.tangent_bytes = mib << 20
            p, dt = _peak(lambda: dj.batch_jacobian(lambda x: np.tanh(x @ W1) @ W2, x))
            print(f"batch_jacobian, x (1024, 16), hidden 4096, budget {mib} MiB: peak {p:.0f} MiB, {dt:.2f} s")
    finally:
        dj.config.tangent_bytes = default
    for n in args.hessian_n:
        x = np.linspace(0.5, 1.5, n)
        p, dt = _peak(lambda x=x: dj.hessian(lambda x: np.cumprod(x).sum(), mode="forward")(x))
        print(f"hessian(cumprod(x).sum()), n={n}, forward-over-forward: peak {p:.0f} MiB, {dt:.2f} s")


if __name__ == "__main__":
    main()
