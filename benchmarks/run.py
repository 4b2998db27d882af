"""``python -m benchmarks.run``: time dualjac against its dense-lane limit, torch and JAX (W1–W5, W7).

Options: ``--only W1,W3`` (workload prefixes), ``--repeats N`` (samples, default 7), ``--quick``
(tiny sizes, one sample: a seconds-long smoke run), ``--json PATH`` (default
``benchmarks/results/latest.json``), ``--threads N`` (BLAS and torch threads; default: NumPy's BLAS
setting), ``--keep-freed-memory`` (glibc keeps freed memory instead of returning it to the OS).

Everything runs in one process, on the same inputs (``benchmarks/workloads.py``). Per tool:

1. one call (warm-up; JAX compiles here) whose Jacobian is compared with dualjac's by ``np.allclose``
   (rtol 1e-8 in float64, 1e-3 in float32): the ✓ column. A ✗ row is not timed: a benchmark of a
   wrong result is worthless. A first call over 5 s is the only one timed (the note says so);
2. more warm-up calls (at least 2 more, up to 10 until 0.3 s have passed); the last one sets how
   many calls make one sample, so that a sample lasts ≥ 10 ms;
3. ``--repeats`` samples with the garbage collector off; the table shows their median.

``dualjac ÷ this`` is dualjac's median over the tool's: below 1, dualjac is faster.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import functools
import gc
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import dualjac as dj

from .workloads import Tool, Workload, all_workloads

ROOT = Path(__file__).resolve().parent
SLOW_S = 5.0  # a tool whose first call takes longer is timed by that call alone
SAMPLE_S = 0.01  # calls are grouped so that one sample lasts at least this long
WARM_S = 0.3  # warm-up: at least 3 calls, and up to 10 until this much time has passed


# --- the machine and its thread settings ---------------------------------------------------
@functools.lru_cache(maxsize=1)
def _openblas() -> Any:
    """NumPy's OpenBLAS, found among the loaded libraries (None if there is none)."""
    try:
        paths = {ln.split()[-1] for ln in open("/proc/self/maps") if "openblas" in ln.lower() and "/" in ln}
    except OSError:
        return None
    for path in paths:
        try:
            return ctypes.CDLL(path)
        except OSError:
            pass
    return None


def _blas_call(what: str, *args: int) -> int | None:
    lib = _openblas()
    for name in (f"scipy_openblas_{what}64_", f"openblas_{what}64_", f"openblas_{what}"):
        if hasattr(lib, name):  # False for lib None
            return getattr(lib, name)(*args)
    return None


def set_threads(n: int | None) -> int:
    """Give BLAS and torch the same number of threads: ``n``, or NumPy's BLAS setting."""
    if n is not None:
        _blas_call("set_num_threads", n)
    n = _blas_call("get_num_threads") or n or os.cpu_count() or 1
    try:
        import torch

        torch.set_num_threads(n)
    except ImportError:
        pass
    return n


def keep_freed_memory() -> None:
    """glibc: no mmap for big blocks (M_MMAP_MAX = 0) and no trimming (M_TRIM_THRESHOLD), so
    freed memory is reused without the first-touch page faults (see design.md)."""
    libc = ctypes.CDLL("libc.so.6")
    libc.mallopt(-4, 0)
    libc.mallopt(-1, 2**31 - 1)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def machine(keep: bool = False) -> dict:
    """The machine, versions and thread settings (``keep``: ``--keep-freed-memory`` is in effect).
    ``docs/make_figures.py`` records the same."""
    info = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "dualjac": dj.__version__,
        "blas_threads": _blas_call("get_num_threads"),
        "allocator": "glibc, freed memory kept (--keep-freed-memory)" if keep else "glibc defaults",
        "env": {k: v for k, v in os.environ.items() if k.endswith("_NUM_THREADS") or k.startswith(("MALLOC", "XLA"))},
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
    }
    try:
        import torch

        info["torch"], info["torch_threads"] = torch.__version__, torch.get_num_threads()
    except ImportError:
        info["torch"] = None
    try:
        import jax

        info["jax"], info["jax_devices"] = jax.__version__, str(jax.devices())
        info["jax_threads"] = "XLA CPU default (one pool over all cores)"
    except ImportError:
        info["jax"] = None
    return info


# --- timing and checking -------------------------------------------------------------------
def agrees(J: np.ndarray, ref: np.ndarray, dtype: str) -> tuple[bool, float]:
    J, ref = np.asarray(J, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    if J.shape != ref.shape:
        return False, float("inf")
    rtol = 1e-3 if dtype == "float32" else 1e-8
    err = float(np.max(np.abs(J - ref), initial=0.0))
    return bool(np.allclose(J, ref, rtol=rtol, atol=rtol * float(np.max(np.abs(ref), initial=1.0)))), err


def sample_times(call: Any, repeats: int, first_s: float, quick: bool = False) -> tuple[list[float], int]:
    """Samples (seconds per call) and calls per sample, after the first call (the caller's warm-up
    and check); ``first_s`` is that call's time."""
    if first_s > SLOW_S:
        return [first_s], 1
    spent, calls = first_s, 1
    while calls < 3 or (spent < WARM_S and calls < 10):  # more warm-up: the heap settles, caches fill
        t0 = time.perf_counter()
        call()
        once = time.perf_counter() - t0
        spent, calls = spent + once, calls + 1
    number = 1 if quick else max(1, int(SAMPLE_S / max(once, 1e-9)))
    samples = []
    gc.disable()
    try:
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(number):
                call()
            samples.append((time.perf_counter() - t0) / number)
    finally:
        gc.enable()
    return samples, number


def median_time(call: Any, repeats: int = 7) -> float:
    """Median seconds per call, timed as a benchmark row is (without the check)."""
    t0 = time.perf_counter()
    call()
    return float(np.median(sample_times(call, repeats, time.perf_counter() - t0)[0]))


def run_tool(wl: Workload, tool: Tool, ref: np.ndarray | None, repeats: int, quick: bool) -> tuple[dict, Any]:
    """The tool's row, and its Jacobian (None if it has none or failed)."""
    row = {"workload": wl.key, "tool": tool.name, "median_s": None, "ok": None, "note": tool.note}
    J = None
    if tool.call is None:
        return row, J
    try:
        t0 = time.perf_counter()
        out = tool.call()
        first = time.perf_counter() - t0
        if tool.jac is not None:
            J = tool.jac(out)
            if ref is not None:
                row["ok"], row["max_abs_err"] = agrees(J, ref, wl.dtype)
                if not row["ok"]:
                    row["note"] = f"disagrees with dualjac (max |diff| {row['max_abs_err']:.2e}): not timed"
                    return row, J
        samples, number = sample_times(tool.call, repeats, first, quick)
    except Exception as e:  # a failing tool is a row, not the end of the run
        row["note"] = f"error: {type(e).__name__}: {e}"[:160]
        return row, J
    row.update(median_s=float(np.median(samples)), samples_s=samples, calls_per_sample=number)
    if first > SLOW_S:
        row["note"] = f"one call only (> {SLOW_S:.0f} s)"
    return row, J


def run_workload(wl: Workload, repeats: int, quick: bool) -> list[dict]:
    rows, ref = [], None
    for tool in wl.tools:
        print(f"  {wl.key}: {tool.name} ...", end="", flush=True, file=sys.stderr)
        row, J = run_tool(wl, tool, ref, repeats, quick)
        if ref is None and J is not None:  # dualjac's, or (if dualjac failed) the first anchor's
            ref = J
            row["ok"] = True if tool.name == "dualjac" else None
            if tool.name != "dualjac":
                row["note"] = (row["note"] + "; " if row["note"] else "") + "reference of the check"
        print(f" {fmt(row['median_s'])}", file=sys.stderr)
        rows.append(row)
    dual = next((r["median_s"] for r in rows if r["tool"] == "dualjac"), None)
    for r in rows:
        r["dualjac_over_tool"] = dual / r["median_s"] if dual and r["median_s"] else None
    return rows


# --- output ----------------------------------------------------------------------------------
def fmt(t: float | None) -> str:
    if t is None:
        return "—"
    return f"{t * 1e6:.1f} µs" if t < 1e-3 else f"{t * 1e3:.2f} ms" if t < 1 else f"{t:.2f} s"


def table(rows: list[dict]) -> str:
    lines = ["| workload | tool | median | dualjac ÷ this | ✓ | note |", "|---|---|--:|--:|:-:|---|"]
    for r in rows:
        ok = {True: "✓", False: "✗", None: ""}[r["ok"]]
        ratio = f"{r['dualjac_over_tool']:.2f}" if r["dualjac_over_tool"] else "—"
        lines.append(f"| {r['workload']} | {r['tool']} | {fmt(r['median_s'])} | {ratio} | {ok} | {r['note']} |")
    return "\n".join(lines)


def goals(rows: list[dict]) -> list[str]:
    """The issue's goals: dualjac ≤ 1.3× the limit and faster than torch.func on W1–W3, W5 < 50 µs;
    and where JAX stands."""
    out = []
    for key in dict.fromkeys(r["workload"] for r in rows):
        t = {r["tool"]: r["median_s"] for r in rows if r["workload"] == key and r["median_s"]}
        dual = t.get("dualjac")
        if dual is None:
            out.append(f"{key}: no dualjac time")
            continue
        parts = []
        if "limit" in t:
            parts.append(f"dualjac/limit {dual / t['limit']:.2f} {'✓' if dual <= 1.3 * t['limit'] else '✗'} (≤ 1.3)")
        for prefix, label, goal in (("torch.func", "torch.func", True), ("jax", "JAX", False)):
            best = min((k for k in t if k.startswith(prefix)), key=t.get, default=None)
            if best:
                mark = (" ✓" if dual < t[best] else " ✗") if goal else ""
                parts.append(f"vs best {label} ({best}, {fmt(t[best])}) {dual / t[best]:.2f}{mark}")
        if key == "W5":
            parts.append(f"{fmt(dual)} {'✓' if dual < 50e-6 else '✗'} (< 50 µs)")
        for k, goal in (("torch.func vmap(jacrev)", 1.5), ("torch.func grad", 2.0)):  # W4 and W7: reverse mode
            if k in t and key in ("W4", "W7"):
                mark = "✓" if dual <= goal * t[k] else "✗"
                parts.append(f"reverse goal: dualjac/{k} {dual / t[k]:.2f} {mark} (≤ {goal})")
        out.append(f"{key}: " + " · ".join(parts))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated workload prefixes, e.g. W1,W3")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one sample: a smoke run")
    parser.add_argument("--json", type=Path, default=ROOT / "results" / "latest.json")
    parser.add_argument("--threads", type=int, help="BLAS and torch threads (default: NumPy's BLAS setting)")
    parser.add_argument("--keep-freed-memory", action="store_true", help="glibc: reuse freed memory")
    args = parser.parse_args(argv)
    repeats = 1 if args.quick else args.repeats
    if args.keep_freed_memory:
        keep_freed_memory()
    threads = set_threads(args.threads)
    only = [p.strip() for p in args.only.split(",")] if args.only else None
    info = machine(args.keep_freed_memory)
    command = "python -m benchmarks.run" + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip()
    print(f"# {command}\n# {info['cpu']}, {info['cores']} cores; BLAS/torch threads {threads}; numpy "
          f"{info['numpy']}, torch {info.get('torch')}, jax {info.get('jax')}; {info['allocator']}")  # fmt: skip

    rows, workloads = [], []
    for key, build in all_workloads(args.quick):
        if only and not any(key.startswith(p) for p in only):
            continue
        wl = build()
        print(f"{wl.key}: {wl.title}", file=sys.stderr)
        rows += run_workload(wl, repeats, args.quick)
        desc = {"workload": wl.key, "title": wl.title, "dtype": wl.dtype}
        if wl.extra is not None:
            desc.update(wl.extra())
        workloads.append(desc)
        del wl
        gc.collect()

    print("\n" + "\n".join(f"- {w['workload']}: {w['title']}" for w in workloads) + "\n")
    print(table(rows))
    print("\nGoals:\n" + "\n".join("- " + g for g in goals(rows)))
    for w in workloads:
        for m in w.get("chunk_memory", []):
            print(f"- {w['workload']} dualjac mode='forward' chunk_size={m['chunk_size']}: peak traced memory "
                  f"{m['peak_MiB']:.0f} MiB, one call {fmt(m['one_call_s'])}")  # fmt: skip
        if "tape_memory" in w:
            m = w["tape_memory"]
            print(f"- {w['workload']} dualjac reverse mode: tape {m['tape_MiB']:.1f} MiB ({m['nodes']} nodes), "
                  f"peak traced memory of one call {m['peak_MiB']:.1f} MiB")  # fmt: skip
        if "lowering_s" in w:
            print(f"- {w['workload']} dualjac lowering (torch.export + ATen table, once per model and shape): "
                  f"{fmt(w['lowering_s'])}, of which export {fmt(w['export_s'])}")  # fmt: skip
    args.json.parent.mkdir(parents=True, exist_ok=True)
    result = {"command": command, "machine": info, "repeats": repeats, "quick": args.quick}
    args.json.write_text(json.dumps(result | {"workloads": workloads, "results": rows}, indent=2) + "\n")
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
