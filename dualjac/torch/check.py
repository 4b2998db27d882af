"""Cross-check a torch model's Jacobian: torch.autograd against dualjac's independent engine.

torch computes the Jacobian as the user runs the model (its dtype, its device, its
backward formulas, custom ``autograd.Function``s included). dualjac lowers the same
module with the same weights to its own op graph and differentiates it in float64
by forward mode, with none of torch's derivative code. Where the two disagree
beyond the tolerance, torch's answer is suspect.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import transforms

# Default tolerances by the model's dtype: |torch - dualjac| <= atol + rtol * |dualjac|.
# float64 leaves room for different summation orders only; lower precisions for their rounding.
DEFAULT_TOLERANCES = {
    "float64": (1e-7, 1e-10),
    "float32": (1e-3, 1e-5),
    "float16": (2e-2, 1e-3),
    "bfloat16": (5e-2, 1e-2),
}


@dataclass
class PairReport:
    """One block of the Jacobian: d(output) / d(input or parameter)."""

    output: str
    wrt: str
    shape: tuple
    max_abs_error: float
    max_rel_error: float
    ok: bool


@dataclass
class CheckReport:
    """The outcome of ``check``: ``.ok``, the worst errors, one row per block, timings."""

    ok: bool
    rows: list[PairReport]
    rtol: float
    atol: float
    dtype: str
    wrt: str
    batched: bool
    time_torch: float
    time_dualjac: float
    notes: list[str] = field(default_factory=list)

    @property
    def max_abs_error(self) -> float:
        return max((r.max_abs_error for r in self.rows), default=0.0)

    @property
    def max_rel_error(self) -> float:
        return max((r.max_rel_error for r in self.rows), default=0.0)

    def raise_for_failure(self) -> None:
        """Raise ``AssertionError`` with the table if any block disagrees."""
        if not self.ok:
            raise AssertionError(f"torch.autograd and dualjac disagree:\n{self}")

    def __str__(self) -> str:
        head = (
            f"dualjac.torch.check: {'OK' if self.ok else 'MISMATCH'} "
            f"(model dtype {self.dtype}, wrt={self.wrt}{', batched' if self.batched else ''}, "
            f"rtol={self.rtol:g}, atol={self.atol:g})"
        )
        width = max([len(r.output) + len(r.wrt) + 9 for r in self.rows] + [20])
        lines = [head, f"  {'block':<{width}} {'shape':<22} {'max abs err':>12} {'max rel err':>12}  ok"]
        for r in self.rows:
            name = f"d{r.output} / d{r.wrt}"
            lines.append(
                f"  {name:<{width}} {str(r.shape):<22} {r.max_abs_error:12.3e} {r.max_rel_error:12.3e}  "
                f"{'yes' if r.ok else 'NO'}"
            )
        lines.append(
            f"  time: torch.autograd {self.time_torch * 1e3:.2f} ms, dualjac {self.time_dualjac * 1e3:.2f} ms"
        )
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    __repr__ = __str__


def check(
    module: Any,
    *inputs: Any,
    wrt: str = "inputs",
    batched: bool = False,
    rtol: float | None = None,
    atol: float | None = None,
    chunk_size: int | None = None,
) -> CheckReport:
    """Compare ``torch.autograd``'s Jacobian of ``module`` with dualjac's, computed in float64.

    ``wrt="inputs"``: d(outputs)/d(inputs); ``batched=True`` compares per-sample
    Jacobians ``(B, *out_item, *in_item)`` (rows must be independent, e.g. a model in
    eval mode). ``wrt="params"``: d(outputs)/d(each named parameter). Default
    tolerances follow the model's dtype (``DEFAULT_TOLERANCES``).

    >>> import torch, dualjac.torch as djt
    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh()).double()
    >>> report = djt.check(model, torch.randn(5, 3, dtype=torch.float64), batched=True)
    >>> report.ok
    True
    """
    import torch

    from .fx import from_torch

    if wrt not in ("inputs", "params"):
        raise ValueError(f"wrt must be 'inputs' or 'params', got {wrt!r}")
    if batched and (wrt != "inputs" or len(inputs) != 1):
        raise ValueError("batched=True compares per-sample Jacobians w.r.t. a single batched input")
    if not inputs:
        raise ValueError("check needs example inputs: check(module, x)")
    named = list(module.named_parameters()) if isinstance(module, torch.nn.Module) else []
    if wrt == "params" and not any(p.requires_grad for _, p in named):
        what = type(module).__name__ if isinstance(module, torch.nn.Module) else "a plain function"
        raise ValueError(f"wrt='params' needs a torch.nn.Module with trainable parameters; {what} has none")
    # only the floating inputs are differentiated (indices and masks stay fixed), on both sides
    diff = [i for i, x in enumerate(inputs) if isinstance(x, torch.Tensor) and x.is_floating_point()]
    dtype = next((p.dtype for _, p in named), inputs[diff[0]].dtype if diff else torch.float32)
    dname = str(dtype).replace("torch.", "")
    r_default, a_default = DEFAULT_TOLERANCES.get(dname, DEFAULT_TOLERANCES["float32"])
    rtol = r_default if rtol is None else rtol
    atol = a_default if atol is None else atol

    # torch, as the user runs it
    t0 = time.perf_counter()
    t_blocks, names_out, names_in = _torch_jacobian(torch, module, inputs, wrt, batched, diff)
    time_torch = time.perf_counter() - t0

    # dualjac, float64, same weights
    graph = from_torch(module, dtype=np.float64)
    xs = tuple(_to_numpy(x) for x in inputs)
    n_out = len(names_out)
    t0 = time.perf_counter()
    if wrt == "params":
        jac = transforms.jacfwd(lambda p: graph(*xs, params=p), chunk_size=chunk_size)(graph.params)
        d_blocks = [[J[name] for name in names_in] for J in _per_output(jac, n_out)]
    elif batched:
        jac = transforms.batch_jacobian(graph, xs[0], chunk_size=chunk_size)
        d_blocks = [[J] for J in _per_output(jac, n_out)]
    else:
        jac = transforms.jacfwd(graph, argnums=tuple(diff), chunk_size=chunk_size)(*xs)
        d_blocks = [list(J) for J in _per_output(jac, n_out)]
    time_dualjac = time.perf_counter() - t0

    notes = []
    if dname != "float64":
        notes.append(
            f"torch ran the model in {dname}, dualjac in float64: the errors include {dname}'s rounding, "
            f"and the default tolerances are {dname}'s; cast the model and inputs to float64 for a tight check"
        )
    if wrt == "inputs" and len(diff) < len(inputs):
        skipped = ", ".join(_input_names([i for i in range(len(inputs)) if i not in diff], len(inputs)))
        notes.append(f"not differentiated (not floating point): {skipped}")
    rows = []
    for i, (t_row, d_row) in enumerate(zip(t_blocks, d_blocks)):
        for j, (t, d) in enumerate(zip(t_row, d_row)):
            t = t.detach().to("cpu", torch.float64).numpy()
            d = np.asarray(d, dtype=np.float64)
            if t.shape != d.shape:
                raise AssertionError(
                    f"block d{names_out[i]}/d{names_in[j]}: torch {t.shape} vs dualjac {d.shape}"
                )
            err = np.abs(t - d)
            rel = err / np.maximum(np.abs(d), np.finfo(np.float64).tiny)
            ok = bool(np.all(err <= atol + rtol * np.abs(d)))
            rows.append(
                PairReport(
                    names_out[i],
                    names_in[j],
                    d.shape,
                    float(err.max(initial=0.0)),
                    float(np.where(err > atol, rel, 0).max(initial=0.0)),
                    ok,
                )
            )
    return CheckReport(
        all(r.ok for r in rows), rows, rtol, atol, dname, wrt, batched, time_torch, time_dualjac, notes
    )


def _as_list(x: Any) -> list:
    return list(x) if isinstance(x, tuple | list) else [x]


def _per_output(jac: Any, n_out: int) -> list:
    """A Jacobian as one entry per output (a single output's may itself be a tuple, one per input)."""
    return list(jac) if n_out > 1 else [jac]


def _input_names(indices: list[int], n_inputs: int) -> list[str]:
    return [f"x{i}" if n_inputs > 1 else "x" for i in indices]


def _to_numpy(x: Any) -> Any:
    import torch

    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu")
        return x.to(torch.float64).numpy() if x.is_floating_point() else x.numpy()
    return x


def _torch_jacobian(torch: Any, module: Any, inputs: tuple, wrt: str, batched: bool, diff: list[int]):
    """Jacobian blocks from torch.autograd, as lists [output][input-or-param]; ``diff``: the inputs to
    differentiate (``wrt="inputs"``)."""
    from torch.autograd.functional import jacobian

    outs = module(*inputs)
    n_out = len(outs) if isinstance(outs, tuple | list) else 1
    names_out = [f"out[{i}]" for i in range(n_out)] if n_out > 1 else ["out"]
    if wrt == "params":
        names = [n for n, p in module.named_parameters() if p.requires_grad]
        params = dict(module.named_parameters())
        buffers = dict(module.named_buffers())

        def f(*ps):
            return torch.func.functional_call(module, {**buffers, **dict(zip(names, ps))}, inputs)

        J = jacobian(f, tuple(params[n].detach() for n in names))
        return [list(Jo) for Jo in _per_output(J, n_out)], names_out, names
    names_in = _input_names(diff, len(inputs))
    if batched:
        x = inputs[0]
        # rows are independent, so the sum over the batch leaves each row's own Jacobian
        summed = lambda x: tuple(o.sum(0) for o in _as_list(module(x)))
        J = jacobian(summed, x)  # per output: (*out_item, B, *in_item)
        rows = []
        for Jo, o in zip(J, _as_list(outs)):
            k = o.dim() - 1
            rows.append([Jo.movedim(k, 0)])
        return rows, names_out, names_in

    def f(*floats):  # the non-floating inputs (indices, masks) stay fixed
        args = list(inputs)
        for i, v in zip(diff, floats):
            args[i] = v
        return module(*args)

    J = jacobian(f, tuple(inputs[i] for i in diff))
    return [list(Jo) for Jo in _per_output(J, n_out)], names_out, names_in
