"""The culprit search of ``dualjac.torch.check``: after a mismatch, which module's backward is wrong.

It runs the model eagerly with hooks that record each submodule call (inputs, output, the gradients
torch sends through it), then checks each call's local backward, ``g_outᵀ J_M V`` (dualjac, on the
module alone) against ``g_inᵀ V`` (torch), descending into the first failing child. Separate
because it is a second procedure with its own machinery (hooks, snapshots of call arguments, a
positional wrapper for modules with keyword or cache arguments), run only on a mismatch.
"""

from __future__ import annotations

import copy
import inspect
import os
import traceback
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..tree import flatten
from .check_engines import dualjac_projected, lower_float64, to_numpy
from .check_report import Culprit, compare_values, numpy64


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


def locate_culprit(
    torch: Any, module: Any, inputs: tuple, rtol: float, atol: float, seed: int, graph: Any
) -> tuple[Culprit | None, list[str]]:
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
                    flat[i].register_hook(lambda g, i=i: call.grads_in.__setitem__(i, _copy(g)))
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
                o.register_hook(lambda g, j=j: call.grad_out.__setitem__(j, _copy(g)))

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
        graph = lower_float64(module, args)[0]
        xs = tuple(to_numpy(a) for a in args)
        relations = []  # (dualjac's J V per output, torch's gradients, V), per kind of argument
        if call.floats:
            vs = [[rng.standard_normal((k,) + tuple(call.args[i].shape))] for i in call.floats]
            diff = [tensors.index(i) for i in call.floats]
            d_outs, jvs = dualjac_projected(graph, xs, graph.params, "inputs", diff, [], vs)
            grads = [call.grads_in.get(i) for i in call.floats]
            relations.append(([sum(jv) for jv in jvs], grads, [v[0] for v in vs]))
        names = [prefix + n for n, _ in named if prefix + n in graph.params]
        if names:
            vs = [[rng.standard_normal((k,) + np.shape(graph.params[n])) for n in names]]
            d_outs, jvs = dualjac_projected(graph, xs, graph.params, "params", [], names, vs)
            grads = [param_grads[id(p)] for n, p in named if prefix + n in graph.params]
            relations.append(([jv[0] for jv in jvs], grads, vs[0]))
    except Exception as e:  # a submodule that cannot be lowered (or called) on its own
        reason = str(e).splitlines()[0] if str(e) else ""
        return False, 0.0, f"module '{call.path}' could not be checked on its own ({type(e).__name__}: {reason})"
    if not compare_values(call.outs, d_outs, rtol, atol)[1]:  # state, a cache object, randomness: not reproducible
        return False, 0.0, f"module '{call.path}' computes other values on its own than in the model"
    bad, worst = False, 0.0
    for jvs, grads, vs in relations:
        s_t = sum(
            ((numpy64(g).reshape(1, -1) * v.reshape(k, -1)).sum(-1) for g, v in zip(grads, vs) if g is not None),
            np.zeros(k),
        )
        s_d = sum(
            ((numpy64(g).reshape(1, -1) * jv.reshape(k, -1)).sum(-1) for g, jv in zip(call.grad_out, jvs)
             if g is not None),
            np.zeros(k),
        )  # fmt: skip
        g_norm = np.sqrt(sum(float((numpy64(g) ** 2).sum()) for g in grads if g is not None))
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


def _copy(g: Any) -> Any:
    """A hook's gradient, kept: None where a custom backward returned None for that input (torch then
    takes the derivative as zero; the local check counts it as zero, so a missing gradient is a finding)."""
    return None if g is None else g.detach().clone()


def _is_float(torch: Any, x: Any) -> bool:
    return isinstance(x, torch.Tensor) and x.is_floating_point()
