"""``python -m benchmarks.run``: time dualjac against torch, JAX and NumPy yardsticks (W1–W7).

Options: ``--only W1,W3`` (workload prefixes), ``--repeats N`` (samples, default 7), ``--quick``
(tiny sizes, one sample: a seconds-long smoke run), ``--json PATH`` (default
``benchmarks/results/latest.json``), ``--threads N`` (BLAS and torch threads; default: NumPy's BLAS
setting), ``--allocator both|defaults|kept`` (default ``both``: the whole table once with glibc's
defaults and once with freed memory kept, each in a fresh process; ``--keep-freed-memory`` is
``--allocator kept``), ``--baseline PATH`` (an earlier JSON: dualjac's times now against then).

One allocator setting runs in one process, on the same inputs (``benchmarks/workloads.py``). Per tool:

1. one call (warm-up; JAX compiles here) whose Jacobian is compared with dualjac's by ``np.allclose``
   (rtol 1e-8 in float64, 1e-3 in float32): the ✓ column. A ✗ row is not timed: a benchmark of a
   wrong result is worthless. A first call over 5 s is the only one timed (the note says so);
2. more warm-up calls (at least 2 more, up to 10 until 0.3 s have passed); the last one sets how
   many calls make one sample, so that a sample lasts ≥ 10 ms;
3. ``--repeats`` samples with the garbage collector off; the table shows their median, and the
   process's minor page faults per call over these samples (first touches of fresh memory).

``dualjac ÷ this`` is dualjac's median over the tool's: below 1, dualjac is faster. The goals compare
dualjac with the fastest *anchor* (every tool that computes the same Jacobian: torch.func, torch's sum
trick, JAX), never with a *reference* row (the limit, the GEMM floor, W7's forward pass).
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
import resource
import subprocess
import sys
import tempfile
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


ALLOCATORS = {  # --allocator: what the setting is, as the tables' headings say it
    "defaults": "glibc defaults",
    "kept": "glibc, freed memory kept (M_MMAP_MAX=0, M_TRIM_THRESHOLD=2³¹-1)",
}


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


def _thp() -> str | None:
    """The kernel's transparent huge page mode (the bracketed word), which changes first-touch costs."""
    try:
        text = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return None
    return text[text.find("[") + 1 : text.find("]")] if "[" in text else text.strip()


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
        "allocator": ALLOCATORS["kept" if keep else "defaults"],
        "transparent_hugepages": _thp(),
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


def minor_faults() -> int:
    """The process's minor page faults so far (all threads): first touches of freshly mapped memory."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def sample_times(
    call: Any, repeats: int, first_s: float, quick: bool = False, stats: dict | None = None
) -> tuple[list[float], int]:
    """Samples (seconds per call) and calls per sample, after the first call (the caller's warm-up
    and check); ``first_s`` is that call's time. ``stats`` gets ``faults_per_call``: the minor page
    faults per call over the samples (over the first call alone when that one was slow)."""
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
    faults = minor_faults()
    gc.disable()
    try:
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(number):
                call()
            samples.append((time.perf_counter() - t0) / number)
    finally:
        gc.enable()
    if stats is not None:
        stats["faults_per_call"] = (minor_faults() - faults) / (repeats * number)
    return samples, number


def median_time(call: Any, repeats: int = 7) -> float:
    """Median seconds per call, timed as a benchmark row is (without the check)."""
    t0 = time.perf_counter()
    call()
    return float(np.median(sample_times(call, repeats, time.perf_counter() - t0)[0]))


def run_tool(wl: Workload, tool: Tool, ref: np.ndarray | None, repeats: int, quick: bool) -> tuple[dict, Any]:
    """The tool's row, and its Jacobian (None if it has none or failed)."""
    row = {"workload": wl.key, "tool": tool.name, "kind": tool.kind, "median_s": None, "ok": None, "note": tool.note}
    J = None
    if tool.call is None:
        return row, J
    stats: dict = {}
    try:
        faults = minor_faults()
        t0 = time.perf_counter()
        out = tool.call()
        first = time.perf_counter() - t0
        stats["faults_per_call"] = minor_faults() - faults  # replaced by the samples' unless slow
        if tool.jac is not None:
            J = tool.jac(out)
            if ref is not None:
                row["ok"], row["max_abs_err"] = agrees(J, ref, wl.dtype)
                if not row["ok"]:
                    row["note"] = f"disagrees with dualjac (max |diff| {row['max_abs_err']:.2e}): not timed"
                    return row, J
        samples, number = sample_times(tool.call, repeats, first, quick, stats)
    except Exception as e:  # a failing tool is a row, not the end of the run
        row["note"] = f"error: {type(e).__name__}: {e}"[:160]
        return row, J
    row.update(median_s=float(np.median(samples)), samples_s=samples, calls_per_sample=number, **stats)
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


def fmt_faults(n: float | None) -> str:
    if n is None:
        return "—"
    return f"{n / 1e3:.1f} k" if n >= 1e3 else f"{n:.0f}"


def table(rows: list[dict]) -> str:
    lines = [
        "| workload | tool | median | dualjac ÷ this | page faults/call | ✓ | note |",
        "|---|---|--:|--:|--:|:-:|---|",
    ]
    for r in rows:
        ok = {True: "✓", False: "✗", None: ""}[r["ok"]]
        ratio = f"{r['dualjac_over_tool']:.2f}" if r["dualjac_over_tool"] else "—"
        faults = fmt_faults(r.get("faults_per_call"))
        cells = [r["workload"], r["tool"], fmt(r["median_s"]), ratio, faults, ok, r["note"]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


ANCHOR_GOAL = ("W1 f64", "W1 f32", "W2", "W3", "W5")  # issue #14: dualjac at or ahead of the best anchor
FLOOR_GOAL = 1.15  # W1: dualjac within 1.15× of the GEMM floor
LIMIT_GOAL = 1.3  # W1–W3: dualjac within 1.3× of the dense-lane limit
LATENCY_GOAL = 50e-6  # W5
REVERSE_GOALS = (("torch.func vmap(jacrev)", 1.5), ("torch.func grad", 2.0))  # W4 and W7


def _kind(r: dict) -> str:
    """A row's kind (JSON files older than the ``kind`` field: from the tool's name)."""
    if "kind" in r:
        return r["kind"]
    if r["tool"].startswith("dualjac"):
        return "dualjac"
    return "reference" if r["tool"] in ("limit", "GEMM floor", "forward pass", "NumPy f alone") else "anchor"


def best_anchor(rows: list[dict], key: str) -> dict | None:
    """The fastest anchor row of workload ``key`` (every tool that computes the Jacobian, not dualjac)."""
    anchors = [r for r in rows if r["workload"] == key and r["median_s"] and _kind(r) == "anchor"]
    return min(anchors, key=lambda r: r["median_s"], default=None)


def goals(rows: list[dict]) -> list[str]:
    """One line per workload: dualjac against the fastest anchor it timed (the goal: at or ahead of it
    on W1, W2, W3, W5), against the GEMM floor (W1: ≤ 1.15×) and the limit (≤ 1.3×), W5's latency
    (< 50 µs), and reverse mode's goals (W4 within 1.5× of vmap(jacrev), W7 within 2× of grad)."""
    out = []
    for key in dict.fromkeys(r["workload"] for r in rows):
        t = {r["tool"]: r["median_s"] for r in rows if r["workload"] == key and r["median_s"]}
        dual = t.get("dualjac")
        if dual is None:
            out.append(f"{key}: no dualjac time")
            continue
        parts = []
        best = best_anchor(rows, key)
        if best is None:
            parts.append("no anchor timed")
        else:
            ratio = dual / best["median_s"]
            mark = (" ✓" if ratio <= 1 else " ✗") + " (≤ 1)" if key in ANCHOR_GOAL else " (no goal)"
            parts.append(f"vs best anchor, {best['tool']} ({fmt(best['median_s'])}): {ratio:.2f}{mark}")
        for name, goal in (("GEMM floor", FLOOR_GOAL), ("limit", LIMIT_GOAL)):
            if name in t:
                ratio = dual / t[name]
                parts.append(f"vs {name} ({fmt(t[name])}): {ratio:.2f} {'✓' if ratio <= goal else '✗'} (≤ {goal})")
        if key == "W5":
            parts.append(f"{fmt(dual)} {'✓' if dual < LATENCY_GOAL else '✗'} (< 50 µs)")
        for k, goal in REVERSE_GOALS:
            if k in t and key in ("W4", "W7"):
                ratio = dual / t[k]
                parts.append(f"reverse goal: vs {k} {ratio:.2f} {'✓' if ratio <= goal else '✗'} (≤ {goal})")
        out.append(f"{key}: " + " · ".join(parts))
    return out


def notes(workloads: list[dict]) -> list[str]:
    """The measurements besides the table (memory, lowering)."""
    out = []
    for w in workloads:
        for m in w.get("chunk_memory", []):
            out.append(f"{w['workload']} dualjac mode='forward' chunk_size={m['chunk_size']}: peak traced memory "
                       f"{m['peak_MiB']:.0f} MiB, one call {fmt(m['one_call_s'])}")  # fmt: skip
        if "tape_memory" in w:
            m = w["tape_memory"]
            out.append(f"{w['workload']} dualjac reverse mode: tape {m['tape_MiB']:.1f} MiB ({m['nodes']} nodes), "
                       f"peak traced memory of one call {m['peak_MiB']:.1f} MiB")  # fmt: skip
        if "output_memory" in w:
            m = w["output_memory"]
            out.append(f"{w['workload']} output (the Jacobian) {m['output_MiB']:.1f} MiB; dualjac's peak traced memory "
                       f"of one call {m['peak_MiB']:.1f} MiB ({m['peak_MiB'] / m['output_MiB']:.2f}× the output; "
                       "NumPy buffers only, output included); page faults per call: the table's column "
                       "(4 KiB each, 2 MiB for a huge page)")  # fmt: skip
        if "lowering_s" in w:
            out.append(f"{w['workload']} dualjac lowering (torch.export + ATen table, once per model and shape): "
                       f"{fmt(w['lowering_s'])}, of which export {fmt(w['export_s'])}")  # fmt: skip
    return out


def heading(allocator: str) -> str:
    return f"## Allocator: {ALLOCATORS[allocator]}"


def report(run: dict) -> str:
    """A run's table, goals and measurements, headed by its allocator setting."""
    lines = [heading(run["allocator"]), ""]
    lines += [f"- {w['workload']}: {w['title']}" for w in run["workloads"]]
    lines += ["", table(run["results"]), "", f"Goals ({ALLOCATORS[run['allocator']]}):"]
    lines += ["- " + g for g in goals(run["results"])]
    measured = notes(run["workloads"])
    if measured:
        lines += ["", "Measurements:"] + ["- " + m for m in measured]
    return "\n".join(lines)


def summary(runs: list[dict]) -> str:
    """Both settings' goals and reference rows together, after both tables."""
    lines = ["## Goals under both allocator settings"]
    for run in runs:
        lines += ["", f"{ALLOCATORS[run['allocator']]}:"] + ["- " + g for g in goals(run["results"])]
    lines += ["", "| allocator | workload | reference | median | dualjac | dualjac ÷ reference |"]
    lines += ["|---|---|---|--:|--:|--:|"]
    for run in runs:
        t = {(r["workload"], r["tool"]): r["median_s"] for r in run["results"] if r["median_s"]}
        for r in run["results"]:
            if _kind(r) == "reference" and r["median_s"] and (r["workload"], "dualjac") in t:
                dual = t[(r["workload"], "dualjac")]
                lines.append(f"| {run['allocator']} | {r['workload']} | {r['tool']} | {fmt(r['median_s'])} | "
                             f"{fmt(dual)} | {dual / r['median_s']:.2f} |")  # fmt: skip
    return "\n".join(lines)


def _allocator_of(run: dict) -> str:
    return run.get("allocator") or ("kept" if "kept" in run.get("machine", {}).get("allocator", "") else "defaults")


def against_baseline(runs: list[dict], path: Path) -> str:
    """dualjac's medians now over an earlier run's, per allocator setting and workload; and the same
    for dualjac ÷ best anchor, which cancels some of a machine's changed load (runs differ: read it
    as a sign, not a measurement)."""
    data = json.loads(path.read_text())
    before = {_allocator_of(r): r["results"] for r in data.get("runs", [data])}
    lines = [f"## dualjac against {path}", "", "| allocator | workload | tool | then | now | now ÷ then | "
             "(÷ best anchor) now ÷ then |", "|---|---|---|--:|--:|--:|--:|"]  # fmt: skip
    for run in runs:
        old = before.get(run["allocator"])
        if old is None:
            continue
        then = {(r["workload"], r["tool"]): r for r in old if r["median_s"]}
        for r in run["results"]:
            o = then.get((r["workload"], r["tool"]))
            if _kind(r) != "dualjac" or not r["median_s"] or o is None:
                continue
            rel = "—"
            a_now, a_then = best_anchor(run["results"], r["workload"]), best_anchor(old, r["workload"])
            if a_now and a_then:
                rel = f"{(r['median_s'] / a_now['median_s']) / (o['median_s'] / a_then['median_s']):.2f}"
            lines.append(f"| {run['allocator']} | {r['workload']} | {r['tool']} | {fmt(o['median_s'])} | "
                         f"{fmt(r['median_s'])} | {r['median_s'] / o['median_s']:.2f} | {rel} |")  # fmt: skip
    return "\n".join(lines)


def run_setting(args: argparse.Namespace, command: str) -> dict:
    """The whole table under the allocator setting ``args.allocator`` (set here, for this process)."""
    repeats = 1 if args.quick else args.repeats
    keep = args.allocator == "kept"
    if keep:
        keep_freed_memory()
    threads = set_threads(args.threads)
    only = [p.strip() for p in args.only.split(",")] if args.only else None
    info = machine(keep)
    print(f"# {command}\n# {info['cpu']}, {info['cores']} cores; BLAS/torch threads {threads}; numpy "
          f"{info['numpy']}, torch {info.get('torch')}, jax {info.get('jax')}; {info['allocator']}; "
          f"transparent huge pages: {info['transparent_hugepages']}")  # fmt: skip
    print(f"{heading(args.allocator)}: running", file=sys.stderr)

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
    run = {"allocator": args.allocator, "machine": info, "workloads": workloads, "results": rows}
    print("\n" + report(run) + "\n", flush=True)
    return run


def _child_args(args: argparse.Namespace) -> list[str]:
    """The options a run under one allocator setting gets from a ``--allocator both`` run."""
    out = ["--repeats", str(args.repeats)]
    if args.only:
        out += ["--only", args.only]
    if args.quick:
        out.append("--quick")
    if args.threads is not None:
        out += ["--threads", str(args.threads)]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated workload prefixes, e.g. W1,W3")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one sample: a smoke run")
    parser.add_argument("--json", type=Path, default=ROOT / "results" / "latest.json")
    parser.add_argument("--threads", type=int, help="BLAS and torch threads (default: NumPy's BLAS setting)")
    parser.add_argument(
        "--allocator", choices=["both", *ALLOCATORS], default="both",
        help="glibc's defaults, freed memory kept, or both (default), each setting in a fresh process",
    )  # fmt: skip
    parser.add_argument("--keep-freed-memory", action="store_true", help="the same as --allocator kept")
    parser.add_argument("--baseline", type=Path, help="an earlier JSON: dualjac's medians now ÷ then")
    args = parser.parse_args(argv)
    if args.keep_freed_memory:
        args.allocator = "kept"
    command = "python -m benchmarks.run" + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip()

    if args.allocator == "both":  # mallopt cannot be undone: each setting gets a fresh process
        runs = []
        with tempfile.TemporaryDirectory() as tmp:
            for setting in ALLOCATORS:
                out = Path(tmp) / f"{setting}.json"
                child = [sys.executable, "-m", "benchmarks.run", *_child_args(args), "--allocator", setting]
                sys.stdout.flush()
                done = subprocess.run([*child, "--json", str(out)], cwd=ROOT.parent)
                if done.returncode:
                    return done.returncode
                runs.append(json.loads(out.read_text())["runs"][0] | {"command": "python " + " ".join(child[1:])})
        print(summary(runs))
    else:
        runs = [run_setting(args, command)]
    if args.baseline:
        print("\n" + against_baseline(runs, args.baseline))

    args.json.parent.mkdir(parents=True, exist_ok=True)
    first = runs[0]  # the top-level machine, workloads and results: the first setting's (make_figures.py)
    result = {"command": command, "repeats": 1 if args.quick else args.repeats, "quick": args.quick}
    result |= {"machine": first["machine"], "workloads": first["workloads"], "results": first["results"]}
    args.json.write_text(json.dumps(result | {"runs": runs}, indent=2) + "\n")
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
