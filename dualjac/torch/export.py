"""``from_torch`` and ``lower``: a ``torch.nn.Module`` as a dualjac ``Graph``, through ``torch.export``.

``torch.export.export(module, example_inputs)`` runs ``forward`` once on fake tensors and
records every tensor operation; ``.run_decompositions()`` rewrites them into the Core ATen
opset, a closed list of a few hundred ops that every exportable model decomposes to.
``_Lowering`` walks that graph once and, for each ATen node, calls its emitter from
``dualjac.torch.aten.ATEN_OPS``, which appends ``rules.apply`` nodes to a ``Graph``:

* parameters keep their qualified names (``g.params["0.weight"]``), buffers and lifted
  constants are ``g.constants``; both are read from the module each time ``lower`` is called;
* user inputs are graph inputs by ``forward``'s argument names; integer inputs (token ids)
  and boolean masks are inputs too, but only floating ones carry tangents when differentiated;
* the batch axis (axis 0 of every tensor input) is exported as ``torch.export.Dim.AUTO``: the
  same Graph runs any batch size. Shape arithmetic on it (``view(B * T, -1)``) becomes
  *static* graph nodes (Python functions of the input values). A model that fixes its batch
  size (a size-1 example, a shape assert, a loop over ``x.shape[0]``) is exported with static
  shapes, and its Graph says so when called with another shape; export's guards on a dynamic
  size (``B >= 3`` from ``if x.shape[0] > 2``) are checked at every call, and by the cache;
* a Python-number input is a constant of the program: a call must pass the same value;
* buffers and inputs that ``forward`` mutates are not updated: the outputs are torch's;
* every Graph node records where it came from in ``node.meta``: ``"target"`` (the ATen op,
  ``"aten.addmm.default"``), ``"module"`` (the ``nn.Module`` path) and ``"source"`` (the
  ``file:line`` of the model's code that called it). Node names are the fx node names
  (helpers an emitter adds are ``name.1``, ``name.2``, ...).

``torch.autograd.Function`` subclasses are exported through their ``forward`` (their custom
``backward`` is not part of the graph), so dualjac differentiates what the forward computes,
independently of the backward that ``torch.autograd`` uses.

For node-by-node comparisons with torch (``dualjac.torch.check``), ``lower(module, *inputs)``
returns a ``Lowered``: ``.graph``, ``.program`` (the decomposed ``ExportedProgram``, whose
``graph_module`` torch can run), ``.refs`` (fx node name -> the graph ``Ref``, or tuple of
them, holding that node's value; ``Graph.values`` evaluates them all) and the export and
lowering times. It is cached per module, input shapes and dtypes, dtype and backend, and what
export bakes into the program (each submodule's plain Python attributes and tensor attributes that
are neither parameters nor buffers: a changed one means a new export); the parameters and buffers
are read from the module on every ``lower``/``from_torch`` call. A Graph already returned keeps the
values it was given: after changing the weights, call ``from_torch`` again.

>>> import numpy as np, torch, dualjac as dj
>>> from dualjac.torch import from_torch
>>> model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Tanh()).double()
>>> x = torch.ones(4, 3, dtype=torch.float64)
>>> g = from_torch(model, x)
>>> print(g.nodes[0].name)  # a static node: checks the input's shape, (B, 3) for any B
input.shape
>>> for n in g.nodes[1:]:
...     print(n.name, n.op, n.meta["target"], n.meta["module"])
permute transpose aten.permute.default 0
addmm.1 matmul aten.addmm.default 0
addmm add aten.addmm.default 0
tanh tanh aten.tanh.default 1
>>> np.allclose(g(x.numpy()), model(x).detach().numpy())
True
>>> dj.batch_jacobian(g, np.ones((7, 3))).shape  # any batch size
(7, 2, 3)
>>> dj.jacfwd(lambda p: g(x.numpy(), params=p))(g.params)["0.weight"].shape
(4, 2, 2, 3)
"""

from __future__ import annotations

import inspect
import os
import time
import warnings
import weakref
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.fx.experimental.symbolic_shapes import is_concrete_int
from torch.utils import _pytree as pytree

from .. import static
from ..errors import UnsupportedOpError
from ..graph import Graph, Ref
from . import aten
from .aten_builder import Builder, guard_meta, numpy_dtype, to_array, training_error


class ExportFailedError(UnsupportedOpError):
    """``torch.export`` could not export the module; the message carries export's reason and the fix."""

    def __init__(self, what: str, reason: str) -> None:
        self.op, self.reason = f"torch.export of {what}", reason
        TypeError.__init__(  # not a missing rule: UnsupportedOpError's own wording would mislead
            self,
            f"torch.export could not export {what}, so dualjac cannot lower it.\n  export said: {reason}\n"
            "Fixes: data-dependent Python control flow (`if x.sum() > 0`, a loop over a tensor's values) "
            "must become torch.where / torch.cond; a shape that export had to specialise needs "
            "dynamic_shapes (torch.export.Dim) or an example input of the shape you use; code that "
            "strict tracing rejects may export with strict=False (the default here) and the reverse; "
            "an output type export does not know (a transformers cache) needs use_cache=False; "
            "see https://pytorch.org/docs/stable/export.html",
        )


@dataclass
class Lowered:
    """What ``lower`` returns: the Graph, the decomposed ExportedProgram and where each fx value lives."""

    graph: Graph
    program: Any  # torch.export.ExportedProgram, decomposed to Core ATen
    refs: dict  # fx node name -> Ref (or tuple of Refs, or a Python value) holding its value
    export_time: float
    lowering_time: float
    input_shapes: tuple  # per input: its exported shape, None for a dynamic (batch) size; None: not a tensor
    input_ranges: tuple = ()  # per input: per axis None, or (lo, hi) export's guards allow (hi None: unbounded)

    @property
    def dynamic_batch(self) -> bool:
        """Whether the Graph runs any batch size (export kept the batch axis dynamic)."""
        return any(s is not None and None in s for s in self.input_shapes)


def from_torch(
    module: Any, *example_inputs: Any, dtype: Any = None, backend: str = "numpy", strict: bool = False
) -> Graph:
    """Lower ``module`` (an ``nn.Module`` in eval mode, or a function of tensors) to a ``Graph``.

    ``example_inputs``: tensors (or arrays) as ``forward`` takes them; any batch size then
    works. ``dtype``: convert floating parameters, buffers and constants to it (default: keep
    the module's; float32 stays float32). ``backend="cupy"`` puts them on the GPU.
    ``strict`` is ``torch.export.export``'s. See the module docstring, and ``lower``.
    """
    return lower(module, *example_inputs, dtype=dtype, backend=backend, strict=strict).graph


_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # module -> {key: Lowered}


def lower(
    module: Any, *example_inputs: Any, dtype: Any = None, backend: str = "numpy", strict: bool = False
) -> Lowered:
    """``from_torch``'s work, cached: the ``Lowered`` graph and program of ``module`` for these inputs.

    The cache key is the module (its submodules and its parameters' shapes and dtypes), the inputs'
    shapes and dtypes (a dynamic batch axis does not count), ``dtype``, ``backend`` and ``strict``; a
    hit costs the conversion of the parameters. A plain function is exported on every call. The returned
    Graph's ``params`` and ``constants`` are read from the module on every call.
    """
    if backend not in ("numpy", "cupy"):
        raise ValueError(f"backend must be 'numpy' or 'cupy', got {backend!r}")
    if not example_inputs:
        raise TypeError(
            "from_torch needs example inputs, as forward takes them: from_torch(model, x) "
            "(torch.export runs forward once on tensors of their shapes and dtypes)"
        )
    if not isinstance(module, nn.Module):
        module = _FunctionModule(module)
    _require_eval(module)
    inputs = tuple(_as_tensor(x) for x in example_inputs)
    np_dtype = None if dtype is None else np.dtype(numpy_dtype(dtype) if isinstance(dtype, torch.dtype) else dtype)
    per_module = _CACHE.setdefault(module, {}) if not isinstance(module, _FunctionModule) else {}
    key = (_signature(inputs), np_dtype, backend, strict, _structure(module))
    shapes = tuple(tuple(x.shape) if isinstance(x, torch.Tensor) else None for x in inputs)
    hit = next((low for low in per_module.get(key, []) if _fits(low, shapes)), None)
    if hit is None:
        hit = _lower(module, inputs, np_dtype, backend, strict)
        per_module.setdefault(key, []).append(hit)
    params, constants = _state(module, hit.program, np_dtype, backend)
    return replace(hit, graph=replace(hit.graph, params=params, constants=constants))


def _structure(module: nn.Module) -> tuple:
    """What a cached program depends on besides the inputs: the submodules (a replaced layer is a new
    object), the parameters' and buffers' shapes and dtypes (``model.double()`` after a first lowering),
    and what export bakes into the program: each submodule's plain Python attributes (LeakyReLU's
    slope, ``training``, a float or a flag forward reads) and tensor attributes that are neither
    parameters nor buffers (lifted constants: one reassigned, or written in place, is another)."""
    tensors = (*module.named_parameters(), *module.named_buffers())
    baked = []
    for m in module.modules():
        for k, v in vars(m).items():
            if isinstance(v, torch.Tensor):
                baked.append((id(m), k, id(v), v._version))
            elif not k.startswith("_") and _plain(v):
                baked.append((id(m), k, v))
    return (
        tuple(id(m) for m in module.modules())
        + tuple((n, tuple(t.shape), t.dtype) for n, t in tensors)
        + tuple(baked)
    )


def _plain(v: Any) -> bool:
    return v is None or isinstance(v, (bool, int, float, str)) or (type(v) is tuple and all(map(_plain, v)))


def _signature(inputs: tuple) -> tuple:
    """The inputs' kinds, ranks and dtypes (their sizes are matched against each program's input shapes)."""
    return tuple((x.dim(), str(x.dtype)) if isinstance(x, torch.Tensor) else ("value", repr(x)) for x in inputs)


def _fits(low: Lowered, shapes: tuple) -> bool:
    """Whether inputs of ``shapes`` fit ``low``'s program: its sizes (None: a dynamic one) and guards' ranges."""
    exported, ranges = low.input_shapes, low.input_ranges or (None,) * len(shapes)
    return len(exported) == len(shapes) and all(
        e == s
        if e is None or s is None
        else all(a is None or a == b for a, b in zip(e, s)) and all(map(static.in_range, s, r or (None,) * len(s)))
        for e, s, r in zip(exported, shapes, ranges)
    )


class _FunctionModule(nn.Module):
    """A plain function of tensors as a module, so that it can be exported."""

    def __init__(self, fn: Any) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, *args: Any) -> Any:
        return self.fn(*args)


def _as_tensor(x: Any) -> Any:
    if isinstance(x, np.ndarray) or (hasattr(x, "__cuda_array_interface__") and not isinstance(x, torch.Tensor)):
        return torch.as_tensor(np.asarray(x.get() if hasattr(x, "get") else x))
    return x


def _require_eval(module: nn.Module) -> None:
    """Training-mode BatchNorm/Dropout: a named error before anything runs the model (its running stats stay)."""
    for path, m in module.named_modules():
        if not m.training:
            continue
        if isinstance(m, nn.modules.batchnorm._BatchNorm) or (
            isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0
        ) or (isinstance(m, nn.MultiheadAttention) and m.dropout > 0):  # fmt: skip
            raise training_error(f"{type(m).__name__} at module '{path or type(module).__name__}'")


def _export(module: nn.Module, inputs: tuple, strict: bool, dynamic: bool) -> Any:
    shapes = None
    if dynamic:
        auto = torch.export.Dim.AUTO
        shapes = tuple({0: auto} if isinstance(x, torch.Tensor) and x.dim() else None for x in inputs)
        params = list(inspect.signature(module.forward).parameters.values())
        star = [i for i, p in enumerate(params) if p.kind == p.VAR_POSITIONAL]
        if star:  # forward(x, *args): export wants the shapes of *args as one tuple
            shapes = shapes[: star[0]] + (shapes[star[0] :],)
    with torch.enable_grad():  # so that export records forward's own no_grad() blocks (_no_grad_blocks)
        return torch.export.export(module, inputs, dynamic_shapes=shapes, strict=strict)


def _no_grad_blocks(ep: Any) -> Any:
    """Each value a ``with torch.no_grad():`` block of forward computes, detached: export keeps the
    block as a higher-order op until the decomposition inlines it, and dualjac honours detach (an
    ``alias`` whose original op is ``detach``, ``aten_shapes``) but cannot see grad mode."""
    graph = ep.graph_module.graph
    blocks = [
        n for n in graph.nodes
        if n.target is torch.ops.higher_order.wrap_with_set_grad_enabled and n.args and n.args[0] is False
    ]  # fmt: skip
    for block in blocks:
        for out in list(block.users):
            with graph.inserting_after(out):
                detached = graph.call_function(torch.ops.aten.detach.default, (out,))
            detached.meta["val"] = out.meta.get("val")
            out.replace_all_uses_with(detached, delete_user_cb=lambda n, d=detached: n is not d)
    if blocks:
        ep.graph_module.recompile()
    return ep


def _decompositions() -> dict:
    """Core ATen, except ops kept whole (aten.py maps them): scaled_dot_product_attention, since its CPU
    decomposition gives outputs with strides that later views reject (GPT-2 fails to export), and
    hardswish/hardsigmoid, whose clamp decomposition has clamp's kinks, not torch's (0 at -3 and +3)."""
    table = torch.export.default_decompositions()
    for op in ("scaled_dot_product_attention", "hardswish", "hardsigmoid"):
        table.pop(getattr(torch.ops.aten, op).default, None)
    return table


def _lower(module: nn.Module, inputs: tuple, dtype: Any, backend: str, strict: bool) -> Lowered:
    what = type(module.fn if isinstance(module, _FunctionModule) else module).__name__
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():  # torch's own deprecation inside export, not the user's to act on
            warnings.filterwarnings("ignore", r".*isinstance\(treespec, LeafSpec\)", FutureWarning)
            try:
                ep = _export(module, inputs, strict, dynamic=True)
            except Exception:  # a dynamic batch export can fail where a static one works: try that
                ep = _export(module, inputs, strict, dynamic=False)
            ep = _no_grad_blocks(ep).run_decompositions(_decompositions())
    except UnsupportedOpError:
        raise
    except Exception as e:
        reason = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
        raise ExportFailedError(what, reason) from e
    t1 = time.perf_counter()
    b = Builder(module, what, dtype, backend)
    refs, outputs, shapes, ranges = _Lowering(ep, b).run()
    graph = Graph(tuple(b.inputs), b.nodes, outputs, {}, {}, backend)
    return Lowered(graph, ep, refs, t1 - t0, time.perf_counter() - t1, shapes, ranges)


def _state(module: nn.Module, ep: Any, dtype: Any, backend: str) -> tuple[dict, dict]:
    """Parameters (all of the module's, by qualified name, in its order) and the buffers and constants
    the program reads, as arrays converted now."""
    conv = lambda t: to_array(t, dtype, backend)
    params = {name: conv(p) for name, p in module.named_parameters()}
    constants = {}
    for spec in ep.graph_signature.input_specs:
        kind = spec.kind.name
        if kind == "BUFFER":
            constants[spec.target] = conv(module.get_buffer(spec.target))
        elif kind in ("CONSTANT_TENSOR", "CUSTOM_OBJ"):
            constants[spec.target] = conv(ep.constants[spec.target])
    return params, constants


_TORCH_DIR = os.path.dirname(torch.__file__)
_OWN_FILE = __file__.removesuffix("c")  # a plain function is exported through _FunctionModule.forward here


def _source(trace: str | None) -> str:
    """The innermost frame of a node's stack trace that is not torch's own code: ``file:line``."""
    for line in reversed((trace or "").splitlines()):
        line = line.strip()
        if line.startswith("File ") and _TORCH_DIR not in line and _OWN_FILE not in line:
            parts = line.split('"')
            lineno = line.split(", line ")[1].split(",")[0] if ", line " in line else "?"
            return f"{parts[1] if len(parts) > 1 else line}:{lineno}"
    return ""


def _module_path(node: Any) -> tuple[str, str]:
    """The innermost nn.Module around ``node``: (qualified path, type name)."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return "", ""
    path, owner = list(stack.values())[-1]
    path = path.replace("L['self'].", "").replace("L['self']", "")
    return path, str(getattr(owner, "__name__", owner)).rsplit(".", 1)[-1]


class _Lowering:
    """Walks the decomposed fx graph once, calling each ATen node's emitter with Graph values."""

    def __init__(self, ep: Any, b: Builder) -> None:
        self.ep, self.b = ep, b

    def run(self) -> tuple[dict, Any, tuple, tuple]:
        b, env = self.b, {}
        specs = {s.arg.name: s for s in self.ep.graph_signature.input_specs if hasattr(s.arg, "name")}
        names = {id(p): n for n, p in b.module.named_parameters()}  # tied weights: the first name
        shapes, ranges = [], []
        get = lambda a: pytree.tree_map(lambda v: env[v.name] if isinstance(v, torch.fx.Node) else v, a)
        for node in self.ep.graph.nodes:
            if node.op == "placeholder":
                spec = specs[node.name]
                kind = spec.kind.name
                if kind == "PARAMETER":
                    p = b.module.get_parameter(spec.target)
                    env[node.name] = Ref("param", names.get(id(p), spec.target))
                elif kind in ("BUFFER", "CONSTANT_TENSOR", "CUSTOM_OBJ"):
                    env[node.name] = Ref("const", spec.target)
                elif kind == "USER_INPUT":
                    val = node.meta.get("val")
                    if isinstance(val, torch.Tensor):
                        env[node.name] = Ref("input", node.name)
                        b.inputs.append(node.name)
                        # a size export specialised (a loop over x.shape[0]) is a concrete SymInt: fixed
                        shape = tuple(int(d) if is_concrete_int(d) else None for d in val.shape)
                        shapes.append(shape)
                        ranges.append(tuple(self._range(d) if n is None else None for n, d in zip(shape, val.shape)))
                        b.begin(node, guard_meta(node.name))
                        b.emit(static.check_shape, Ref("input", node.name), shape, node.name, ranges[-1])
                        b.nodes[-1] = b.nodes[-1]._replace(name=f"{node.name}.shape")
                    else:  # a Python number or None: export made it a constant; a call must pass the same
                        env[node.name] = val
                        b.inputs.append(node.name)
                        shapes.append(None)
                        ranges.append(None)
                        b.begin(node, guard_meta(node.name))
                        b.emit(static.check_value, Ref("input", node.name), val, node.name)
                        b.nodes[-1] = b.nodes[-1]._replace(name=f"{node.name}.value")
                elif kind == "TOKEN":  # an effect token (torch.linalg's error check): no value; see aten.py
                    env[node.name] = None
                else:
                    raise b.unsupported(f"an exported input of kind {kind} ({node.name})")
            elif node.op == "call_function":
                path, owner = _module_path(node)
                b.begin(
                    node,
                    {"target": str(node.target), "module": path, "source": _source(node.meta.get("stack_trace"))},
                    owner,
                )
                env[node.name] = b.finish(aten.lower_node(b, node.target, get(node.args), get(node.kwargs)))
            elif node.op == "output":
                # buffer and input mutations come first: functionalised, the user outputs already use the
                # mutated values, and the Graph (a pure function) neither updates buffers nor the caller's
                # arrays; effect tokens are not the user's either
                kinds = [spec.kind.name for spec in self.ep.graph_signature.output_specs]
                outputs = [get(a) for a, kind in zip(node.args[0], kinds) if kind == "USER_OUTPUT"]
                return env, _unflatten(outputs, self.ep.call_spec.out_spec), tuple(shapes), tuple(ranges)
            else:
                raise b.unsupported(f"an fx node of kind {node.op} ({node.name})")
        raise AssertionError("an exported graph without output")

    def _range(self, d: Any) -> tuple | None:
        """The sizes export's guards allow for dynamic size ``d`` (``x * 2 if B > 2 else ...``: B >= 3), or None.
        A lower bound of 2 is export's own assumption for every dynamic size (0 and 1 are specialised), not
        a guard of the model's: sizes 1 and 0 stay allowed, as torch runs them."""
        vr = self.ep.range_constraints.get(d.node.expr) if isinstance(d, torch.SymInt) else None
        if vr is None:
            return None
        lo, hi = int(vr.lower) if vr.lower > 2 else 0, int(vr.upper) if vr.upper.is_Integer else None  # not int_oo
        return (lo, hi) if lo or hi is not None else None


def _unflatten(leaves: list, spec: Any) -> Any:
    """The module's output structure with plain tuples, lists and dicts (a ModelOutput becomes a dict)."""
    if spec is None or spec.is_leaf():
        return leaves[0]
    children, start = [], 0
    for child in spec.children_specs:
        n = child.num_leaves
        children.append(_unflatten(leaves[start : start + n], child))
        start += n
    if spec.type is dict or (
        isinstance(spec.context, (list, tuple))
        and spec.context
        and all(isinstance(k, str) for k in spec.context)
        and spec.type not in (tuple, list)
    ):  # noqa: E501
        return dict(zip(spec.context, children))
    if spec.type is list:
        return children
    return tuple(children)


__all__ = ["ExportFailedError", "Lowered", "from_torch", "lower"]
