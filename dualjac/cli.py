"""The ``dualjac`` command: ``dualjac demo`` and ``dualjac check MODULE:FACTORY``.

Exit codes: 0 all good; 1 a Jacobian mismatch (``check``); 2 bad usage, a model that
cannot be loaded, traced or lowered (the message says why).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import transforms
from .errors import UnsupportedOpError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dualjac", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser(
        "demo", help="per-sample Jacobians of built-in torch models, cross-checked and timed"
    )
    demo.add_argument("--batch", type=int, default=64, help="batch size (default 64)")
    demo.add_argument("--plot", metavar="PNG", help="write a heatmap of one Jacobian (needs matplotlib)")
    demo.add_argument("--repeats", type=int, default=5, help="timing repeats (median is shown)")

    chk = sub.add_parser("check", help="cross-check a model's Jacobian against torch.autograd")
    chk.add_argument("factory", help="MODULE:FACTORY or path/to/file.py:FACTORY returning a torch.nn.Module")
    chk.add_argument("--input-shape", required=True, help="comma-separated input shape, e.g. 8,16")
    chk.add_argument(
        "--batched", action="store_true", help="compare per-sample Jacobians (first axis = batch)"
    )
    chk.add_argument("--wrt", choices=["inputs", "params"], default="inputs")
    chk.add_argument("--dtype", choices=["float32", "float64"], default=None, help="cast the model and input")
    chk.add_argument("--rtol", type=float, default=None)
    chk.add_argument("--atol", type=float, default=None)
    chk.add_argument("--chunk-size", type=int, default=None, help="lanes per forward pass")
    chk.add_argument("--seed", type=int, default=0, help="seed of the random input")

    args = parser.parse_args(argv)
    try:
        return _demo(args) if args.command == "demo" else _check(args)
    except (UnsupportedOpError, _UsageError, ImportError) as e:
        print(f"dualjac {args.command}: {e}", file=sys.stderr)
        return 2


class _UsageError(Exception):
    pass


# --- dualjac check ------------------------------------------------------------------------
def _load_factory(spec: str) -> Any:
    if ":" not in spec:
        raise _UsageError(f"expected MODULE:FACTORY, got {spec!r} (e.g. mypkg.models:make_model)")
    mod_name, _, attr = spec.rpartition(":")
    if mod_name.endswith(".py") or Path(mod_name).exists():
        path = Path(mod_name)
        if not path.exists():
            raise _UsageError(f"no such file: {path}")
        module_spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.path.insert(0, str(path.parent.resolve()))
        module_spec.loader.exec_module(module)
    else:
        sys.path.insert(0, str(Path.cwd()))
        module = importlib.import_module(mod_name)
    if not hasattr(module, attr):
        raise _UsageError(f"{mod_name} has no attribute {attr!r}")
    return getattr(module, attr)


def _progress(done: int, total: int) -> None:
    width = 30
    fill = int(width * done / total)
    end = "\n" if done >= total else ""
    print(
        f"\r  lanes [{'#' * fill}{'.' * (width - fill)}] {done}/{total}", end=end, file=sys.stderr, flush=True
    )


def _check(args: argparse.Namespace) -> int:
    import torch

    from .torch import check

    try:
        shape = tuple(int(n) for n in args.input_shape.split(","))
    except ValueError:
        raise _UsageError(
            f"--input-shape must be integers separated by commas, got {args.input_shape!r}"
        ) from None
    model = _load_factory(args.factory)()
    if not isinstance(model, torch.nn.Module):
        raise _UsageError(f"{args.factory} returned a {type(model).__name__}, not a torch.nn.Module")
    dtype = (
        getattr(torch, args.dtype)
        if args.dtype
        else next((p.dtype for p in model.parameters()), torch.float32)
    )
    model = model.to(dtype)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(args.seed), dtype=dtype)
    transforms.config.progress = _progress
    try:
        report = check(
            model,
            x,
            wrt=args.wrt,
            batched=args.batched,
            rtol=args.rtol,
            atol=args.atol,
            chunk_size=args.chunk_size,
        )
    except ValueError as e:  # check's argument checks (--batched with --wrt params, ...): a usage error
        raise _UsageError(str(e)) from None
    finally:
        transforms.config.progress = None
    print(report)
    return 0 if report.ok else 1


# --- dualjac demo -------------------------------------------------------------------------
def _demo_models(torch: Any) -> dict[str, tuple[Any, tuple[int, ...]]]:
    nn = torch.nn
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(16, 64), nn.Tanh(), nn.Linear(64, 64), nn.GELU(), nn.Linear(64, 8))
    cnn = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 8, 3),
        nn.SiLU(),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 10),
    )
    return {"MLP 16-64-64-8": (mlp.eval(), (16,)), "CNN 1x12x12 -> 10": (cnn.eval(), (1, 12, 12))}


def _median_time(fn: Any, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _demo(args: argparse.Namespace) -> int:
    import torch

    print(f"dualjac demo: per-sample Jacobians of a batch of {args.batch}, float32 models")
    print(
        "(dualjac via its torch.fx adapter; errors: a float64 dualjac cross-check of torch.autograd)\n"
    )
    cols = ("model", "Jacobian", "max abs err", "ok", "dualjac", "vmap(jacfwd)", "vmap(jacrev)")
    header = "{:<20} {:<20} {:>12} {:>4} {:>10} {:>13} {:>13}".format(*cols)
    print(header + "\n" + "-" * len(header))
    all_ok, heat = True, None
    for name, (model, item) in _demo_models(torch).items():
        ok, J = _demo_row(torch, name, model, item, args)
        all_ok &= ok
        heat = heat or (name, J[0].reshape(J.shape[1], -1))
    if args.plot:
        _plot(heat, args.plot)
    print("\nall Jacobians agree with torch.autograd" if all_ok else "\nMISMATCH: see the table")
    return 0 if all_ok else 1


def _demo_row(torch: Any, name: str, model: Any, item: tuple, args: argparse.Namespace) -> tuple[bool, Any]:
    from .torch import check, from_torch

    x = torch.randn((args.batch,) + item, generator=torch.Generator().manual_seed(1))
    report = check(model, x, batched=True)
    graph = from_torch(model)  # float32, as the model runs
    xn = x.numpy()
    J = transforms.batch_jacobian(graph, xn)
    single = lambda s: model(s.unsqueeze(0)).squeeze(0)
    t_dj = _median_time(lambda: transforms.batch_jacobian(graph, xn), args.repeats)
    t_fwd = _median_time(lambda: torch.func.vmap(torch.func.jacfwd(single))(x), args.repeats)
    t_rev = _median_time(lambda: torch.func.vmap(torch.func.jacrev(single))(x), args.repeats)
    print(
        f"{name:<20} {str(tuple(J.shape)):<20} {report.max_abs_error:12.2e} "
        f"{'yes' if report.ok else 'NO':>4} "
        f"{t_dj * 1e3:8.2f}ms {t_fwd * 1e3:11.2f}ms {t_rev * 1e3:11.2f}ms"
    )
    return report.ok, J


def _plot(heat: tuple[str, Any], path: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise _UsageError("--plot needs matplotlib: pip install 'dualjac[plot]'") from None
    name, J = heat
    lim = float(np.abs(J).max()) or 1.0
    fig, ax = plt.subplots(figsize=(7, 3.2))
    im = ax.imshow(J, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
    ax.set(title=f"Jacobian of the {name} for sample 0", xlabel="input feature", ylabel="output")
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


if __name__ == "__main__":
    raise SystemExit(main())
