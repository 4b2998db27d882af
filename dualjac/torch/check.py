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
  ``(Uᵀ J) V``. dualjac runs first, and each output element's cotangent is weighted by the inverse
  of its row's size ``||J_o||`` (from ``J V``), so every row weighs alike: a wrong backward changes
  ``Uᵀ J`` in some direction, and random ``V`` sees it with probability 1, at any output scale
  above torch's rounding of the largest (float64: beside outputs 1e12 times larger; float32: down to
  about 1e-4 of the largest). The default when inputs are wide.

Tolerances are relative, never absolute: a value passes when
``|torch - dualjac| <= atol * scale + rtol * |dualjac|`` plus torch's rounding, ``NOISE`` eps of the
model's dtype (at most ``atol``) times the block's largest entry (intermediates may be that large).
In full mode the scale is the largest entry of the value's own *row* (its output element), so a
small output is checked as tightly as a large one beside it; in projection mode it is the typical
size of a projection, ``max(||U_iᵀ J||, ||J V_j||)`` (unit-variance U and V, U weighted as above;
rows too small to rise above the rounding allowance weigh less). So a model whose Jacobian is 1e-11
everywhere is checked as tightly as one whose Jacobian is 1.

A comparison has *power* where it would catch a 1% error: in full mode a value is *resolved* when
``0.01 * |entry| > tolerance``; in projection mode an output element is resolved when a 1% error in
its row alone would fail a typical projection (a projection sums every row's allowance, so loose
tolerances and many outputs can resolve none), and the block has power when a 1% error in every row
would fail. Each row reports the fraction it resolved, and ``check`` never says OK for a block with
nonzero derivatives without power, nor for a check whose
blocks are all exactly zero: it reports ``status == "no power"`` and ``ok == False``.

The forward values are compared too (equal values, equal infinities and NaNs in the same places
agree). A value may also differ by the model dtype's rounding of its inputs, or of intermediates of
their size, carried through the Jacobian (``NOISE * eps * sum_i |J_oi| |x_i|``: LayerNorm of
``1 + 1e-3 * randn`` in float32 loses 3 digits); the report then says so in a note instead of
blaming the lowering.

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

This module holds ``check`` and its defaults. The report and the comparisons are in
``check_report``, the two engines' Jacobians in ``check_engines``, the culprit search in
``check_locate``.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..tree import flatten
from .check_engines import (
    dualjac_jacobian,
    dualjac_projected,
    input_names,
    lower_float64,
    output_names,
    to_numpy,
    torch_jacobian,
    torch_projected,
)
from .check_locate import locate_culprit
from .check_report import (
    NOISE,
    RESOLVE,
    ZERO_WEIGHT,
    CheckReport,
    PairReport,
    compare_block,
    compare_values,
    numpy64,
    projections,
    row_sizes,
    verdict,
)

# the names the API reference documents here (docs/reference/torch.md); the rest is internal
__all__ = ["DEFAULT_TOLERANCES", "CheckReport", "PairReport", "check"]


# Default (rtol, atol) by the model's dtype; atol is relative to the block's scale.
# float64 leaves room for different summation orders; lower precisions for their rounding.
# float16/bfloat16 rounding hides a 1% error, so their checks have no power: cast the model.
DEFAULT_TOLERANCES = {
    "float64": (1e-7, 1e-10),
    "float32": (1e-3, 1e-5),
    "float16": (2e-2, 1e-3),
    "bfloat16": (5e-2, 1e-2),
}
FULL_MAX = 64  # mode="auto": full Jacobians when inputs and outputs have at most this many elements


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
    labels = [n for n, _ in named] if wrt == "params" else input_names(diff, len(inputs))
    sizes = [p.numel() for _, p in named] if wrt == "params" else [inputs[i].numel() for i in diff]
    if 0 in sizes:  # no Jacobian entry to compare: never an OK (and torch's jacobian fails on it)
        raise ValueError(f"{labels[sizes.index(0)]} has zero elements: there is nothing to check")
    dtype = named[0][1].dtype if named else (inputs[diff[0]].dtype if diff else torch.float32)
    dname = str(dtype).replace("torch.", "")
    for name, value in (("rtol", rtol), ("atol", atol)):
        if value is not None and not 0 <= value < 1:
            raise ValueError(f"{name} must lie in [0, 1) (it is relative), got {value}")

    # unsupported ops and training-mode BatchNorm/Dropout fail here, before torch runs the model
    graph, program, time_lower, cached = lower_float64(module, inputs)
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
    # torch's rounding allowance (check_report.NOISE): no looser than the atol asked for (float64 tolerances
    # on a model that rounds to float32 inside must still fail)
    eps = min(float(torch.finfo(inner).eps), atol)
    rows, t_outs, d_outs, conds, time_torch, time_dualjac = compare(
        torch, module, graph, inputs, wrt, batched, diff, named, rtol, atol, chunk_size, directions, seed, eps
    )
    value_error, value_ok, rounded = compare_values(t_outs, d_outs, rtol, atol, eps, conds)
    status, reason = verdict(rows, value_ok, value_error)
    notes = _notes(dname, wrt, diff, inputs, mode)
    if rounded:
        notes.append(
            f"forward values differ by up to {value_error:.3g} of the output's scale: {precision}'s rounding, "
            "amplified by the Jacobian (rounding errors of the size of the inputs, or of intermediates as large), "
            "not the lowering; cast the model to float64 for a tight comparison"
        )
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
            report.culprit, located_notes = locate_culprit(torch, module, inputs, rtol, atol, seed, graph)
            report.time_locate = time.perf_counter() - t0
            report.notes += located_notes
    return report


def _full(torch, module, graph, inputs, wrt, batched, diff, named, rtol, atol, chunk_size, directions, seed, eps):
    """Every entry of every block: torch.autograd.functional.jacobian against dualjac's jacfwd."""
    t0 = time.perf_counter()
    t_blocks, t_outs, names_in = torch_jacobian(torch, module, inputs, wrt, batched, diff)
    time_torch = time.perf_counter() - t0
    t0 = time.perf_counter()
    xs = tuple(to_numpy(x) for x in inputs)
    d_blocks, d_outs = dualjac_jacobian(graph, xs, graph.params, wrt, batched, diff, names_in, chunk_size)
    time_dualjac = time.perf_counter() - t0
    names_out = output_names(len(t_outs))
    args = [graph.params[n] for n in names_in] if wrt == "params" else [xs[i] for i in diff]
    rows, conds = [], []
    for i, (t_row, d_row) in enumerate(zip(t_blocks, d_blocks)):
        # the leading axes of a block are the output's (batched: the batch axis, then the item's)
        dims = t_outs[i].dim()
        cond = 0.0
        for j, (t, d) in enumerate(zip(t_row, d_row)):
            d = np.asarray(d, dtype=np.float64)
            rows.append(compare_block(names_out[i], names_in[j], numpy64(t), d, rtol, atol, eps, dims))
            a = np.abs(np.asarray(args[j], dtype=np.float64))
            a = a.reshape(a.shape[:1] + (1,) * (dims - 1) + a.shape[1:]) if batched else a
            with np.errstate(invalid="ignore"):  # 0 * inf (an inf input where J is zero) counts 0
                cond = cond + np.where(d == 0, 0.0, np.abs(d) * a).reshape(d.shape[:dims] + (-1,)).sum(-1)
        conds.append(np.where(np.isfinite(cond), cond, 0.0))  # an inf input gives no allowance
    return rows, t_outs, d_outs, conds, time_torch, time_dualjac


def _projected(torch, module, graph, inputs, wrt, batched, diff, named, rtol, atol, chunk_size, directions, seed, eps):
    """``directions`` x ``directions`` projections per block: ``(Uᵀ J) V`` from torch, ``Uᵀ (J V)`` from dualjac.

    dualjac runs first: its ``J V`` gives each output element's row size ``||J_o||``, and torch's cotangents
    are weighted by its inverse, so every row weighs alike in ``Uᵀ J`` and a wrong backward of a small output
    is not lost beside a large one (down to rows where torch's rounding is 1% of the row)."""
    rng = np.random.default_rng(seed)
    names_in = [f"params ({len(named)} tensors)"] if wrt == "params" else input_names(diff, len(inputs))
    t0 = time.perf_counter()
    xs, params = tuple(to_numpy(x) for x in inputs), graph.params
    blocks = [[params[n] for n, _ in named]] if wrt == "params" else [[xs[i]] for i in diff]
    vs = [[rng.standard_normal((directions,) + np.shape(a)) for a in b] for b in blocks]
    d_outs, jvs = dualjac_projected(graph, xs, params, wrt, diff, [n for n, _ in named], vs)
    time_dualjac = time.perf_counter() - t0
    sizes = [np.max([row_sizes(jv) for jv in per_block], 0) for per_block in jvs]  # ||J_o||, per output
    # rows below f (where torch's rounding allowance, NOISE eps of the largest, is 1% of the row) weigh less,
    # down to ZERO_WEIGHT, so that many rounding-sized rows cannot drown the others' power in their allowance;
    # an all-zero output: weight 1 everywhere
    floors = [NOISE * eps * float(s.max(initial=0.0)) / RESOLVE for s in sizes]
    weights = [
        np.where(s >= f, f / np.maximum(s, f), np.maximum(s / f, ZERO_WEIGHT)) if f > 0 else np.ones_like(s)
        for s, f in zip(sizes, floors)
    ]
    t0 = time.perf_counter()
    t_outs, us, t_grads = torch_projected(torch, module, inputs, wrt, diff, named, directions, rng, weights)
    time_torch = time.perf_counter() - t0
    names_out = output_names(len(t_outs))
    norms = [np.sqrt(sum(float((a**2).sum()) for a in b)) for b in blocks]  # rounding x moves out_o by ||J_o|| ||x||
    rows, conds = [], []
    for i, (u, jv, grads, w) in enumerate(zip(us, jvs, t_grads, weights)):
        for b, (v, g) in enumerate(zip(vs, grads)):
            s_t, s_d, projected = projections(u, jv[b], g, v, batched, w, eps)
            rows.append(compare_block(names_out[i], names_in[b], s_t, s_d, rtol, atol, projected=projected))
        with np.errstate(invalid="ignore"):
            cond = sum(
                np.where(r == 0, 0.0, r * n) for r, n in ((row_sizes(j), n) for j, n in zip(jv, norms))
            )
        conds.append(np.where(np.isfinite(cond), cond, 0.0))  # an inf input gives no allowance
    return rows, t_outs, d_outs, conds, time_torch, time_dualjac


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


def _notes(dname: str, wrt: str, diff: list, inputs: tuple, mode: str) -> list[str]:
    notes = []
    if dname != "float64":
        notes.append(
            f"torch ran the model in {dname}, dualjac in float64: the errors include {dname}'s rounding, "
            f"and the default tolerances are {dname}'s; cast the model and inputs to float64 for a tight check"
        )
    if wrt == "inputs" and len(diff) < len(inputs):
        skipped = ", ".join(input_names([i for i in range(len(inputs)) if i not in diff], len(inputs)))
        notes.append(f"not differentiated (not floating point): {skipped}")
    return notes
