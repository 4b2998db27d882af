"""Cross-check a torch model's Jacobian: torch.autograd against dualjac's independent engine.

torch computes the Jacobian as the user runs the model (its dtype, its device, its
backward formulas, custom ``autograd.Function``s included). dualjac lowers the same
module with the same weights to its own op graph and differentiates it in float64
by forward mode, with none of torch's derivative code. Where the two disagree
beyond the tolerance, torch's answer is suspect.

Two modes compare the same thing at different cost:

* ``"full"``: every entry of every Jacobian block (one lane per input element in dualjac,
  one backward pass per output element in torch). For small models.
* ``"projection"``: for ``K`` random directions ``V`` and ``K`` random cotangents ``U``,
  dualjac computes ``J V`` in one forward pass of ``K`` lanes (exact forward mode) and torch
  computes ``Uᵀ J`` by ``K`` backward passes; the check compares ``Uᵀ(J V)`` with
  ``(Uᵀ J) V``. A wrong backward changes ``Uᵀ J`` in some direction, and random ``V`` sees
  it with probability 1, at any output scale. The default when inputs are wide.

Tolerances are relative to each block's *scale*, never absolute: a value passes when
``|torch - dualjac| <= atol * scale + rtol * |dualjac|``. In full mode the scale is the
block's largest entry; in projection mode it is the typical size of a projection,
``max(||U_iᵀ J||, ||J V_j||)`` (U and V have unit-variance entries). So a model whose
Jacobian is 1e-11 everywhere is checked as tightly as one whose Jacobian is 1.

A comparison has *power* where it would catch a 1% error: a value is *resolved* when
``0.01 * magnitude > tolerance`` (magnitude: the entry in full mode, the scale in
projection mode). Each row reports the fraction it resolved, and ``check`` never says
OK for a block with nonzero derivatives that resolved nothing, nor for a check whose
blocks are all exactly zero: it reports ``status == "no power"`` and ``ok == False``.

On a mismatch, ``check`` looks for the module responsible: it runs the model once more
with hooks that record each submodule call's inputs, output and the gradients torch
sends through them, and checks each call's *local* backward (``g_outᵀ J_M V`` vs
``g_inᵀ V``, with ``J_M V`` from dualjac on that module alone), descending from the
top module into the first failing child. ``report.culprit`` names the innermost
failing module, its class, its first graph node (ATen op and source line) and the line
that calls it. The search runs the model eagerly, not its ExportedProgram: export keeps
a custom ``autograd.Function``'s forward only, so a wrong backward exists only in eager torch.
A submodule that cannot be lowered or reproduced alone (a cache it updates, randomness) is
skipped and named in the report.

The module is lowered by ``dualjac.torch.lower`` (torch.export), which caches the graph per
module and input shapes and reads parameters and buffers from the module at every call, so
a changed weight is seen; the report gives the lowering time apart from the check's.
"""

from __future__ import annotations

import copy
import inspect
import os
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import transforms
from ..tree import flatten

# Default (rtol, atol) by the model's dtype; atol is relative to the block's scale.
# float64 leaves room for different summation orders; lower precisions for their rounding.
# float16/bfloat16 rounding hides a 1% error, so their checks have no power: cast the model.
DEFAULT_TOLERANCES = {
    "float64": (1e-7, 1e-10),
    "float32": (1e-3, 1e-5),
    "float16": (2e-2, 1e-3),
    "bfloat16": (5e-2, 1e-2),
}
RESOLVE = 0.01  # a value is resolved when an error of this fraction of it would fail the check
FULL_MAX = 64  # mode="auto": full Jacobians when inputs and outputs have at most this many elements


@dataclass
class PairReport:
    """One block of the Jacobian, d(output) / d(input or parameters).

    ``shape``: the block's shape (full mode) or the projections' ``(K_u, K_v[, B])``.
    ``scale``: what tolerances are relative to (largest entry / largest projection size).
    ``resolved``: the fraction of values in which a 1% error would fail the check.
    ``worst``: the largest error / tolerance ratio (at most 1 passes).
    ``status``: ``"ok"``, ``"mismatch"``, ``"no power"`` or ``"zero"`` (exactly zero on both sides).
    """

    output: str
    wrt: str
    shape: tuple
    max_abs_error: float
    max_rel_error: float
    ok: bool
    scale: float = 0.0
    resolved: float = 0.0
    worst: float = 0.0
    status: str = "ok"


@dataclass
class Culprit:
    """Where a mismatch comes from: the innermost module call whose local backward disagrees."""

    module: str
    kind: str
    defined_at: str
    called_at: str
    error: float
    node: str = ""  # the module's first graph node of its own code, and its ATen op
    source: str = ""  # the user's line that node comes from
    unchecked: list = field(default_factory=list)  # children that could not be checked on their own

    def __str__(self) -> str:
        where = f"module '{self.module}' ({self.kind})" if self.module else f"the top module ({self.kind})"
        off = f", local backward off by {self.error:.3g} of its scale" if np.isfinite(self.error) else ""
        lines = [f"first failing node: {where}{off}"]
        if self.node:
            lines.append(f"    graph node {self.node}" + (f" from {self.source}" if self.source else ""))
        if self.called_at:
            lines.append(f"    called at {self.called_at}")
        if self.defined_at:
            lines.append(f"    forward defined at {self.defined_at}")
        if self.unchecked:
            lines.append(f"    (or in its submodules {', '.join(self.unchecked)}, which could not be checked alone)")
        return "\n".join(lines)


@dataclass
class CheckReport:
    """The outcome of ``check``: ``.ok``, ``.status`` and ``.reason``, one row per block, timings.

    ``status``: ``"ok"``, ``"mismatch"`` or ``"no power"`` (``ok`` is True only for ``"ok"``).
    ``time_lower``: the call to ``lower`` (an export on the first call, ``lower_cached`` after); ``time_torch`` and
    ``time_dualjac``: each engine's Jacobian (or projections); ``time_locate``: the search
    for the culprit after a mismatch.
    """

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
    status: str = "ok"
    reason: str = ""
    mode: str = "full"
    directions: int = 0
    seed: int = 0
    value_error: float = 0.0
    time_lower: float = 0.0
    lower_cached: bool = False
    time_locate: float = 0.0
    culprit: Culprit | None = None

    @property
    def max_abs_error(self) -> float:
        return max((r.max_abs_error for r in self.rows), default=0.0)

    @property
    def max_rel_error(self) -> float:
        return max((r.max_rel_error for r in self.rows), default=0.0)

    def raise_for_failure(self) -> None:
        """Raise ``AssertionError`` with the table if a block disagrees or the check had no power."""
        if not self.ok:
            raise AssertionError(f"torch.autograd and dualjac disagree or were not compared:\n{self}")

    def __str__(self) -> str:
        mode = f"projection, {self.directions}x{self.directions} directions, seed {self.seed}"
        head = (
            f"dualjac.torch.check: {self.status.upper()} "
            f"(model dtype {self.dtype}, wrt={self.wrt}{', batched' if self.batched else ''}, "
            f"{mode if self.mode == 'projection' else 'full Jacobian'}, rtol={self.rtol:g}, "
            f"atol={self.atol:g} x scale)"
        )
        width = max([len(r.output) + len(r.wrt) + 4 for r in self.rows] + [20])
        lines = [head]
        if self.reason:
            lines.append(f"  {self.reason}")
        lines.append(
            f"  {'block':<{width}} {'shape':<18} {'scale':>9} {'max abs err':>11} {'max rel err':>11} "
            f"{'resolved':>8}  status"
        )
        for r in self.rows:
            name = f"d{r.output} / d{r.wrt}"
            lines.append(
                f"  {name:<{width}} {str(r.shape):<18} {r.scale:9.2e} {r.max_abs_error:11.3e} "
                f"{r.max_rel_error:11.3e} {r.resolved:8.0%}  {r.status}"
            )
        lower = f"{self.time_lower * 1e3:.1f} ms ({'cached' if self.lower_cached else 'export, first call'})"
        lines.append(
            f"  time: lowering {lower}, torch.autograd {self.time_torch * 1e3:.2f} ms, "
            f"dualjac {self.time_dualjac * 1e3:.2f} ms"
            + (f", locating {self.time_locate * 1e3:.0f} ms" if self.time_locate else "")
        )
        if self.culprit is not None:
            lines.append("  " + str(self.culprit).replace("\n", "\n  "))
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
    mode: str = "auto",
    directions: int = 4,
    seed: int = 0,
    locate: bool = True,
) -> CheckReport:
    """Compare ``torch.autograd``'s Jacobian of ``module`` with dualjac's, computed in float64.

    ``wrt="inputs"``: d(outputs)/d(floating inputs); ``batched=True`` compares per-sample
    Jacobians (rows must be independent, e.g. a model in eval mode). ``wrt="params"``:
    d(outputs)/d(each named parameter). ``mode``: ``"full"`` compares every entry,
    ``"projection"`` compares ``directions`` x ``directions`` random projections
    ``Uᵀ J V`` (seeded by ``seed``), ``"auto"`` picks full when inputs and outputs have at
    most 64 elements (per sample when batched). Tolerances default to the least precise dtype
    the model computes in (``DEFAULT_TOLERANCES``); ``atol`` is relative to each block's scale.
    ``status`` is ``"no power"`` (and ``ok`` False) where a 1% error would pass. On a mismatch
    (and ``locate=True``) ``report.culprit`` names the module whose backward disagrees.

    >>> import torch, dualjac.torch as djt
    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh()).double()
    >>> report = djt.check(model, torch.randn(5, 3, dtype=torch.float64), batched=True)
    >>> report.ok, report.mode, report.rows[0].resolved > 0.5
    (True, 'full', True)
    """
    import torch

    if wrt not in ("inputs", "params"):
        raise ValueError(f"wrt must be 'inputs' or 'params', got {wrt!r}")
    if mode not in ("auto", "full", "projection"):
        raise ValueError(f"mode must be 'auto', 'full' or 'projection', got {mode!r}")
    if not inputs:
        raise ValueError("check needs example inputs: check(module, x)")
    if batched and (wrt != "inputs" or len(inputs) != 1):
        raise ValueError("batched=True compares per-sample Jacobians w.r.t. a single batched input")
    if not (isinstance(directions, int) and directions >= 1):
        raise ValueError(f"directions must be a positive integer, got {directions!r}")
    is_module = isinstance(module, torch.nn.Module)
    named = [(n, p) for n, p in module.named_parameters() if p.requires_grad] if is_module else []
    if wrt == "params" and not named:
        what = type(module).__name__ if is_module else "a plain function"
        raise ValueError(f"wrt='params' needs a torch.nn.Module with trainable parameters; {what} has none")
    arrays = [i for i, x in enumerate(inputs) if hasattr(x, "__array__") and not isinstance(x, torch.Tensor)]
    if arrays:
        what = type(inputs[arrays[0]]).__name__
        raise TypeError(f"check takes torch tensors, as the model; input {arrays[0]} is a {what} (use torch.as_tensor)")
    # only the floating inputs are differentiated (indices and masks stay fixed), on both sides
    diff = [i for i, x in enumerate(inputs) if isinstance(x, torch.Tensor) and x.is_floating_point()]
    if wrt == "inputs" and not diff:
        raise ValueError("no floating-point input to differentiate; use wrt='params' for a model of token ids")
    dtype = named[0][1].dtype if named else (inputs[diff[0]].dtype if diff else torch.float32)
    dname = str(dtype).replace("torch.", "")
    for name, value in (("rtol", rtol), ("atol", atol)):
        if value is not None and not 0 <= value < 1:
            raise ValueError(f"{name} must lie in [0, 1) (it is relative), got {value}")

    # unsupported ops and training-mode BatchNorm/Dropout fail here, before torch runs the model
    graph, program, time_lower, cached = _lower(module, inputs)
    # tolerances follow the lowest precision torch computes in: a float64 model may round to float32
    # inside (Llama's RMSNorm does), and then torch's Jacobian is only float32-accurate there
    inner, where = _lowest_precision(torch, program, dtype)
    precision = str(inner).replace("torch.", "")
    r_default, a_default = DEFAULT_TOLERANCES.get(precision, DEFAULT_TOLERANCES["float32"])
    rtol = r_default if rtol is None else float(rtol)
    atol = a_default if atol is None else float(atol)
    if mode == "auto":
        mode = "full" if _small(torch, module, inputs, diff, wrt, batched, named) else "projection"
    compare = _full if mode == "full" else _projected
    rows, t_outs, d_outs, time_torch, time_dualjac = compare(
        torch, module, graph, inputs, wrt, batched, diff, named, rtol, atol, chunk_size, directions, seed
    )
    value_error, value_ok = _value_error(t_outs, d_outs, rtol, atol)
    status, reason = _verdict(rows, value_ok, value_error)
    notes = _notes(dname, wrt, diff, inputs, mode)
    if where and r_default == rtol and a_default == atol:
        notes.append(
            f"the model computes in {precision} in places (first: {where}), so torch's derivatives are "
            f"{precision}-accurate there: {precision}'s default tolerances apply"
        )
    report = CheckReport(
        status == "ok", rows, rtol, atol, dname, wrt, batched, time_torch, time_dualjac, notes,
        status, reason, mode, directions if mode == "projection" else 0, seed, value_error,
        time_lower, cached,
    )  # fmt: skip
    if status == "mismatch" and locate:
        if not value_ok:  # the lowering computes something else: no backward to blame
            report.notes.append("no culprit search: the forward values differ, so the lowering is at fault")
        elif not is_module:
            report.notes.append("pass an nn.Module (not a plain function) to have the culprit located")
        else:
            t0 = time.perf_counter()
            report.culprit, located_notes = _locate(torch, module, inputs, rtol, atol, seed, graph)
            report.time_locate = time.perf_counter() - t0
            report.notes += located_notes
    return report


def _full(torch, module, graph, inputs, wrt, batched, diff, named, rtol, atol, chunk_size, directions, seed):
    """Every entry of every block: torch.autograd.functional.jacobian against dualjac's jacfwd."""
    t0 = time.perf_counter()
    t_blocks, t_outs, names_in = _torch_jacobian(torch, module, inputs, wrt, batched, diff)
    time_torch = time.perf_counter() - t0
    t0 = time.perf_counter()
    xs = tuple(_to_numpy(x) for x in inputs)
    d_blocks, d_outs = _dualjac_jacobian(graph, xs, graph.params, wrt, batched, diff, names_in, chunk_size)
    time_dualjac = time.perf_counter() - t0
    names_out = _output_names(len(t_outs))
    rows = [
        _compare(names_out[i], names_in[j], _numpy64(t), np.asarray(d, dtype=np.float64), None, rtol, atol)
        for i, (t_row, d_row) in enumerate(zip(t_blocks, d_blocks))
        for j, (t, d) in enumerate(zip(t_row, d_row))
    ]
    return rows, t_outs, d_outs, time_torch, time_dualjac


def _projected(torch, module, graph, inputs, wrt, batched, diff, named, rtol, atol, chunk_size, directions, seed):
    """``directions`` x ``directions`` projections per block: ``(Uᵀ J) V`` from torch, ``Uᵀ (J V)`` from dualjac."""
    rng = np.random.default_rng(seed)
    names_in = [f"params ({len(named)} tensors)"] if wrt == "params" else _input_names(diff, len(inputs))
    t0 = time.perf_counter()
    t_outs, us, t_grads = _torch_projected(torch, module, inputs, wrt, diff, named, directions, rng)
    time_torch = time.perf_counter() - t0
    t0 = time.perf_counter()
    xs, params = tuple(_to_numpy(x) for x in inputs), graph.params
    blocks = [[params[n] for n, _ in named]] if wrt == "params" else [[xs[i]] for i in diff]
    vs = [[rng.standard_normal((directions,) + np.shape(a)) for a in b] for b in blocks]
    d_outs, jvs = _dualjac_projected(graph, xs, params, wrt, diff, [n for n, _ in named], vs)
    time_dualjac = time.perf_counter() - t0
    names_out = _output_names(len(t_outs))
    rows = []
    for i, (u, jv, grads) in enumerate(zip(us, jvs, t_grads)):
        for b, (v, g) in enumerate(zip(vs, grads)):
            s_t, s_d, scale = _projections(u, jv[b], g, v, batched)
            rows.append(_compare(names_out[i], names_in[b], s_t, s_d, scale, rtol, atol))
    return rows, t_outs, d_outs, time_torch, time_dualjac


# --- lowering ---------------------------------------------------------------------------------
def _lower(module: Any, inputs: tuple) -> tuple[Any, float, bool]:
    """The float64 Graph from ``dualjac.torch.lower`` (cached per module and input shapes; parameters and
    buffers read from the module at every call), the seconds the call took, and whether it was a cache hit
    (it then costs reading the state, not an export)."""
    from .export import lower

    t0 = time.perf_counter()
    low = lower(module, *inputs, dtype=np.float64)
    took = time.perf_counter() - t0
    return low.graph, low.program, took, took < 0.5 * (low.export_time + low.lowering_time)


def _lowest_precision(torch: Any, program: Any, dtype: Any) -> tuple[Any, str]:
    """The least precise floating dtype among the exported program's values (at least ``dtype``'s), and
    where it first appears when it is lower than ``dtype``."""
    lowest, where = dtype, ""
    for node in getattr(program, "graph", None).nodes if program is not None else ():
        val = node.meta.get("val")
        d = getattr(val, "dtype", None)
        if d is None or not d.is_floating_point or torch.finfo(d).eps <= torch.finfo(lowest).eps:
            continue
        stack = node.meta.get("nn_module_stack") or {}
        path = next(reversed(stack.values()))[0] if stack else ""
        lowest, where = d, f"{node.target} in module '{path}'" if path else str(node.target)
    return lowest, where


def _small(torch: Any, module: Any, inputs: tuple, diff: list, wrt: str, batched: bool, named: list) -> bool:
    """mode="auto": is the full Jacobian cheap (few lanes in dualjac, few backward passes in torch)?"""
    if wrt == "params":
        n = sum(p.numel() for _, p in named)
    else:
        n = sum(inputs[i][0].numel() if batched else inputs[i].numel() for i in diff)
    if n > FULL_MAX:
        return False
    with torch.no_grad():
        outs = flatten(module(*inputs))[0]
    return sum(o[0].numel() if batched else o.numel() for o in outs if isinstance(o, torch.Tensor)) <= FULL_MAX


# --- full mode ------------------------------------------------------------------------------
def _torch_jacobian(torch: Any, module: Any, inputs: tuple, wrt: str, batched: bool, diff: list[int]):
    """Jacobian blocks from torch.autograd, as lists [output][input-or-param], the outputs, and the
    names of the differentiated inputs (``diff``) or parameters."""
    from torch.autograd.functional import jacobian

    with torch.no_grad():
        outs = flatten(module(*inputs))[0]
    n_out = len(outs)
    if wrt == "params":
        names = [n for n, p in module.named_parameters() if p.requires_grad]
        params = dict(module.named_parameters())
        buffers = dict(module.named_buffers())

        def f(*ps):
            out = torch.func.functional_call(module, {**buffers, **dict(zip(names, ps))}, inputs)
            return tuple(flatten(out)[0])

        J = jacobian(f, tuple(params[n].detach() for n in names))
        return [list(Jo) for Jo in J], outs, names
    names_in = _input_names(diff, len(inputs))
    if batched:
        # rows are independent, so the sum over the batch leaves each row's own Jacobian
        summed = lambda x: tuple(o.sum(0) for o in flatten(module(x))[0])
        J = jacobian(summed, inputs[0])  # per output: (*out_item, B, *in_item)
        return [[Jo.movedim(o.dim() - 1, 0)] for Jo, o in zip(J, outs)], outs, names_in

    def f(*floats):  # the non-floating inputs (indices, masks) stay fixed
        args = list(inputs)
        for i, v in zip(diff, floats):
            args[i] = v
        return tuple(flatten(module(*args))[0])

    J = jacobian(f, tuple(inputs[i] for i in diff))
    assert n_out == len(J)
    return [list(Jo) for Jo in J], outs, names_in


def _dualjac_jacobian(graph, xs, params, wrt, batched, diff, names_in, chunk_size):
    """dualjac's blocks [output][input-or-param] and its output values."""
    both = lambda out: (tuple(flatten(out)[0]), tuple(flatten(out)[0]))  # value as aux: one pass
    if wrt == "params":
        jac, outs = transforms.jacfwd(lambda p: both(graph(*xs, params=p)), has_aux=True, chunk_size=chunk_size)(
            params
        )
        return [[J[n] for n in names_in] for J in jac], outs
    if batched:
        per_sample = lambda x: tuple(flatten(graph(x, params=params))[0])
        jac = transforms.batch_jacobian(per_sample, xs[0], chunk_size=chunk_size)
        return [[J] for J in jac], tuple(flatten(graph(*xs, params=params))[0])
    f = lambda *a: both(graph(*a, params=params))
    jac, outs = transforms.jacfwd(f, argnums=tuple(diff), has_aux=True, chunk_size=chunk_size)(*xs)
    return [list(J) for J in jac], outs


# --- projection mode ------------------------------------------------------------------------
def _torch_projected(torch, module, inputs, wrt, diff, named, k, rng):
    """torch's outputs, the cotangents U (per output, (k, *shape), float64 holding values exact in the
    model's dtype) and ``Uᵀ J`` per output, per block, per parameter or input: [out][block][leaf] (k, *shape)."""
    args = list(inputs)
    if wrt == "params":
        leaves, blocks = [p for _, p in named], [list(range(len(named)))]
    else:
        leaves = [inputs[i].detach().clone().requires_grad_(True) for i in diff]
        for i, t in zip(diff, leaves):
            args[i] = t
        blocks = [[b] for b in range(len(diff))]
    with torch.enable_grad():
        outs = flatten(module(*args))[0]
    us, grads = [], []
    for o in outs:
        u = torch.from_numpy(rng.standard_normal((k,) + tuple(o.shape))).to(o.dtype)
        g = [[np.zeros((k,) + tuple(leaves[j].shape)) for j in b] for b in blocks]
        if o.requires_grad:
            for r in range(k):
                got = torch.autograd.grad(o, leaves, u[r].to(o.device), retain_graph=True, allow_unused=True)
                for gb, b in zip(g, blocks):
                    for gl, j in zip(gb, b):
                        if got[j] is not None:
                            gl[r] = _numpy64(got[j])
        us.append(_numpy64(u))
        grads.append(g)
    return [o.detach() for o in outs], us, grads


def _dualjac_projected(graph, xs, params, wrt, diff, names, vs):
    """dualjac's outputs and ``J V`` per output, per block ((k, *out.shape)), in one forward pass.

    ``J V`` is the Jacobian of ``c -> f(x + sum_k c_k V_k)`` at ``c = 0``: k lanes per block,
    exact forward mode, through the public ``jacfwd`` (x + 0 is x exactly).
    """
    k = vs[0][0].shape[0]
    shift = lambda a, c, v: a + np.tensordot(c, v, axes=1)

    def f(c):
        if wrt == "params":
            p = {**params, **{n: shift(params[n], c[:k], v) for n, v in zip(names, vs[0])}}
            out = graph(*xs, params=p)
        else:
            args = list(xs)
            for b, (i, (v,)) in enumerate(zip(diff, vs)):
                args[i] = shift(xs[i], c[b * k : (b + 1) * k], v)
            out = graph(*args, params=params)
        leaves = tuple(flatten(out)[0])
        return leaves, leaves

    jac, outs = transforms.jacfwd(f, has_aux=True)(np.zeros(k * len(vs)))
    # (*out.shape, blocks * k) -> per block (k, *out.shape)
    jvs = [[np.moveaxis(np.asarray(J)[..., b * k : (b + 1) * k], -1, 0) for b in range(len(vs))] for J in jac]
    return outs, jvs


def _projections(u, jv, grads, vs, batched):
    """``Uᵀ(J V)`` (dualjac) and ``(Uᵀ J) V`` (torch), (k_u, k_v[, B]), and each one's scale
    ``max(||U_iᵀ J||, ||J V_j||)``, the typical size of a projection with unit-variance U, V."""
    lead = 1 if batched else 0  # batched: one projection per sample (rows are independent)

    def dot(a, b):  # a (k_a, *S), b (k_b, *S) -> (k_a, k_b[, B]), summing over S (after B)
        a2 = a.reshape(a.shape[: 1 + lead] + (-1,))
        b2 = b.reshape(b.shape[: 1 + lead] + (-1,))
        return np.einsum("i...n,j...n->ij...", a2, b2)

    def norms(arrays):  # (k[, B]) over all leaves
        return np.sqrt(sum((a.reshape(a.shape[: 1 + lead] + (-1,)) ** 2).sum(-1) for a in arrays))

    s_d = dot(u, jv)
    s_t = sum(dot(g, v) for g, v in zip(grads, vs))
    g_norm, jv_norm = norms(grads), norms([jv])
    scale = np.maximum(g_norm[:, None], jv_norm[None, :])
    return s_t, s_d, scale


# --- comparing --------------------------------------------------------------------------------
def _compare(output, wrt, t, d, scale, rtol, atol) -> PairReport:
    """Compare torch's values ``t`` with dualjac's ``d``: full mode (``scale`` None: the block's
    largest entry, and each entry is resolved against itself) or projections (each against its
    ``scale``)."""
    if t.shape != d.shape:
        raise AssertionError(f"block d{output}/d{wrt}: torch {t.shape} vs dualjac {d.shape}")
    finite = bool(np.isfinite(t).all() and np.isfinite(d).all())
    err = np.abs(t - d)
    if scale is None:
        top = float(max(np.abs(d).max(initial=0.0), np.abs(t).max(initial=0.0))) if finite else np.inf
        tol = atol * top + rtol * np.abs(d)
        magnitude = np.abs(d)
    else:
        top = float(scale.max(initial=0.0))
        tol = atol * scale + rtol * np.abs(d)
        magnitude = scale
    resolved = RESOLVE * magnitude > tol
    ok = finite and bool(np.all(err <= tol))
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(resolved, err / magnitude, 0.0)
        ratio = np.where(tol > 0, err / tol, np.where(err > 0, np.inf, 0.0))
    if not ok:
        status = "mismatch"
    elif top == 0:
        status = "zero"
    elif not resolved.any():
        status = "no power"
    else:
        status = "ok"
    return PairReport(
        output, wrt, tuple(d.shape), float(err.max(initial=0.0)), float(rel.max(initial=0.0)), ok,
        top, float(resolved.mean()) if resolved.size else 0.0, float(ratio.max(initial=0.0)), status,
    )  # fmt: skip


def _value_error(t_outs, d_outs, rtol, atol) -> tuple[float, bool]:
    """The forward values: the largest |torch - dualjac| relative to the output's largest value."""
    worst, ok = 0.0, True
    if len(t_outs) != len(d_outs):  # an output lost (or made up) by the lowering
        return np.inf, False
    for t, d in zip(t_outs, d_outs):
        if not hasattr(t, "is_floating_point") or not t.is_floating_point():
            continue
        t, d = _numpy64(t), np.asarray(d, dtype=np.float64)
        if t.shape != d.shape:
            return np.inf, False
        top = max(np.abs(d).max(initial=0.0), np.abs(t).max(initial=0.0))
        err = np.abs(t - d)
        ok &= bool(np.all(err <= atol * top + rtol * np.abs(d))) and bool(np.isfinite(err).all())
        worst = max(worst, float(err.max(initial=0.0) / top) if top > 0 else float(err.max(initial=0.0)))
    return worst, ok


def _verdict(rows: list[PairReport], value_ok: bool, value_error: float) -> tuple[str, str]:
    bad = [f"d{r.output}/d{r.wrt}" for r in rows if r.status == "mismatch"]
    if not value_ok:
        return "mismatch", (
            f"forward values differ (max error {value_error:.3g} of the output's scale): dualjac's lowering "
            "does not compute what torch computes (a dualjac bug, a model that is not deterministic, or a plain "
            "Python attribute changed since the model was first lowered: lowerings are cached per module)"
        )
    if bad:
        return "mismatch", f"Jacobians disagree in {', '.join(bad)}"
    weak = [f"d{r.output}/d{r.wrt}" for r in rows if r.status == "no power"]
    if weak:
        return "no power", (
            f"no power: a 1% error in {', '.join(weak)} would pass at these tolerances; tighten rtol/atol "
            "or cast the model to float64"
        )
    if all(r.status == "zero" for r in rows):
        return "no power", (
            "no power: every Jacobian block is exactly zero, so nothing was compared; choose inputs at which "
            "the outputs depend on what is differentiated"
        )
    return "ok", ""


def _notes(dname: str, wrt: str, diff: list, inputs: tuple, mode: str) -> list[str]:
    notes = []
    if dname != "float64":
        notes.append(
            f"torch ran the model in {dname}, dualjac in float64: the errors include {dname}'s rounding, "
            f"and the default tolerances are {dname}'s; cast the model and inputs to float64 for a tight check"
        )
    if wrt == "inputs" and len(diff) < len(inputs):
        skipped = ", ".join(_input_names([i for i in range(len(inputs)) if i not in diff], len(inputs)))
        notes.append(f"not differentiated (not floating point): {skipped}")
    return notes


# --- locating the culprit ---------------------------------------------------------------------
@dataclass
class _Call:
    path: str
    module: Any
    args: list  # detached copies of the positional arguments, then of the tensor keyword arguments
    floats: list  # positions (in args) of the differentiated (floating, grad-carrying) arguments
    called_at: str
    keywords: tuple = ()  # the names of the keyword arguments at the end of args
    constants: dict = field(default_factory=dict)  # keyword arguments that are not tensors (None, flags)
    wrap: bool = False  # lowered through a wrapper taking every tensor positionally, returning only tensors
    grads_in: dict = field(default_factory=dict)
    grad_out: list = field(default_factory=list)
    outs: list = field(default_factory=list)


def _locate(torch, module, inputs, rtol, atol, seed, graph) -> tuple[Culprit | None, list[str]]:
    """Run the model once with hooks on every submodule, one backward pass with a random
    cotangent, then descend from the top module into the first child whose local backward
    disagrees with dualjac; the innermost one is the culprit."""
    calls: list[_Call] = []
    handles = []
    torch_dir = os.path.dirname(os.path.abspath(torch.__file__)) + os.sep

    def pre(path):
        def hook(m, args, kwargs):
            keywords = tuple(k for k, v in kwargs.items() if isinstance(v, torch.Tensor))
            flat = [*args, *(kwargs[k] for k in keywords)]
            # copies as they were before the call: a module may update a cache object it is given
            copies = [a.detach().clone() if isinstance(a, torch.Tensor) else _snapshot(a) for a in flat]
            constants = {k: _snapshot(v) for k, v in kwargs.items() if k not in keywords}
            call = _Call(path, m, copies, [], _caller(torch_dir), keywords, constants, bool(kwargs))
            for i, a in enumerate(flat):
                if isinstance(a, torch.Tensor) and a.is_floating_point() and a.requires_grad:
                    # a copy of this call's own: its gradient is what this module sends back, not the sum
                    # over every consumer of the tensor (residual connections); a copy, not a view, so the
                    # hook still sees the gradient w.r.t. the input when the module works in place
                    flat[i] = a.clone()
                    flat[i].register_hook(lambda g, i=i: call.grads_in.__setitem__(i, g.detach().clone()))
                    call.floats.append(i)
            calls.append(call)
            n = len(args)
            return tuple(flat[:n]), {**kwargs, **dict(zip(keywords, flat[n:]))}

        return hook

    def post(m, args, out):
        call = next(c for c in reversed(calls) if c.module is m)
        leaves = flatten(out)[0]
        tensors = [o for o in leaves if isinstance(o, torch.Tensor)]
        call.wrap = call.wrap or len(tensors) < len(leaves)  # a cache object or a flag among the outputs
        call.outs = [o.detach().clone() for o in tensors]
        call.grad_out = [None] * len(tensors)
        for j, o in enumerate(tensors):
            if o.requires_grad:
                o.register_hook(lambda g, j=j: call.grad_out.__setitem__(j, g.detach().clone()))

    for path, m in module.named_modules():
        handles.append(m.register_forward_pre_hook(pre(path), with_kwargs=True))
        handles.append(m.register_forward_hook(post))
    rng = np.random.default_rng(seed + 1)
    params = [p for p in module.parameters() if p.requires_grad]
    try:
        with torch.enable_grad():
            args = [x.detach().clone().requires_grad_(True) if _is_float(torch, x) else x for x in inputs]
            outs = [o for o in flatten(module(*args))[0] if isinstance(o, torch.Tensor) and o.requires_grad]
            us = [torch.from_numpy(rng.standard_normal(tuple(o.shape))).to(o.device, o.dtype) for o in outs]
            leaves = [a for a in args if _is_float(torch, a)] + params
            # autograd.grad, not backward: the hooks fire, and the model's .grad fields stay untouched
            got = torch.autograd.grad(outs, leaves, us, allow_unused=True)
    finally:
        for h in handles:
            h.remove()
    param_grads = {id(p): g for p, g in zip(params, got[len(leaves) - len(params) :])}
    called = {c.path for c in calls}
    times_called = {}
    for c in calls:
        times_called[id(c.module)] = times_called.get(id(c.module), 0) + 1

    notes: list[str] = []
    failing, error, unchecked = next((c for c in calls if c.path == ""), None), np.inf, []
    while True:
        child, unchecked = None, []
        for c in calls:
            if not _is_child(c.path, failing.path, called):
                continue
            # a module's parameter gradients are its own only when it is called once
            own = param_grads if times_called[id(c.module)] == 1 else {}
            bad, e, note = _local_check(c, own, rtol, atol, rng)
            if note:
                unchecked.append(c.path)
                notes.append(note)
            elif bad:
                child, error = c, e
                break
        if child is None:
            break
        failing = child
    m = failing.module
    own_nodes = [n for n in graph.nodes if isinstance(n.op, str) and n.meta.get("module") == failing.path]
    first = next((n for n in own_nodes if n.meta.get("source")), own_nodes[0] if own_nodes else None)
    node = f"%{first.name} ({first.meta.get('target', first.op)})" if first else ""
    source = first.meta.get("source", "") if first else ""
    found = Culprit(failing.path, type(m).__name__, _defined_at(type(m)), failing.called_at, float(error), node, source,
                    unchecked)  # fmt: skip
    return found, notes


def _local_check(call: _Call, param_grads: dict, rtol, atol, rng) -> tuple[bool, float, str]:
    """Does this module call's backward agree with dualjac on the module alone? For random V,
    ``g_outᵀ (J_M V)`` (dualjac) against ``g_inᵀ V`` (torch's gradients w.r.t. the call's inputs),
    and the same for its parameters when ``param_grads`` has them. Returns (bad, error / scale, note);
    a note says the module could not be checked on its own."""
    k = 2
    named = [(n, p) for n, p in call.module.named_parameters() if id(p) in param_grads]
    if not call.floats and not named:
        return False, 0.0, ""
    try:
        tensors = [i for i, a in enumerate(call.args) if hasattr(a, "is_floating_point")]  # the graph's inputs
        prefix, module = "", call.module
        if call.wrap or len(tensors) < len(call.args):
            # lower a wrapper that takes only the tensors, positionally, and returns only tensors
            prefix, module = "m.", _Positional(call, tensors)
        args = tuple(call.args[i] for i in tensors)
        graph = _lower(module, args)[0]
        xs = tuple(_to_numpy(a) for a in args)
        relations = []  # (dualjac's J V per output, torch's gradients, V), per kind of argument
        if call.floats:
            vs = [[rng.standard_normal((k,) + tuple(call.args[i].shape))] for i in call.floats]
            diff = [tensors.index(i) for i in call.floats]
            d_outs, jvs = _dualjac_projected(graph, xs, graph.params, "inputs", diff, [], vs)
            grads = [call.grads_in.get(i) for i in call.floats]
            relations.append(([sum(jv) for jv in jvs], grads, [v[0] for v in vs]))
        names = [prefix + n for n, _ in named if prefix + n in graph.params]
        if names:
            vs = [[rng.standard_normal((k,) + np.shape(graph.params[n])) for n in names]]
            d_outs, jvs = _dualjac_projected(graph, xs, graph.params, "params", [], names, vs)
            grads = [param_grads[id(p)] for n, p in named if prefix + n in graph.params]
            relations.append(([jv[0] for jv in jvs], grads, vs[0]))
    except Exception as e:  # a submodule that cannot be lowered (or called) on its own
        reason = str(e).splitlines()[0] if str(e) else ""
        return False, 0.0, f"module '{call.path}' could not be checked on its own ({type(e).__name__}: {reason})"
    if not _value_error(call.outs, d_outs, rtol, atol)[1]:  # state, a cache object, randomness: not reproducible
        return False, 0.0, f"module '{call.path}' computes other values on its own than in the model"
    bad, worst = False, 0.0
    for jvs, grads, vs in relations:
        s_t = sum(
            ((_numpy64(g).reshape(1, -1) * v.reshape(k, -1)).sum(-1) for g, v in zip(grads, vs) if g is not None),
            np.zeros(k),
        )
        s_d = sum(
            ((_numpy64(g).reshape(1, -1) * jv.reshape(k, -1)).sum(-1) for g, jv in zip(call.grad_out, jvs)
             if g is not None),
            np.zeros(k),
        )  # fmt: skip
        g_norm = np.sqrt(sum(float((_numpy64(g) ** 2).sum()) for g in grads if g is not None))
        scale = np.maximum(np.maximum(g_norm, np.abs(s_d)), np.abs(s_t))
        err = np.abs(s_t - s_d)
        bad |= bool(np.any(err > atol * scale + rtol * np.abs(s_d)))
        worst = max(worst, float((err / np.where(scale > 0, scale, 1)).max()))
    return bad, worst, ""


def _positional_class(torch: Any) -> type:
    class Positional(torch.nn.Module):
        """A module call as ``forward(*tensors)`` returning a tuple of tensors, which is what ``lower``
        takes: the call's other arguments (keyword arguments, a cache object, flags) are held fixed."""

        def __init__(self, call: _Call, tensors: list) -> None:
            super().__init__()
            self.m, self.call, self.tensors = call.module, call, tensors

        def forward(self, *tensors: Any) -> Any:
            full = [_snapshot(a) for a in self.call.args]  # each run starts from the state before the call
            for i, t in zip(self.tensors, tensors):
                full[i] = t
            n = len(full) - len(self.call.keywords)
            constants = {k: _snapshot(v) for k, v in self.call.constants.items()}
            out = self.m(*full[:n], **dict(zip(self.call.keywords, full[n:])), **constants)
            return tuple(o for o in flatten(out)[0] if isinstance(o, torch.Tensor))

    return Positional


def _Positional(call: _Call, tensors: list) -> Any:  # noqa: N802 (a class, made once torch is imported)
    import torch

    return _positional_class(torch)(call, tensors)


def _snapshot(value: Any) -> Any:
    """A deep copy of a non-tensor argument (a cache object the call may update), or itself."""
    if value is None or isinstance(value, bool | int | float | str) or hasattr(value, "is_floating_point"):
        return value
    try:
        return copy.deepcopy(value)
    except Exception:  # not copyable: use it as it is
        return value


def _is_child(path: str, parent: str, called: set) -> bool:
    """Is ``path`` called directly by ``parent``'s code (no other *called* module between them;
    containers such as ModuleList are never called)?"""
    if path == parent or not (parent == "" or path.startswith(parent + ".")):
        return False
    parts = path.split(".")
    first = len(parent.split(".")) + 1 if parent else 1
    return not any(".".join(parts[:i]) in called for i in range(first, len(parts)))


def _caller(torch_dir: str) -> str:
    """The user's line that called the module (the innermost frame outside torch and dualjac)."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for frame in reversed(traceback.extract_stack()[:-2]):
        f = os.path.abspath(frame.filename)
        if f.startswith(here):  # called by torch's own container code (nn.Sequential): no user line
            return ""
        if not f.startswith(torch_dir):
            return f"{frame.filename}:{frame.lineno} ({frame.line})"
    return ""


def _defined_at(cls: type) -> str:
    try:
        fn = cls.forward
        return f"{inspect.getsourcefile(fn)}:{inspect.getsourcelines(fn)[1]} ({cls.__qualname__}.forward)"
    except (TypeError, OSError):
        return ""


# --- small helpers ----------------------------------------------------------------------------
def _output_names(n_out: int) -> list[str]:
    return [f"out[{i}]" for i in range(n_out)] if n_out > 1 else ["out"]


def _input_names(indices: list[int], n_inputs: int) -> list[str]:
    return [f"x{i}" if n_inputs > 1 else "x" for i in indices]


def _is_float(torch: Any, x: Any) -> bool:
    return isinstance(x, torch.Tensor) and x.is_floating_point()


def _numpy64(t: Any) -> np.ndarray:
    return t.detach().cpu().double().numpy()


def _to_numpy(x: Any) -> Any:
    import torch

    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu")
        return x.to(torch.float64).numpy() if x.is_floating_point() else x.numpy()
    return x

