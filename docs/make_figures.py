"""Make the documentation's figures from real runs: ``python docs/make_figures.py``.

Writes, under ``docs/figures/``:

* ``forward_vs_reverse.png``: time for the full Jacobian of an MLP with K inputs and 16 outputs,
  against K: dualjac ``jacfwd``, ``torch.func.jacfwd`` and ``torch.func.jacrev``;
* ``jacobian_heatmap.png``: per-sample Jacobians of the ``dualjac demo`` models (needs the torch
  adapter, ``dualjac.torch.from_torch``);
* ``benchmarks.png``: ``benchmarks/results/latest.json`` as a chart (skipped, with a message, when
  that file is absent: run ``python -m benchmarks.run`` first), and ``benchmarks.md``, the fragment
  ``docs/benchmarks.md`` includes: the chart, or a note saying why there is none;
* ``machine.md`` / ``machine.json``: the machine and versions they came from (pages include
  ``machine.md``).

Needs torch and matplotlib (``pip install -e ".[torch,plot]"``). Not run by the tests; takes about
a minute. ``--only NAME`` (repeatable) makes a subset: forward_vs_reverse, heatmap, benchmarks.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "figures"
sys.path.insert(0, str(ROOT))

import dualjac as dj  # noqa: E402
from benchmarks.run import fmt, machine, median_time  # noqa: E402
from benchmarks.workloads import mlp_fns, mlp_params  # noqa: E402


# --- the machine ------------------------------------------------------------------------
def figures_machine() -> dict:
    """The benchmark's machine record, with matplotlib's version and the date (no time)."""
    import matplotlib

    return machine() | {"matplotlib": matplotlib.__version__, "date": datetime.date.today().isoformat()}


def write_machine(info: dict) -> None:
    (OUT / "machine.json").write_text(json.dumps(info, indent=2) + "\n")
    torch_part = f", torch {info['torch']} ({info['torch_threads']} threads)" if info.get("torch") else ""
    text = (
        '!!! info "Where these figures come from"\n'
        f"    Measured by `docs/make_figures.py` on {info['date']}: {info['cpu']}, {info['cores']} cores, "
        f"{info['os']}; Python {info['python']}, NumPy {info['numpy']}{torch_part}, "
        f"dualjac {info['dualjac']}. CPU only, float64 unless stated. Timings on other machines differ; "
        "the shapes of the curves are the point.\n"
    )
    (OUT / "machine.md").write_text(text)
    print(f"wrote {OUT / 'machine.md'}")


# --- figure 1: forward vs reverse -------------------------------------------------------
def forward_vs_reverse(plt) -> None:
    import torch

    hidden, m = 256, 16
    widths = [2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048]
    rows = {"dualjac jacfwd": [], "torch.func.jacfwd": [], "torch.func.jacrev": []}
    rng = np.random.default_rng(0)
    for K in widths:
        f_np, f_t, _ = mlp_fns(mlp_params([K, hidden, hidden, m], np.float64))  # the benchmark's MLP
        x = rng.standard_normal(K)
        xt = torch.from_numpy(x)
        # the transforms are built once, outside the timing
        jacs = {"dualjac jacfwd": (dj.jacfwd(f_np), x)}
        jacs |= {f"torch.func.{mode}": (getattr(torch.func, mode)(f_t), xt) for mode in ("jacfwd", "jacrev")}
        J = jacs["dualjac jacfwd"][0](x)
        assert np.allclose(J, jacs["torch.func.jacrev"][0](xt).numpy()), "dualjac and torch disagree"
        for name, (jac, arg) in jacs.items():
            rows[name].append(median_time(lambda jac=jac, arg=arg: jac(arg)))
        print(f"  K={K:5d}  " + "  ".join(f"{k} {v[-1] * 1e3:8.3f} ms" for k, v in rows.items()))

    fig, ax = plt.subplots(figsize=(7, 4.2))
    styles = {
        "dualjac jacfwd": ("C0", "o-"),
        "torch.func.jacfwd": ("C1", "s--"),
        "torch.func.jacrev": ("C2", "^-."),
    }
    for name, ts in rows.items():
        color, style = styles[name]
        ax.plot(widths, np.array(ts) * 1e3, style, color=color, label=name)
    ax.axvline(m, color="grey", lw=0.8, ls=":")
    ax.text(m * 1.08, 0.97, f"K = m = {m}", color="grey", va="top", transform=ax.get_xaxis_transform())
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="input width K (forward mode: lanes; the output has m = 16)",
        ylabel="time for the full Jacobian (ms)",
        title=f"Full Jacobian of an MLP K-{hidden}-{hidden}-{m} (tanh, float64, one input)",
    )
    ax.set_xticks(widths, [str(k) for k in widths], fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = OUT / "forward_vs_reverse.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    (OUT / "forward_vs_reverse.json").write_text(
        json.dumps({"K": widths, "m": m, "hidden": hidden, "seconds": rows}, indent=2) + "\n"
    )
    print(f"wrote {path}")


# --- figure 2: Jacobian heatmaps of the demo models -----------------------------------------
def heatmap(plt) -> None:
    import torch

    from dualjac.cli import _demo_models

    try:
        from dualjac.torch import from_torch

        engine = "dualjac.batch_jacobian(from_torch(model), x)"
    except ImportError as e:
        from_torch = None
        engine = "torch.func.vmap(jacrev) (dualjac's torch adapter was not available)"
        print(f"  note: {e}; computing the heatmap with torch.func instead: re-run once the adapter exists")

    models = _demo_models(torch)
    jacs = {}
    for name, (model, item) in models.items():
        x = torch.randn((4,) + item, generator=torch.Generator().manual_seed(1))
        if from_torch is not None:
            jacs[name] = dj.batch_jacobian(from_torch(model), x.numpy())[0]  # sample 0: (out, *item)
        else:
            single = lambda s, model=model: model(s.unsqueeze(0)).squeeze(0)
            jacs[name] = torch.func.vmap(torch.func.jacrev(single))(x).detach().numpy()[0]

    (mlp_name, J_mlp), (cnn_name, J_cnn) = jacs.items()  # (8, 16) and (10, 1, 12, 12)
    n_out = J_cnn.shape[0]
    fig = plt.figure(figsize=(9, 4.6))
    grid = fig.add_gridspec(2, n_out, height_ratios=[1.5, 1])
    ax = fig.add_subplot(grid[0, :])
    lim = float(np.abs(J_mlp).max()) or 1.0
    im = ax.imshow(J_mlp, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto", interpolation="nearest")
    ax.set(
        title=f"{mlp_name}: d(output) / d(input), sample 0, {J_mlp.shape[0]} x {J_mlp.shape[1]}",
        xlabel="input feature",
        ylabel="output",
    )
    fig.colorbar(im, ax=ax, fraction=0.03)
    lim = float(np.abs(J_cnn).max()) or 1.0
    for k in range(n_out):
        ax = fig.add_subplot(grid[1, k])
        ax.imshow(J_cnn[k].reshape(J_cnn.shape[-2:]), cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"out {k}", fontsize=8)
    fig.text(
        0.5,
        0.04,
        f"{cnn_name}: d(output k) / d(image), sample 0, each 12 x 12 (same colour scale)",
        ha="center",
        fontsize=10,
    )
    fig.suptitle(f"Per-sample Jacobians of the `dualjac demo` models, by {engine}", fontsize=9)
    fig.subplots_adjust(left=0.07, right=0.93, top=0.88, bottom=0.1, hspace=0.35)
    path = OUT / "jacobian_heatmap.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"wrote {path}")


# --- figure 3: the benchmark results ---------------------------------------------------------
def benchmarks(plt) -> None:
    """One panel per workload: each tool's median time relative to dualjac's (log scale)."""
    path = ROOT / "benchmarks" / "results" / "latest.json"
    fragment = OUT / "benchmarks.md"  # what docs/benchmarks.md includes: the chart, or why there is none
    if not path.exists():
        print(f"skipping benchmarks.png: {path.relative_to(ROOT)} not found (run `python -m benchmarks.run`)")
        fragment.write_text(
            '!!! warning "No benchmark chart yet"\n'
            "    `benchmarks/results/latest.json` was absent when the figures were made. Run "
            "`python -m benchmarks.run`, then `python docs/make_figures.py --only benchmarks`.\n"
        )
        return
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    data = json.loads(path.read_text())
    rows: dict[str, list[tuple[str, float]]] = {}
    for r in data["results"]:
        if r.get("median_s") is not None:
            rows.setdefault(r["workload"], []).append((r["tool"], r["median_s"]))
    fig, axes = plt.subplots(2, (len(rows) + 1) // 2, figsize=(14, 7.5))
    for ax, (workload, tools) in zip(axes.flat, rows.items()):
        base = dict(tools)["dualjac"]
        tools = sorted(tools, key=lambda t: t[1])
        names, ratios = [t[0] for t in tools], [t[1] / base for t in tools]
        colors = ["C3" if n == "dualjac" else "C7" if n == "limit" else "C0" for n in names]
        ax.barh(range(len(tools)), ratios, color=colors)
        ax.set_yticks(range(len(tools)), names, fontsize=8)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}×"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.axvline(1.0, color="C3", lw=0.8)
        ax.set_title(f"{workload}: dualjac {fmt(base)}", fontsize=10)
        ax.grid(True, axis="x", which="both", alpha=0.3)
    for ax in axes.flat[len(rows) :]:
        ax.set_visible(False)
    fig.supxlabel("median time relative to dualjac (log scale; right of the red line: slower than dualjac)")
    fig.suptitle(f"python -m benchmarks.run ({data['machine'].get('allocator', '')})", fontsize=11)
    fig.tight_layout()
    out = OUT / "benchmarks.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    fragment.write_text("![Benchmark results: each tool's time relative to dualjac](figures/benchmarks.png)\n")
    print(f"wrote {out} ({len(rows)} workloads)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=["forward_vs_reverse", "heatmap", "benchmarks"])
    args = parser.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    OUT.mkdir(parents=True, exist_ok=True)
    write_machine(figures_machine())
    todo = args.only or ["forward_vs_reverse", "heatmap", "benchmarks"]
    for name in todo:
        print(f"{name}:")
        {"forward_vs_reverse": forward_vs_reverse, "heatmap": heatmap, "benchmarks": benchmarks}[name](plt)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
