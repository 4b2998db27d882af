"""The two sides of ``dualjac.torch.check``: the module's Jacobian (or its projections ``Uᵀ J`` and
``J V``) from torch.autograd, and from dualjac's float64 lowering of the same module.

Full mode: ``torch_jacobian`` and ``dualjac_jacobian`` give every block; projection mode:
``torch_projected`` (K backward passes) and ``dualjac_projected`` (one forward pass of K lanes).
``lower_float64`` lowers a module through ``dualjac.torch.lower``. Separate from the report
(``check_report``) and from the culprit search (``check_locate``), which reuses
``dualjac_projected`` on single submodules.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..batch import batch_jacobian
from ..transforms import jacfwd
from ..tree import flatten
from .check_report import numpy64


def lower_float64(module: Any, inputs: tuple) -> tuple[Any, float, bool]:
    """The float64 Graph from ``dualjac.torch.lower`` (cached per module and input shapes; parameters and
    buffers read from the module at every call), the seconds the call took, and whether it was a cache hit
    (it then costs reading the state, not an export)."""
    from .export import lower

    t0 = time.perf_counter()
    low = lower(module, *inputs, dtype=np.float64)
    took = time.perf_counter() - t0
    return low.graph, low.program, took, took < 0.5 * (low.export_time + low.lowering_time)


def torch_jacobian(
    torch: Any, module: Any, inputs: tuple, wrt: str, batched: bool, diff: list[int]
) -> tuple[list[list[Any]], list[Any], list[str]]:
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
    names_in = input_names(diff, len(inputs))
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


def dualjac_jacobian(
    graph: Any,
    xs: tuple,
    params: dict,
    wrt: str,
    batched: bool,
    diff: list[int],
    names_in: list[str],
    chunk_size: int | None,
) -> tuple[list[list[Any]], tuple]:
    """dualjac's blocks [output][input-or-param] and its output values."""
    both = lambda out: (tuple(flatten(out)[0]), tuple(flatten(out)[0]))  # value as aux: one pass
    if wrt == "params":
        jac, outs = jacfwd(lambda p: both(graph(*xs, params=p)), has_aux=True, chunk_size=chunk_size)(params)
        return [[J[n] for n in names_in] for J in jac], outs
    if batched:
        per_sample = lambda x: tuple(flatten(graph(x, params=params))[0])
        jac = batch_jacobian(per_sample, xs[0], chunk_size=chunk_size)
        return [[J] for J in jac], tuple(flatten(graph(*xs, params=params))[0])
    f = lambda *a: both(graph(*a, params=params))
    jac, outs = jacfwd(f, argnums=tuple(diff), has_aux=True, chunk_size=chunk_size)(*xs)
    return [list(J) for J in jac], outs


def torch_projected(
    torch: Any,
    module: Any,
    inputs: tuple,
    wrt: str,
    diff: list[int],
    named: list,
    k: int,
    rng: np.random.Generator,
    weights: list[np.ndarray],
) -> tuple[list[Any], list[np.ndarray], list[list[list[np.ndarray]]]]:
    """torch's outputs, the cotangents U (per output, (k, *shape): unit-variance entries times that output's
    ``weights``, float64 holding values exact in the model's dtype) and ``Uᵀ J`` per output, per block, per
    parameter or input: [out][block][leaf] (k, *shape)."""
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
    for o, w in zip(outs, weights):
        u = torch.from_numpy(rng.standard_normal((k,) + tuple(o.shape)) * w).to(o.dtype)
        g = [[np.zeros((k,) + tuple(leaves[j].shape)) for j in b] for b in blocks]
        if o.requires_grad:
            for r in range(k):
                got = torch.autograd.grad(o, leaves, u[r].to(o.device), retain_graph=True, allow_unused=True)
                for gb, b in zip(g, blocks):
                    for gl, j in zip(gb, b):
                        if got[j] is not None:
                            gl[r] = numpy64(got[j])
        us.append(numpy64(u))
        grads.append(g)
    return [o.detach() for o in outs], us, grads


def dualjac_projected(
    graph: Any, xs: tuple, params: dict, wrt: str, diff: list[int], names: list[str], vs: list[list[np.ndarray]]
) -> tuple[tuple, list[list[np.ndarray]]]:
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

    jac, outs = jacfwd(f, has_aux=True)(np.zeros(k * len(vs)))
    # (*out.shape, blocks * k) -> per block (k, *out.shape)
    jvs = [[np.moveaxis(np.asarray(J)[..., b * k : (b + 1) * k], -1, 0) for b in range(len(vs))] for J in jac]
    return outs, jvs


def output_names(n_out: int) -> list[str]:
    return [f"out[{i}]" for i in range(n_out)] if n_out > 1 else ["out"]


def input_names(indices: list[int], n_inputs: int) -> list[str]:
    return [f"x{i}" if n_inputs > 1 else "x" for i in indices]


def to_numpy(x: Any) -> Any:
    import torch

    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu")
        return x.to(torch.float64).numpy() if x.is_floating_point() else x.numpy()
    return x
