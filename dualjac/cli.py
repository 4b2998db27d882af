"""The ``dualjac`` command: ``dualjac demo`` and ``dualjac check MODULE:FACTORY``.

Exit codes: 0 all good; 1 a Jacobian mismatch, or a check without power (``check``); 2 bad
usage, a model that cannot be loaded, exported or lowered (the message says why).
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

from .batch import batch_jacobian
from .errors import UnsupportedOpError
from .settings import config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dualjac", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser(
        "demo", help="per-sample Jacobians of built-in torch models, cross-checked and timed"
    )
    demo.add_argument("--batch", type=int, default=64, help="batch size (default 64)")
    demo.add_argument("--plot", metavar="PNG", help="write a heatmap of one Jacobian (needs matplotlib)")
    demo.add_argument("--repeats", type=int, default=3, help="timing repeats (median is shown)")

    chk = sub.add_parser("check", help="cross-check a model's Jacobian against torch.autograd")
    chk.add_argument("factory", help="MODULE:FACTORY or path/to/file.py:FACTORY returning a torch.nn.Module")
    chk.add_argument(
        "--input-shape",
        required=True,
        action="append",
        help="comma-separated shape of one input, e.g. 8,16; repeat it for each input of forward()",
    )
    chk.add_argument(
        "--input-dtype",
        action="append",
        choices=sorted(_INPUT_DTYPES),
        help="dtype of each input (repeat it per input, or give it once for all): integer inputs "
        "(token ids) are drawn from 0..--int-high-1 and not differentiated (default: the model's dtype)",
    )
    chk.add_argument("--int-high", type=int, default=10, help="integer inputs lie in [0, INT_HIGH) (default 10)")
    chk.add_argument(
        "--batched", action="store_true", help="compare per-sample Jacobians (first axis = batch)"
    )
    chk.add_argument("--wrt", choices=["inputs", "params"], default="inputs")
    chk.add_argument("--dtype", choices=["float32", "float64"], default=None, help="cast the model and float inputs")
    chk.add_argument(
        "--mode", choices=["auto", "full", "projection"], default="auto",
        help="full Jacobians, or random projections U^T J V (auto: full for small inputs and outputs)",
    )  # fmt: skip
    chk.add_argument("--directions", type=int, default=4, help="projection mode: random directions U and V")
    chk.add_argument("--rtol", type=float, default=None)
    chk.add_argument("--atol", type=float, default=None, help="relative to each block's scale")
    chk.add_argument("--chunk-size", type=int, default=None, help="lanes per forward pass")
    chk.add_argument("--seed", type=int, default=0, help="seed of the random inputs and directions")

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


_INPUT_DTYPES = {"float32", "float64", "int64", "int32", "bool"}


def _inputs(torch: Any, args: argparse.Namespace, model_dtype: Any) -> tuple:
    """Random inputs from --input-shape / --input-dtype: floats N(0, 1), integers in [0, --int-high)."""
    shapes = []
    for text in args.input_shape:
        try:
            shapes.append(tuple(int(n) for n in text.split(",")) if text.strip() else ())
        except ValueError:
            raise _UsageError(f"--input-shape must be integers separated by commas, got {text!r}") from None
    dtypes = args.input_dtype or [None]
    if len(dtypes) == 1:
        dtypes = dtypes * len(shapes)
    if len(dtypes) != len(shapes):
        raise _UsageError(
            f"{len(shapes)} --input-shape but {len(dtypes)} --input-dtype: give one dtype per input, or one for all"
        )
    gen = torch.Generator().manual_seed(args.seed)
    inputs = []
    for shape, name in zip(shapes, dtypes):
        dtype = model_dtype if name is None else getattr(torch, name)
        if dtype.is_floating_point:
            inputs.append(torch.randn(shape, generator=gen, dtype=model_dtype if args.dtype else dtype))
        elif dtype == torch.bool:
            inputs.append(torch.rand(shape, generator=gen) < 0.5)
        else:
            inputs.append(torch.randint(0, args.int_high, shape, generator=gen, dtype=dtype))
    return tuple(inputs)


def _check(args: argparse.Namespace) -> int:
    import torch

    from .torch import check

    model = _load_factory(args.factory)()
    if not isinstance(model, torch.nn.Module):
        raise _UsageError(f"{args.factory} returned a {type(model).__name__}, not a torch.nn.Module")
    dtype = (
        getattr(torch, args.dtype)
        if args.dtype
        else next((p.dtype for p in model.parameters()), torch.float32)
    )
    model = model.to(dtype)
    inputs = _inputs(torch, args, dtype)
    config.progress = _progress
    try:
        report = check(
            model,
            *inputs,
            wrt=args.wrt,
            batched=args.batched,
            rtol=args.rtol,
            atol=args.atol,
            chunk_size=args.chunk_size,
            mode=args.mode,
            directions=args.directions,
            seed=args.seed,
        )
    except ValueError as e:  # check's argument checks (--batched with --wrt params, ...): a usage error
        raise _UsageError(str(e)) from None
    except RuntimeError as e:  # torch could not run the model on these inputs
        shapes = " ".join(f"--input-shape {s}" for s in args.input_shape)
        raise _UsageError(
            f"the model does not run on the generated inputs ({shapes}): {str(e).splitlines()[0]}; "
            "fix --input-shape, --input-dtype or --dtype"
        ) from None
    finally:
        config.progress = None
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


def _median_time(fn: Any, repeats: int, budget: float = 0.5) -> float:
    """Median of up to ``repeats`` warm runs (after one warm-up), stopping once ``budget`` seconds are spent."""
    fn()
    times: list[float] = []
    while len(times) < repeats and sum(times) < budget:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


_START = [0.0]


def _step(text: str) -> None:
    """Progress on stderr (the table on stdout stays clean), with the seconds since the start."""
    print(f"  [{time.perf_counter() - _START[0]:5.1f} s] {text}", file=sys.stderr, flush=True)


def _demo(args: argparse.Namespace) -> int:
    _START[0] = time.perf_counter()
    import torch

    print(f"dualjac demo: per-sample Jacobians of a batch of {args.batch}, float32 models", flush=True)
    print("(dualjac through torch.export; check: dualjac.torch.check of torch.autograd, in float64)\n", flush=True)
    rows, all_ok, heat = [], True, None
    for name, (model, item) in _demo_models(torch).items():
        ok, J, row = _demo_row(torch, name, model, item, args)
        rows.append(row)
        all_ok &= ok
        heat = heat or (name, J[0].reshape(J.shape[1], -1))
    cols = ("model", "Jacobian", "check", "max rel err", "lowering", "dualjac", "vmap(jacfwd)", "vmap(jacrev)")
    header = "{:<18} {:<20} {:<16} {:>11} {:>9} {:>10} {:>12} {:>12}".format(*cols)
    _step("done")
    print(header + "\n" + "-" * len(header))
    print("\n".join(rows))
    if args.plot:
        _plot(heat, args.plot)
    print("\nall Jacobians agree with torch.autograd" if all_ok else "\nMISMATCH: see the table")
    return 0 if all_ok else 1


def _demo_row(torch: Any, name: str, model: Any, item: tuple, args: argparse.Namespace) -> tuple[bool, Any, str]:
    from .torch import check, from_torch

    x = torch.randn((args.batch,) + item, generator=torch.Generator().manual_seed(1))
    _step(f"{name}: torch.export and lowering")
    t0 = time.perf_counter()
    graph = from_torch(model, x)  # float32, as the model runs
    t_lower = time.perf_counter() - t0
    _step(f"{name}: checking against torch.autograd")
    report = check(model, x, batched=True)
    xn = x.numpy()
    J = batch_jacobian(graph, xn)
    single = lambda s: model(s.unsqueeze(0)).squeeze(0)
    _step(f"{name}: timing dualjac, vmap(jacfwd), vmap(jacrev) (warm, median of up to {args.repeats})")
    t_dj = _median_time(lambda: batch_jacobian(graph, xn), args.repeats)
    t_fwd = _median_time(lambda: torch.func.vmap(torch.func.jacfwd(single))(x), args.repeats)
    t_rev = _median_time(lambda: torch.func.vmap(torch.func.jacrev(single))(x), args.repeats)
    verdict = f"{report.status} ({report.mode})"
    row = (
        f"{name:<18} {str(tuple(J.shape)):<20} {verdict:<16} {report.max_rel_error:11.2e} {t_lower:8.2f}s "
        f"{t_dj * 1e3:8.2f}ms {t_fwd * 1e3:10.2f}ms {t_rev * 1e3:10.2f}ms"
    )
    return report.ok, J, row


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
