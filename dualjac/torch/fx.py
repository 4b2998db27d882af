"""``from_torch``: lower a ``torch.nn.Module`` to a dualjac ``Graph`` through ``torch.fx``.

``torch.fx.symbolic_trace`` records the module's ``forward`` as a list of fx nodes
(call_function, call_method, call_module, get_attr, ...). ``_Lowering``, a
``torch.fx.Interpreter``, walks them once and emits Graph nodes instead of running
torch: its environment holds Graph ``Ref``s, not tensors. Three tables say what each
fx target becomes; every entry is a short emitter written with torch's signature:

* ``FUNCTION_OPS``: ``torch.*``, ``torch.nn.functional.*`` and ``operator.*`` functions;
* ``METHOD_OPS``: tensor methods, by name (``x.relu_()`` is lowered as ``x.relu()``);
* ``MODULE_OPS``: ``torch.nn`` layer types (fx does not trace into them).

Torch names are mapped here, never in the rules. Shapes are not known while
lowering (no example input is needed), so ``x.size(0)``, ``flatten`` or
``transpose(1, 2)`` emit *static* nodes: Python functions of the input values that
compute a shape or an axis tuple when the graph runs. Parameters and buffers are
converted to arrays once, keeping their qualified names (``"0.weight"``).

>>> import numpy as np, torch, dualjac as dj
>>> from dualjac.torch import from_torch
>>> model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Tanh()).double()
>>> g = from_torch(model)
>>> print(g)
node  op      args                       params
%_0   linear  input, @0.weight, @0.bias
%_1   tanh    %_0
output: %_1
>>> x = np.ones((4, 3))
>>> np.allclose(g(x), model(torch.ones(4, 3, dtype=torch.float64)).detach().numpy())
True
>>> dj.batch_jacobian(g, x).shape, dj.jacfwd(lambda p: g(x, params=p))(g.params)["0.weight"].shape
((4, 2, 3), (4, 2, 2, 3))
"""

from __future__ import annotations

import functools
import inspect
import math
import numbers
import operator
import os
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from ..backend import array_namespace
from ..errors import UnsupportedOpError
from ..graph import Graph, Node, Ref
from ..numpy_api import _pos_axes


class UntraceableModuleError(UnsupportedOpError):
    """``torch.fx`` could not trace the module (data-dependent control flow, for instance)."""

    def __init__(self, what: str, reason: str) -> None:
        super().__init__(
            f"torch.fx trace of {what}",
            f"torch.fx could not trace {what}, so dualjac cannot lower it: {reason}\n"
            "fx runs forward() once on symbolic values: Python control flow on tensor values "
            "(`if x.sum() > 0`, loops over a tensor) cannot be recorded. Rewrite it with torch.where, "
            "or pass a traceable function (torch.fx.wrap, concrete_args) or submodule to from_torch.",
        )


def from_torch(module: Any, *, dtype: Any = None, backend: str = "numpy") -> Graph:
    """Lower ``module`` (an ``nn.Module`` in eval mode, or a function of tensors) to a ``Graph``.

    ``dtype``: convert floating parameters and buffers to it (default: keep the
    module's, float32 stays float32). ``backend="cupy"`` puts them on the GPU.
    Placeholders with a default value (``forward(x, mask=None)``) keep the default
    and are not graph inputs. In-place tensor ops are lowered as their out-of-place
    forms; mutation through a view of another tensor is not followed.
    """
    if backend not in ("numpy", "cupy"):
        raise ValueError(f"backend must be 'numpy' or 'cupy', got {backend!r}")
    tracer = fx.Tracer()
    tracer.record_stack_traces = True
    what = type(module).__name__ if isinstance(module, nn.Module) else getattr(module, "__name__", repr(module))
    prefix = ""
    if type(module) in MODULE_OPS:  # a single layer: fx would trace into it, so call it as a leaf
        module, traced, prefix = *_single_layer(module), "0."
        tracer.root = module
    else:
        try:
            traced = tracer.trace(module)
        except UnsupportedOpError:
            raise
        except Exception as e:  # fx's TraceError, or a TypeError from a Proxy used as a bool, an int, ...
            raise UntraceableModuleError(what, f"{type(e).__name__}: {e}") from e
    gm = fx.GraphModule(tracer.root, traced)
    b = _Builder(module if isinstance(module, nn.Module) else tracer.root, dtype, backend, what, prefix)
    out = _Lowering(gm, b).run(enable_io_processing=False)
    return Graph(tuple(b.inputs), b.nodes, _plain(out), b.params, b.constants, backend)


def _single_layer(layer: nn.Module) -> tuple[nn.Module, fx.Graph]:
    """A root holding ``layer`` as submodule ``"0"`` and the fx graph calling it with ``forward``'s arguments.

    Written by hand rather than traced: a wrapper's ``forward(*args)`` would be one ``*args``
    placeholder, and ``nn.Sequential`` passes a single argument (``nn.Bilinear`` takes two).
    """
    root = nn.Module()
    root.add_module("0", layer)
    graph = fx.Graph()
    args, kwargs = [], {}
    for p in inspect.signature(layer.forward).parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        node = graph.placeholder(p.name, default_value=p.default)  # p.empty: no default, a graph input
        if p.kind == p.KEYWORD_ONLY:
            kwargs[p.name] = node
        else:
            args.append(node)
    graph.output(graph.call_module("0", tuple(args), kwargs))
    return root, graph


def _plain(out: Any) -> Any:
    if isinstance(out, _Pieces):
        raise UnsupportedOpError("returning the whole result of chunk/split", "return its pieces as a tuple")
    if isinstance(out, tuple) and type(out) is not tuple:  # MinMax and other named tuples
        return tuple(_plain(o) for o in out)
    if isinstance(out, (tuple, list)):
        return type(out)(_plain(o) for o in out)
    if isinstance(out, dict):
        return {k: _plain(v) for k, v in out.items()}
    return out


# --- the builder: emits Graph nodes, owns params and constants --------------------------
class _Builder:
    def __init__(self, module: nn.Module, dtype: Any, backend: str, what: str, prefix: str = "") -> None:
        self.module, self.backend, self.what, self.prefix = module, backend, what, prefix
        self.dtype = None if dtype is None else _torch_dtype(dtype)
        self.inputs: list[str] = []
        self.nodes: list[Node] = []
        self.ops: dict[str, str | Callable[..., Any]] = {}  # node name -> op (a callable: a static node)
        self.fx_node: fx.Node | None = None
        self.count = 0
        self.params: dict[str, Any] = {}
        self.names: dict[int, str] = {}  # id(parameter) -> its name in named_parameters (tied weights)
        for name, p in module.named_parameters():
            name = name.removeprefix(prefix)
            self.params[name] = self.array(p)
            self.names[id(p)] = name
        self.constants: dict[str, Any] = {}

    def array(self, t: torch.Tensor) -> Any:
        t = t.detach().to("cpu")
        if t.is_floating_point():
            t = t.to(self.dtype or (torch.float32 if t.dtype == torch.bfloat16 else t.dtype))
        a = t.numpy().copy()
        if self.backend == "cupy":
            import cupy

            a = cupy.asarray(a)
        return a

    def emit(self, op: str | Callable[..., Any], *args: Any, **params: Any) -> Ref:
        """Append a node named after the fx node (``name``, then ``name.1``, ... for static values).

        ``op`` is a rule name, or a Python function of the arguments' values: a *static* node.
        """
        base = self.fx_node.name if self.fx_node is not None else "_"
        self.count += 1
        name = base if isinstance(op, str) and base not in self.ops else f"{base}.{self.count}"
        self.ops[name] = op
        self.nodes.append(Node(name, op, args, params))
        return Ref("node", name)

    def is_static(self, v: Any) -> bool:
        if isinstance(v, Ref):
            return v.kind == "node" and not isinstance(self.ops[v.name], str)
        if isinstance(v, _Pieces):
            return False
        return not isinstance(v, (tuple, list)) or all(self.is_static(a) for a in v)

    def attr(self, qualname: str) -> Any:
        """A parameter, buffer or tensor attribute of the module, by qualified name."""
        obj = self.module
        for part in qualname.split("."):
            obj = getattr(obj, part)
        if isinstance(obj, nn.Parameter) and id(obj) in self.names:
            return Ref("param", self.names[id(obj)])
        if isinstance(obj, torch.Tensor):
            name = qualname.removeprefix(self.prefix)
            if name not in self.constants:
                self.constants[name] = self.array(obj)
            return Ref("const", name)
        return obj

    def maybe(self, m: nn.Module, path: str, name: str) -> Any:
        return None if getattr(m, name, None) is None else self.attr(f"{path}.{name}" if path else name)

    def where(self) -> str:
        n = self.fx_node
        if n is None:
            return self.what
        stack = n.meta.get("nn_module_stack") or {}
        path = n.target if n.op == "call_module" else (list(stack)[-1] if stack else "")
        owner = stack[path][1] if path in stack else None
        owner = getattr(owner, "__name__", owner) or (type(self.module.get_submodule(path)).__name__ if path else "")
        module = f"module '{path}' ({owner})" if path else f"the top module ({self.what})"
        return f"fx node '{n.name}' ({n.op} {_target_name(n.target)}) in {module}"

    def unsupported(self, what: str = "", hint: str = "") -> UnsupportedOpError:
        n = self.fx_node
        frame = _user_frame(n.meta.get("stack_trace") or "") if n is not None else ""
        where = self.where() + (f"\n  traced at: {frame}" if frame else "")
        if not what and n is not None and n.op == "call_module":  # the target is a module path ("0"), not an op
            m = self.module.get_submodule(n.target)
            what = f"{type(m).__module__}.{type(m).__name__}"
        return UnsupportedOpError(
            f"{what or _target_name(n.target)} at {where}",
            hint
            or "add an emitter to FUNCTION_OPS / METHOD_OPS / MODULE_OPS in dualjac/torch/fx.py, "
            "or rewrite this step with supported torch operations",
        )

    def training(self, what: str) -> UnsupportedOpError:
        return UnsupportedOpError(
            f"{what} in training mode at {self.where()}",
            "batch statistics and random dropout masks are not a fixed function of the input; "
            "call model.eval() before from_torch / check",
        )


_TORCH_DIR = os.path.dirname(torch.__file__)


def _user_frame(trace: str) -> str:
    """The last frame of fx's recorded stack that is the user's code, not torch's."""
    lines = [s.strip() for s in trace.splitlines()]
    frames = [
        (f, "" if c.startswith("File ") else c)
        for f, c in zip(lines, lines[1:] + [""])
        if f.startswith("File ") and _TORCH_DIR not in f
    ]
    return " ".join(frames[-1]) if frames else ""


def _static_only(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A Python function of sizes (``math.sqrt(x.size(-1))``): a static node; on tensors, unsupported."""

    def emit(b, *args):
        if not all(b.is_static(a) for a in args):
            raise b.unsupported(hint=f"{fn.__name__} works on Python numbers; use the torch function on tensors")
        return b.emit(fn, *args)

    return emit


def _target_name(t: Any) -> str:
    if isinstance(t, str):
        return t
    mod = getattr(t, "__module__", None) or ""
    mod = {"_operator": "operator", "torch._C._nn": "torch.nn.functional", "torch._C._VariableFunctions": "torch"}.get(
        mod, mod
    )
    return f"{mod}.{getattr(t, '__name__', repr(t))}".lstrip(".")


def _torch_dtype(dtype: Any) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    return getattr(torch, np.dtype(dtype).name)


class _Lowering(fx.Interpreter):
    """Runs the fx graph with Graph ``Ref``s in place of tensors, emitting Graph nodes."""

    def __init__(self, gm: fx.GraphModule, b: _Builder) -> None:
        super().__init__(gm, garbage_collect_values=False)
        self.extra_traceback = False  # keep our error messages as they are
        self.b = b

    def run_node(self, n: fx.Node) -> Any:
        self.b.fx_node, self.b.count = n, 0
        return super().run_node(n)

    def placeholder(self, target, args, kwargs):
        if target.startswith("*"):
            raise self.b.unsupported(f"forward({target})", "give forward() a fixed list of arguments")
        if args:  # an argument with a default: a constant of the graph
            return args[0]
        self.b.inputs.append(target)
        return Ref("input", target)

    def get_attr(self, target, args, kwargs):
        return self.b.attr(target)

    def call_function(self, target, args, kwargs):
        emit = FUNCTION_OPS.get(target) if _hashable(target) else None
        if emit is None:
            owner = getattr(target, "__self__", None)
            if isinstance(owner, type) and issubclass(owner, torch.autograd.Function):
                raise self.b.unsupported(
                    f"torch.autograd.Function {owner.__name__}",
                    "its forward could not be traced through; write forward with supported torch operations",
                )
            raise self.b.unsupported()
        out = emit(self.b, *args, **kwargs)
        if kwargs.get("inplace") and self.b.fx_node.args:  # fx passes F.*'s inplace flag as a keyword
            self._rebind(self.b.fx_node.args[0], out)
        return out

    def call_method(self, target, args, kwargs):
        inplace = target.endswith("_") and not target.startswith("_")
        emit = METHOD_OPS.get(target[:-1] if inplace else target)
        if emit is None:
            raise self.b.unsupported(f"Tensor.{target}")
        out = emit(self.b, *args, **kwargs)
        if inplace:
            self._rebind(self.b.fx_node.args[0], out)
        return out

    def call_module(self, target, args, kwargs):
        m = self.fetch_attr(target)
        emit = MODULE_OPS.get(type(m))
        if emit is None:
            raise self.b.unsupported(f"{type(m).__module__}.{type(m).__name__}")
        out = emit(self.b, m, target, *args, **kwargs)
        if getattr(m, "inplace", False) and self.b.fx_node.args:
            self._rebind(self.b.fx_node.args[0], out)
        return out

    def output(self, target, args, kwargs):
        return args[0]

    def _rebind(self, arg: Any, out: Any) -> None:
        """After ``x.add_(y)``, later uses of ``x`` see the new value."""
        if isinstance(arg, fx.Node):
            self.env[arg] = out


def _hashable(t: Any) -> bool:
    try:
        hash(t)
    except TypeError:
        return False
    return True


# --- static helpers: Python functions of input *values* (shapes, axes, indices) -------------
def _as_shape(*parts: Any) -> tuple:
    """``view(2, -1)``, ``view((2, -1))`` and ``view(y.shape)`` all as one tuple of ints."""
    out: list[int] = []
    for p in parts:
        out.extend(int(a) for a in p) if isinstance(p, (tuple, list)) else out.append(int(p))
    return tuple(out)


def _size(x: Any, dim: int | None = None) -> Any:
    return np.shape(x) if dim is None else np.size(x, dim)


def _axis(dim: int, ndim: int) -> int:
    """torch's ``dim`` as a nonnegative axis (out of range: NumPy's ``AxisError``)."""
    return _pos_axes(dim, ndim)[0]


def _flatten_shape(x: Any, start_dim: int = 0, end_dim: int = -1) -> tuple:
    s = np.shape(x)
    if not s:
        return (1,)
    a, e = _pos_axes((start_dim, end_dim), len(s))
    return s[:a] + (math.prod(s[a : e + 1]),) + s[e + 1 :]


def _unflatten_shape(x: Any, dim: int, sizes: Any) -> tuple:
    s = np.shape(x)
    d = _axis(dim, len(s))
    return s[:d] + tuple(sizes) + s[d + 1 :]


def _squeeze_shape(x: Any, dim: Any = None) -> tuple:
    s = np.shape(x)
    dims = range(len(s)) if dim is None else _pos_axes(dim, max(len(s), 1))  # a 0-d tensor has dim 0 and -1
    drop = {d for d in dims if s and s[d] == 1}
    return tuple(n for i, n in enumerate(s) if i not in drop)


def _unsqueeze_shape(x: Any, dim: int) -> tuple:
    s = np.shape(x)
    d = _axis(dim, len(s) + 1)
    return s[:d] + (1,) + s[d:]


def _expand_shape(x: Any, *sizes: Any) -> tuple:
    sizes = _as_shape(*sizes)
    s = (1,) * (len(sizes) - np.ndim(x)) + np.shape(x)
    return tuple(n if t == -1 else t for n, t in zip(s, sizes))


def _swap_axes(x: Any, d0: int, d1: int) -> tuple:
    order = list(range(np.ndim(x)))
    i, j = _pos_axes((d0, d1), len(order))
    order[i], order[j] = order[j], order[i]
    return tuple(order)


def _key_at(x: Any, dim: int, k: Any) -> tuple:
    """The indexing key taking ``k`` (a slice or an int) along ``dim`` and everything elsewhere."""
    return (slice(None),) * _axis(dim, np.ndim(x)) + (k,)


def _chunk_key(x: Any, chunks: int, dim: int, i: int) -> tuple:
    n = np.size(x, dim)
    each = -(-n // chunks)
    if i < 0:  # x.chunk(2)[-1]: from the end of the pieces torch actually gives
        i += -(-n // each) if each else 0
    if not 0 <= i * each < n:
        raise IndexError(f"chunk {i} of {chunks} does not exist for size {n} (torch.chunk gives fewer pieces)")
    return _key_at(x, dim, slice(i * each, min((i + 1) * each, n)))


def _split_key(x: Any, size: Any, dim: int, i: int) -> tuple:
    n = np.size(x, dim)
    sizes = list(size) if isinstance(size, (tuple, list)) else [size] * -(-n // size)
    start = sum(sizes[:i])
    if i >= len(sizes):
        raise IndexError(f"split piece {i} does not exist ({len(sizes)} pieces)")
    return _key_at(x, dim, slice(start, min(start + sizes[i], n)))


def _unbind_key(x: Any, dim: int, i: int) -> tuple:
    return _key_at(x, dim, i)


def _arg_extremum(fn: str) -> Callable[..., Any]:
    def arg(x: Any, axis: int, keepdims: bool = False) -> Any:
        i = getattr(array_namespace(x), fn)(x, axis=axis)
        return array_namespace(x).expand_dims(i, axis) if keepdims else i

    arg.__name__ = fn
    return arg


def _legacy_softmax_dim(x: Any) -> int:
    return 0 if np.ndim(x) in (0, 1, 3) else 1  # torch's _get_softmax_dim for dim=None


def _pad_width(x: Any, pad: Any) -> tuple:
    """torch's ``pad`` (last axis first: left, right, top, bottom, ...) as NumPy's pairs."""
    pairs = [(int(pad[2 * i]), int(pad[2 * i + 1])) for i in range(len(pad) // 2)]
    return tuple([(0, 0)] * (np.ndim(x) - len(pairs)) + pairs[::-1])


def _causal_mask(q: Any, k: Any) -> Any:
    L, S = np.size(q, -2), np.size(k, -2)
    xp = array_namespace(q)
    return xp.tril(xp.ones((L, S), dtype=bool))


def _inv_sqrt_last(q: Any) -> float:
    return 1.0 / math.sqrt(np.size(q, -1))


def _mask_keep(mask: Any) -> Any:
    """Where attention is allowed: a boolean mask itself; everywhere (``True``) for a float mask."""
    return mask if mask.dtype == bool else True


def _mask_is_float(mask: Any) -> Any:
    """Whether an attention mask is added (float) rather than selecting (boolean), as a bool."""
    return mask.dtype != bool


def _axes_of(x: Any, dims: tuple | None) -> list:
    """``dims`` (None: all) as sorted nonnegative axes; a 0-d tensor has dim 0 and -1, as in torch."""
    return list(range(np.ndim(x))) if dims is None else sorted(set(_pos_axes(dims, max(np.ndim(x), 1))))


def _dims_last_order(x: Any, dims: tuple) -> tuple:
    ax = _axes_of(x, dims)
    return tuple([d for d in range(np.ndim(x)) if d not in ax] + ax)


def _dims_last_shape(x: Any, dims: tuple | None) -> tuple:
    ax, s = _axes_of(x, dims), np.shape(x)
    return tuple(n for d, n in enumerate(s) if d not in ax) + (math.prod(s[d] for d in ax),)


def _kept_shape(x: Any, dims: tuple | None) -> tuple:
    ax = _axes_of(x, dims)
    return tuple(1 if d in ax else n for d, n in enumerate(np.shape(x)))


def _any_finite_row(s: Any) -> Any:
    """Whether each row of attention scores has an unmasked entry (a boolean, kept last axis)."""
    xp = array_namespace(s)
    return xp.any(xp.isfinite(s), axis=-1, keepdims=True)


# --- sequences: chunk/split/unbind pieces and max(dim)'s (values, indices) -----------------
class _Pieces:
    """The result of chunk/split/unbind: fx indexes it with ``operator.getitem``.

    How many pieces there are depends on the input's shape (``chunk(2)`` of a size-1 axis
    is one piece), so it is known while lowering only for ``split`` with a list of sizes.
    """

    def __init__(
        self, b: _Builder, x: Ref, key: Callable[..., tuple], *key_args: Any, count: int | None = None
    ) -> None:
        self.b, self.x, self.key, self.key_args, self.count = b, x, key, key_args, count

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice) and self.count is not None:
            return tuple(self[j] for j in range(self.count)[i])
        if not isinstance(i, numbers.Integral):
            raise self.b.unsupported(hint=f"index the pieces of chunk/split/unbind with an int, not {i!r}")
        return self.b.emit("getitem", self.x, key=self.b.emit(self.key, self.x, *self.key_args, int(i)))

    def __iter__(self) -> Any:
        # without it, Python iterates through __getitem__ until IndexError: forever
        if self.count is None:
            raise self.b.unsupported(
                hint="the number of pieces depends on the input's shape, so they cannot be passed on whole; "
                "unpack the pieces: a, b = x.chunk(2); torch.cat((a, b))"
            )
        return (self[i] for i in range(self.count))


class MinMax(NamedTuple):
    values: Any
    indices: Any


# --- emitters: torch signatures in, Graph nodes out ---------------------------------------
def _dims(dim: Any) -> Any:
    if isinstance(dim, (list, tuple)):
        return tuple(dim) if len(dim) else None
    return dim


def _unary(op: str, **settings: Any) -> Callable[..., Any]:
    """One tensor in, one op: ``torch.exp(x, *, out)``, ``F.silu(x, inplace)``, ``F.elu(x, alpha=1.0, inplace)``.

    ``settings``: torch's keyword names and defaults, in torch's order after ``x``; they are the
    rule's params too. A trailing positional ``inplace`` falls outside them and is ignored.
    """

    def emit(b, x, *args, inplace=False, out=None, **kwargs):
        return b.emit(op, x, **{**settings, **dict(zip(settings, args)), **kwargs})

    return emit


def _binary(op: str, static_fn: Callable[..., Any]) -> Callable[..., Any]:
    def emit(b, x, y, *, alpha=None, rounding_mode=None, out=None):
        if b.is_static(x) and b.is_static(y):
            return b.emit(static_fn, x, y)
        if alpha is not None and alpha != 1:
            y = b.emit("multiply", y, alpha)
        if rounding_mode is not None:
            if op != "divide":
                raise b.unsupported(hint=f"rounding_mode={rounding_mode!r} only goes with div")
            if rounding_mode == "floor":
                return b.emit("floor_divide", x, y)
            return b.emit("trunc", b.emit("divide", x, y))
        return b.emit(op, x, y)

    return emit


def _rsqrt(b, x):
    return b.emit("reciprocal", b.emit("sqrt", x))


def _reduction(op: str) -> Callable[..., Any]:
    def emit(b, x, dim=None, keepdim=False, *, dtype=None, out=None):
        return b.emit(op, x, axis=_dims(dim), keepdims=bool(keepdim))

    return emit


def _extremum(op: str, arg: str, pair: str) -> Callable[..., Any]:
    """``max(x)``, ``max(x, dim, keepdim)`` -> (values, indices), ``max(x, other)``."""

    def emit(b, x, dim=None, keepdim=False, *, other=None, out=None):
        if other is not None:
            return b.emit(pair, x, other)
        if isinstance(dim, Ref) and not b.is_static(dim):
            return b.emit(pair, x, dim)
        if dim is None:
            return b.emit(op, x, axis=None, keepdims=False)
        return MinMax(
            b.emit(op, x, axis=dim, keepdims=bool(keepdim)),
            b.emit(_arg_extremum(arg), x, dim, bool(keepdim)),
        )

    return emit


def _var(op: str) -> Callable[..., Any]:
    def emit(b, x, dim=None, unbiased=None, keepdim=False, *, correction=None, out=None):
        if isinstance(dim, bool):  # var(x, unbiased)
            dim, unbiased = None, dim
        ddof = correction if correction is not None else (0 if unbiased is False else 1)
        return b.emit(op, x, axis=_dims(dim), keepdims=bool(keepdim), ddof=ddof)

    return emit


def _cumulative(op: str) -> Callable[..., Any]:
    def emit(b, x, dim, *, dtype=None, out=None):
        return b.emit(op, x, axis=dim)

    return emit


def _vector_norm(b, x, ord=2, dim=None, keepdim=False, *, dtype=None, out=None):
    dim = _dims(dim)
    if isinstance(dim, tuple) and len(dim) == 1:
        dim = dim[0]
    if dim is None or isinstance(dim, tuple):  # the dims moved to the end and flattened: one vector norm
        moved = x if dim is None else b.emit("transpose", x, axes=b.emit(_dims_last_order, x, dim))
        flat = b.emit("reshape", moved, shape=b.emit(_dims_last_shape, x, dim))
        n = b.emit("norm", flat, ord=ord, axis=-1, keepdims=False)
        return b.emit("reshape", n, shape=b.emit(_kept_shape, x, dim)) if keepdim else n
    return b.emit("norm", x, ord=ord, axis=dim, keepdims=bool(keepdim))


def _norm(b, x, p="fro", dim=None, keepdim=False, *, dtype=None, out=None):
    if p in ("fro", None):
        dims = _dims(dim)
        if isinstance(dims, tuple) and len(dims) == 2:
            return b.emit("norm", x, ord="fro", axis=dims, keepdims=bool(keepdim))
        p = 2
    if p == "nuc":
        return b.emit("norm", x, ord="nuc", axis=_dims(dim) or (-2, -1), keepdims=bool(keepdim))
    return _vector_norm(b, x, p, dim, keepdim)


def _linalg_norm(b, x, ord=None, dim=None, keepdim=False, *, dtype=None, out=None):
    return b.emit("norm", x, ord=ord, axis=_dims(dim), keepdims=bool(keepdim))


def _logsumexp(b, x, dim, keepdim=False, *, out=None):
    return b.emit("logsumexp", x, axis=_dims(dim), keepdims=bool(keepdim))


def _shape_arg(b, *shape):
    if all(isinstance(s, int) for s in shape):
        return shape
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)) and all(isinstance(s, int) for s in shape[0]):
        return tuple(shape[0])
    return b.emit(_as_shape, *shape)


def _reshape(b, x, *shape):
    if len(shape) == 1 and isinstance(shape[0], torch.dtype):
        raise b.unsupported(hint="view(dtype) reinterprets bits; it has no derivative")
    return b.emit("reshape", x, shape=_shape_arg(b, *shape))


def _shaped_as(op: str) -> Callable[..., Any]:
    """``x.view_as(other)``, ``x.expand_as(other)``: ``op`` with ``other``'s shape."""

    def emit(b, x, other):
        return b.emit(op, x, shape=b.emit(np.shape, other))

    return emit


def _permute(b, x, *dims):
    return b.emit("transpose", x, axes=_shape_arg(b, *dims))


def _transpose(b, x, dim0, dim1):
    return b.emit("transpose", x, axes=b.emit(_swap_axes, x, dim0, dim1))


def _t(b, x):
    return b.emit("transpose", x, axes=None)


def _flatten(b, x, start_dim=0, end_dim=-1):
    return b.emit("reshape", x, shape=b.emit(_flatten_shape, x, start_dim, end_dim))


def _unflatten(b, x, dim, sizes):
    return b.emit("reshape", x, shape=b.emit(_unflatten_shape, x, dim, sizes))


def _squeeze(b, x, dim=None):
    return b.emit("reshape", x, shape=b.emit(_squeeze_shape, x, dim))


def _unsqueeze(b, x, dim):
    return b.emit("reshape", x, shape=b.emit(_unsqueeze_shape, x, dim))


def _expand(b, x, *sizes):
    return b.emit("broadcast_to", x, shape=b.emit(_expand_shape, x, *sizes))


def _identity(b, x, *args, **kwargs):
    return x


def _to(b, x, *args, **kwargs):
    for a in (*args, *kwargs.values()):
        if isinstance(a, torch.dtype) and not a.is_floating_point:
            raise b.unsupported(hint=f"casting to {a} has no derivative")
    return x  # dualjac computes in the graph's dtype (float64 in check)


def _size_method(b, x, dim=None):
    return b.emit(_size, x, dim)


def _getattr(b, x, name):
    if isinstance(x, MinMax):
        return getattr(x, name)
    if name == "shape":
        return b.emit(np.shape, x)
    if name == "ndim":
        return b.emit(np.ndim, x)
    if name == "T":
        return _t(b, x)
    if name == "mT":
        return _transpose(b, x, -2, -1)
    raise b.unsupported(f"Tensor.{name}")


def _getitem(b, x, key):
    if isinstance(x, (tuple, list, _Pieces)):
        return x[key]
    if b.is_static(x):
        return b.emit(operator.getitem, x, key)
    return b.emit("getitem", x, key=key if isinstance(key, tuple) else (key,))


def _joined(op: str) -> Callable[..., Any]:
    """``torch.cat(tensors, dim)``, ``torch.stack(tensors, dim)``."""

    def emit(b, tensors, dim=0, *, out=None):
        return b.emit(op, *tensors, axis=dim)

    return emit


def _chunk(b, x, chunks, dim=0):
    return _Pieces(b, x, _chunk_key, chunks, dim)


def _split(b, x, split_size_or_sections, dim=0):
    sizes = split_size_or_sections
    count = len(sizes) if isinstance(sizes, (tuple, list)) and all(isinstance(n, int) for n in sizes) else None
    return _Pieces(b, x, _split_key, sizes, dim, count=count)


def _unbind(b, x, dim=0):
    return _Pieces(b, x, _unbind_key, dim)


def _where(b, condition, x, y):
    return b.emit("where", condition, x, y)


def _where_method(b, x, condition, y):  # x.where(condition, y)
    return _where(b, condition, x, y)


def _masked_fill(b, x, mask, value):
    return b.emit("where", mask, value, x)


def _clamp(b, x, min=None, max=None, *, out=None):
    return b.emit("clip", x, min, max)


_clamp_min = functools.partial(_clamp, max=None)  # clamp_min(x, min)


def _clamp_max(b, x, max, *, out=None):  # clamp_max(x, max): max is _clamp's second bound, so no partial
    return _clamp(b, x, None, max)


def _product(op: str) -> Callable[..., Any]:
    """``torch.matmul(x, y, *, out)``, ``torch.dot(x, y, *, out)``."""

    def emit(b, x, y, *, out=None):
        return b.emit(op, x, y)

    return emit


def _einsum(b, equation, *operands):
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    return b.emit("einsum", *operands, subscripts=equation)


# activations (torch.nn.functional signatures); the one-tensor ones are _unary entries of _ACTIVATIONS
def _relu6(b, x, inplace=False):
    return b.emit("hardtanh", x, min_val=0.0, max_val=6.0)


def _prelu(b, x, weight):
    return b.emit("prelu", x, weight)


def _softmax_like(op: str) -> Callable[..., Any]:
    def emit(b, x, dim=None, _stacklevel=3, dtype=None):
        return b.emit(op, x, axis=b.emit(_legacy_softmax_dim, x) if dim is None else dim)

    return emit


# layers (torch.nn.functional signatures)
def _linear(b, x, weight, bias=None):
    return b.emit("linear", x, weight, bias)


def _bilinear(b, x1, x2, weight, bias=None):
    return b.emit("bilinear", x1, x2, weight, bias)


def _conv(b, x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    return b.emit("conv", x, weight, bias, stride=stride, padding=padding, dilation=dilation, groups=groups)


def _conv_transpose(b, x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    return b.emit(
        "conv_transpose", x, weight, bias, stride=stride, padding=padding, output_padding=output_padding,
        groups=groups, dilation=dilation,
    )  # fmt: skip


def _pool_tuple(v: Any, nd: int) -> Any:
    return (v,) * nd if isinstance(v, numbers.Integral) else tuple(v)


def _max_pool(nd: int) -> Callable[..., Any]:
    def emit(b, x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
        if return_indices:
            raise b.unsupported(hint="return_indices=True is not supported")
        k = _pool_tuple(kernel_size, nd)
        return b.emit(
            "max_pool", x, kernel_size=k, stride=k if stride in (None, [], ()) else _pool_tuple(stride, nd),
            padding=_pool_tuple(padding, nd), dilation=_pool_tuple(dilation, nd), ceil_mode=bool(ceil_mode),
        )  # fmt: skip

    return emit


def _avg_pool(nd: int) -> Callable[..., Any]:
    def emit(b, x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
             divisor_override=None):  # fmt: skip
        if divisor_override is not None:
            raise b.unsupported(hint="divisor_override is not supported")
        k = _pool_tuple(kernel_size, nd)
        return b.emit(
            "avg_pool", x, kernel_size=k, stride=k if stride in (None, [], ()) else _pool_tuple(stride, nd),
            padding=_pool_tuple(padding, nd), ceil_mode=bool(ceil_mode), count_include_pad=bool(count_include_pad),
        )  # fmt: skip

    return emit


def _adaptive_avg_pool(nd: int) -> Callable[..., Any]:
    def emit(b, x, output_size):
        return b.emit("adaptive_avg_pool", x, output_size=_pool_tuple(output_size, nd))

    return emit


def _batch_norm(b, x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    if training or running_mean is None:
        raise b.training("batch_norm")
    return b.emit("batch_norm", x, running_mean, running_var, weight, bias, eps=eps)


def _layer_norm(b, x, normalized_shape, weight=None, bias=None, eps=1e-5):
    shape = normalized_shape if isinstance(normalized_shape, Ref) else _shape_arg(b, normalized_shape)
    return b.emit("layer_norm", x, weight, bias, normalized_shape=shape, eps=eps)


def _group_norm(b, x, num_groups, weight=None, bias=None, eps=1e-5):
    return b.emit("group_norm", x, weight, bias, num_groups=num_groups, eps=eps)


def _embedding(b, input, weight, padding_idx=None, max_norm=None, norm_type=2.0, scale_grad_by_freq=False,
               sparse=False):  # fmt: skip
    if max_norm is not None:
        raise b.unsupported(hint="Embedding(max_norm=...) renormalises the weight in place; not supported")
    rows = b.emit("take", weight, indices=input, axis=0)
    if padding_idx is None:
        return rows
    # torch: the padding row gets no gradient (it is not trained), wherever it is looked up
    at_padding = b.emit(_padding_mask, input, weight, padding_idx)
    return b.emit("where", at_padding, b.emit("stop_gradient", rows), rows)


def _padding_mask(idx: Any, weight: Any, padding_idx: int) -> Any:
    """Where ``idx`` is the padding index (negative: from the end, as torch), with a trailing axis."""
    i = padding_idx if padding_idx >= 0 else np.size(weight, 0) + padding_idx
    return array_namespace(idx).asarray(idx == i)[..., None]


def _detach(b, x):
    return b.emit("stop_gradient", x)


def _dropout(b, x, p=0.5, training=True, inplace=False):
    if training and p > 0:
        raise b.training("dropout")
    return x


_PAD_MODES = {"constant": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def _pad(b, x, pad, mode="constant", value=None):
    if mode not in _PAD_MODES:
        raise b.unsupported(hint=f"pad mode {mode!r} is not supported")
    kw = {"constant_values": 0.0 if value is None else value} if mode == "constant" else {}
    return b.emit("pad", x, pad_width=b.emit(_pad_width, x, tuple(pad)), mode=_PAD_MODES[mode], **kw)


def _normalize(b, x, p=2.0, dim=1, eps=1e-12, out=None):
    n = _vector_norm(b, x, p, dim, keepdim=True)
    return b.emit("divide", x, b.emit("clip", n, eps, None))


def _sdpa(b, query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
    if dropout_p:
        raise b.unsupported(hint="dropout_p > 0 draws a random mask; pass dropout_p=0.0 (eval mode)")
    if enable_gqa:
        raise b.unsupported(hint="enable_gqa=True is not supported")
    # softmax(q k^T * scale + mask) v
    kt = b.emit("transpose", key, axes=b.emit(_swap_axes, key, -2, -1))
    s = b.emit("multiply", b.emit("matmul", query, kt), b.emit(_inv_sqrt_last, query) if scale is None else scale)
    if is_causal:
        s = b.emit("where", b.emit(_causal_mask, query, key), s, -math.inf)
    if isinstance(attn_mask, Ref) and attn_mask.kind == "const" and b.constants[attn_mask.name].dtype == bool:
        s = b.emit("where", attn_mask, s, -math.inf)
    elif isinstance(attn_mask, Ref) and attn_mask.kind in ("const", "param"):  # a float buffer or parameter
        s = b.emit("add", s, attn_mask)
    elif attn_mask is not None:  # an input or a computed mask: its dtype is known only when the graph runs
        # boolean: where(mask, s, -inf) + 0; float: where(True, s, -inf) + mask, its tangent kept. Both
        # static nodes give booleans, which graph._static allows even from a differentiated mask.
        keep, is_float = b.emit(_mask_keep, attn_mask), b.emit(_mask_is_float, attn_mask)
        s = b.emit("add", b.emit("where", keep, s, -math.inf), b.emit("where", is_float, attn_mask, 0.0))
    if attn_mask is None:
        return b.emit("matmul", b.emit("softmax", s, axis=-1), value)
    # torch's safe softmax: a row the mask hides entirely (all -inf) attends to nothing (0), not NaN
    alive = b.emit(_any_finite_row, s)
    p = b.emit("softmax", b.emit("where", alive, s, 0.0), axis=-1)
    return b.emit("matmul", b.emit("where", alive, p, 0.0), value)


# --- the tables ---------------------------------------------------------------------------------
_UNARY = {
    "exp": "exp", "log": "log", "log2": "log2", "log10": "log10", "log1p": "log1p", "expm1": "expm1",
    "sqrt": "sqrt", "sin": "sin", "cos": "cos", "tan": "tan", "sinh": "sinh", "cosh": "cosh", "tanh": "tanh",
    "asin": "arcsin", "acos": "arccos", "atan": "arctan", "abs": "absolute", "neg": "negative",
    "square": "square", "reciprocal": "reciprocal", "sigmoid": "sigmoid",
}  # fmt: skip
_BINARY = {
    "add": ("add", operator.add), "sub": ("subtract", operator.sub), "mul": ("multiply", operator.mul),
    "div": ("divide", operator.truediv), "pow": ("power", operator.pow), "maximum": ("maximum", max),
    "minimum": ("minimum", min), "gt": ("greater", operator.gt), "lt": ("less", operator.lt),
    "ge": ("greater_equal", operator.ge), "le": ("less_equal", operator.le), "eq": ("equal", operator.eq),
    "ne": ("not_equal", operator.ne),
}  # fmt: skip
_ACTIVATIONS = {
    "relu": _unary("relu"), "relu6": _relu6, "leaky_relu": _unary("leaky_relu", negative_slope=0.01),
    "prelu": _prelu, "elu": _unary("elu", alpha=1.0), "selu": _unary("selu"), "celu": _unary("celu", alpha=1.0),
    "gelu": _unary("gelu", approximate="none"), "silu": _unary("silu"), "mish": _unary("mish"),
    "softplus": _unary("softplus", beta=1.0, threshold=20.0), "sigmoid": _unary("sigmoid"), "tanh": _unary("tanh"),
    "hardtanh": _unary("hardtanh", min_val=-1.0, max_val=1.0),
    "hardswish": _unary("hardswish"), "hardsigmoid": _unary("hardsigmoid"), "logsigmoid": _unary("log_sigmoid"),
    "softsign": _unary("softsign"), "tanhshrink": _unary("tanhshrink"), "softmax": _softmax_like("softmax"),
    "log_softmax": _softmax_like("log_softmax"),
}  # fmt: skip
_SHARED = {  # the same emitter for torch.<name> and Tensor.<name>
    **{k: _unary(v) for k, v in _UNARY.items()},
    **{k: _binary(*v) for k, v in _BINARY.items()},
    **{k: _ACTIVATIONS[k] for k in ("relu", "softmax", "log_softmax")},
    "rsqrt": _rsqrt, "matmul": _product("matmul"), "mm": _product("matmul"), "bmm": _product("matmul"),
    "mv": _product("matmul"), "dot": _product("dot"), "sum": _reduction("sum"), "mean": _reduction("mean"),
    "prod": _reduction("prod"), "amax": _reduction("amax"), "amin": _reduction("amin"),
    "max": _extremum("amax", "argmax", "maximum"),
    "min": _extremum("amin", "argmin", "minimum"), "var": _var("var"), "std": _var("std"),
    "cumsum": _cumulative("cumsum"), "cumprod": _cumulative("cumprod"), "norm": _norm, "logsumexp": _logsumexp,
    "reshape": _reshape, "permute": _permute, "transpose": _transpose, "swapaxes": _transpose, "t": _t,
    "flatten": _flatten, "unflatten": _unflatten, "squeeze": _squeeze, "unsqueeze": _unsqueeze,
    "chunk": _chunk, "split": _split, "unbind": _unbind, "clamp": _clamp, "clip": _clamp,
    "clamp_min": _clamp_min, "clamp_max": _clamp_max, "detach": _detach,
}  # fmt: skip

FUNCTION_OPS: dict[Any, Callable[..., Any]] = {
    **{getattr(torch, k): v for k, v in _SHARED.items()},
    **{getattr(F, k): v for k, v in _ACTIVATIONS.items() if k not in ("sigmoid", "tanh")},  # those two trace as torch.*
    **{getattr(torch, k): _ACTIVATIONS[k] for k in ("selu", "celu", "prelu")},
    **{getattr(operator, k): _SHARED[k] for k in ("add", "sub", "mul", "pow", "gt", "lt", "ge", "le", "neg", "abs")},
    operator.truediv: _SHARED["div"], torch.true_divide: _SHARED["div"], operator.matmul: _SHARED["matmul"],
    operator.floordiv: _binary("floor_divide", operator.floordiv), torch.where: _where,
    torch.cat: _joined("concatenate"), torch.concat: _joined("concatenate"),
    torch.concatenate: _joined("concatenate"), torch.stack: _joined("stack"), torch.einsum: _einsum,
    torch.masked_fill: _masked_fill, torch.linalg.norm: _linalg_norm, torch.linalg.vector_norm: _vector_norm,
    operator.getitem: _getitem, getattr: _getattr, math.sqrt: _static_only(math.sqrt),
    F.linear: _linear, F.bilinear: _bilinear, F.conv1d: _conv, F.conv2d: _conv,
    F.conv_transpose1d: _conv_transpose, F.conv_transpose2d: _conv_transpose,
    F.max_pool1d: _max_pool(1), F.max_pool2d: _max_pool(2), F.avg_pool1d: _avg_pool(1), F.avg_pool2d: _avg_pool(2),
    F.adaptive_avg_pool1d: _adaptive_avg_pool(1), F.adaptive_avg_pool2d: _adaptive_avg_pool(2),
    F.batch_norm: _batch_norm, F.layer_norm: _layer_norm, F.group_norm: _group_norm, F.embedding: _embedding,
    F.dropout: _dropout, F.alpha_dropout: _dropout, F.feature_alpha_dropout: _dropout, F.dropout1d: _dropout,
    F.dropout2d: _dropout,
    F.pad: _pad, F.normalize: _normalize, F.scaled_dot_product_attention: _sdpa,
}  # fmt: skip

METHOD_OPS: dict[str, Callable[..., Any]] = {
    **_SHARED,
    "view": _reshape, "view_as": _shaped_as("reshape"), "reshape_as": _shaped_as("reshape"), "expand": _expand,
    "expand_as": _shaped_as("broadcast_to"), "contiguous": _identity, "clone": _identity, "to": _to, "float": _to,
    "double": _to, "type_as": _to, "size": _size_method, "dim": lambda b, x: b.emit(np.ndim, x),
    "numel": lambda b, x: b.emit(np.size, x), "where": _where_method, "masked_fill": _masked_fill,
}  # fmt: skip


def _module(emit: Callable[..., Any], *attrs: str) -> Callable[..., Any]:
    """A module emitter calling ``emit(b, x, m.<attr>...)`` (activations with settings)."""

    def lower(b, m, path, x):
        return emit(b, x, *(getattr(m, a) for a in attrs))

    return lower


def _m_linear(b, m, path, x):
    return _linear(b, x, b.attr(f"{path}.weight"), b.maybe(m, path, "bias"))


def _m_bilinear(b, m, path, x1, x2):
    return _bilinear(b, x1, x2, b.attr(f"{path}.weight"), b.maybe(m, path, "bias"))


def _m_conv(b, m, path, x):
    padding = m.padding
    if m.padding_mode != "zeros":
        x = _pad(b, x, m._reversed_padding_repeated_twice, mode=m.padding_mode)
        padding = 0
    return _conv(b, x, b.attr(f"{path}.weight"), b.maybe(m, path, "bias"), m.stride, padding, m.dilation, m.groups)


def _m_conv_transpose(b, m, path, x, output_size=None):
    if output_size is not None:
        raise b.unsupported(hint="ConvTranspose with output_size= is not supported; set output_padding")
    return _conv_transpose(
        b, x, b.attr(f"{path}.weight"), b.maybe(m, path, "bias"), m.stride, m.padding, m.output_padding,
        m.groups, m.dilation,
    )  # fmt: skip


def _m_batch_norm(b, m, path, x):
    if m.training:
        raise b.training(type(m).__name__)
    if m.running_mean is None:
        raise b.unsupported(hint="BatchNorm without running stats (track_running_stats=False) uses batch statistics")
    return _batch_norm(
        b, x, b.attr(f"{path}.running_mean"), b.attr(f"{path}.running_var"), b.maybe(m, path, "weight"),
        b.maybe(m, path, "bias"), eps=m.eps,
    )  # fmt: skip


def _m_layer_norm(b, m, path, x):
    return _layer_norm(b, x, m.normalized_shape, b.maybe(m, path, "weight"), b.maybe(m, path, "bias"), m.eps)


def _m_group_norm(b, m, path, x):
    return _group_norm(b, x, m.num_groups, b.maybe(m, path, "weight"), b.maybe(m, path, "bias"), m.eps)


def _m_dropout(b, m, path, x):
    if m.training and m.p > 0:
        raise b.training(type(m).__name__)
    return x


def _m_embedding(b, m, path, idx):
    return _embedding(b, idx, b.attr(f"{path}.weight"), m.padding_idx, m.max_norm)


_MAX_POOL = ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
_AVG_POOL = ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad")  # AvgPool1d: no divisor_override
_ACTIVATION_MODULES = {  # nn.<Layer>: (its _ACTIVATIONS entry, the layer's attributes passed to it)
    nn.ReLU: ("relu",), nn.ReLU6: ("relu6",), nn.LeakyReLU: ("leaky_relu", "negative_slope"), nn.ELU: ("elu", "alpha"),
    nn.SELU: ("selu",), nn.CELU: ("celu", "alpha"), nn.GELU: ("gelu", "approximate"), nn.SiLU: ("silu",),
    nn.Mish: ("mish",), nn.Softplus: ("softplus", "beta", "threshold"), nn.Sigmoid: ("sigmoid",),
    nn.Tanh: ("tanh",), nn.Hardtanh: ("hardtanh", "min_val", "max_val"), nn.Hardswish: ("hardswish",),
    nn.Hardsigmoid: ("hardsigmoid",), nn.LogSigmoid: ("logsigmoid",), nn.Softsign: ("softsign",),
    nn.Tanhshrink: ("tanhshrink",), nn.Softmax: ("softmax", "dim"), nn.LogSoftmax: ("log_softmax", "dim"),
}  # fmt: skip

MODULE_OPS: dict[type, Callable[..., Any]] = {
    nn.Linear: _m_linear, nn.Bilinear: _m_bilinear, nn.Conv1d: _m_conv, nn.Conv2d: _m_conv,
    nn.ConvTranspose1d: _m_conv_transpose, nn.ConvTranspose2d: _m_conv_transpose,
    nn.MaxPool1d: _module(_max_pool(1), *_MAX_POOL), nn.MaxPool2d: _module(_max_pool(2), *_MAX_POOL),
    nn.AvgPool1d: _module(_avg_pool(1), *_AVG_POOL),
    nn.AvgPool2d: _module(_avg_pool(2), *_AVG_POOL, "divisor_override"),
    nn.AdaptiveAvgPool1d: _module(_adaptive_avg_pool(1), "output_size"),
    nn.AdaptiveAvgPool2d: _module(_adaptive_avg_pool(2), "output_size"),
    nn.BatchNorm1d: _m_batch_norm, nn.BatchNorm2d: _m_batch_norm, nn.LayerNorm: _m_layer_norm,
    nn.GroupNorm: _m_group_norm, nn.Dropout: _m_dropout, nn.Dropout1d: _m_dropout, nn.Dropout2d: _m_dropout,
    nn.AlphaDropout: _m_dropout, nn.FeatureAlphaDropout: _m_dropout, nn.Embedding: _m_embedding,
    nn.Flatten: _module(_flatten, "start_dim", "end_dim"), nn.Unflatten: _module(_unflatten, "dim", "unflattened_size"),
    nn.Identity: lambda b, m, path, x, *a, **k: x,
    nn.PReLU: lambda b, m, path, x: _prelu(b, x, b.attr(f"{path}.weight")),
    **{t: _module(_ACTIVATIONS[f], *attrs) for t, (f, *attrs) in _ACTIVATION_MODULES.items()},
}  # fmt: skip
