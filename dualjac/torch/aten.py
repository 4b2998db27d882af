"""The ATen op table: what each Core ATen op of an exported torch program becomes in a dualjac ``Graph``.

``ATEN_OPS`` maps an op overload's name (``"aten.addmm.default"``) to an *emitter* written
with ATen's signature: it receives the node's arguments with tensors replaced by graph
``Ref``s and appends ``rules.apply`` nodes through the ``Builder``. Torch names are
translated here, never in the rules; no derivative is written here. ``SYMBOLIC`` does the same
for the Python functions export records for shape arithmetic on a dynamic batch size
(``operator.mul`` on sizes, ``operator.getitem`` on multi-output ops): they become *static*
nodes, Python functions of values, never of tangents.

An op missing from the table, or one without a derivative (random sampling, in-place
accumulation), raises ``UnsupportedOpError`` naming the ATen op, the graph node, the module
path and the model's source line. The table covers the Core ATen ops where a derivative
makes sense plus the higher-level ops export keeps (``native_layer_norm``, ``convolution``,
``_native_batch_norm_legit_no_training``, ``max_pool2d_with_indices``, ``embedding``, ...).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from .. import static
from ..errors import UnsupportedOpError
from ..graph import Node, Ref
from ..numpy_api import pos_axes


# --- dtypes and arrays -------------------------------------------------------------------------
def numpy_dtype(dtype: torch.dtype) -> np.dtype:
    """torch's dtype as NumPy's (bfloat16, which NumPy lacks, as float32)."""
    if dtype == torch.bfloat16:
        return np.dtype(np.float32)
    return torch.empty((), dtype=dtype).numpy().dtype


def to_array(t: torch.Tensor, dtype: Any, backend: str) -> Any:
    """A tensor as a NumPy (or CuPy) array; floating ones converted to ``dtype`` when given."""
    t = t.detach().to("cpu")
    a = t.numpy() if t.dtype != torch.bfloat16 else t.float().numpy()
    if t.is_floating_point() and dtype is not None:
        a = a.astype(dtype)
    a = a.copy()
    if backend == "cupy":
        import cupy

        a = cupy.asarray(a)
    return a


def training_error(what: str) -> UnsupportedOpError:
    return UnsupportedOpError(
        f"{what} in training mode",
        "batch statistics and random dropout masks are not a fixed function of the input; "
        "call model.eval() before from_torch / check",
    )


def guard_meta(name: str) -> dict:
    return {"target": "input shape", "module": "", "source": ""}


# --- the builder --------------------------------------------------------------------------------
class Builder:
    """Collects Graph nodes while the exported program is walked; emitters call ``emit``."""

    def __init__(self, module: torch.nn.Module, what: str, dtype: Any, backend: str) -> None:
        self.module, self.what, self.dtype, self.backend = module, what, dtype, backend
        self.inputs: list[str] = []
        self.nodes: list[Node] = []
        self.node: Any = None  # the fx node being lowered
        self.meta: dict = {}
        self.owner, self.count, self.start = "", 0, 0

    def begin(self, node: Any, meta: dict, owner: str = "") -> None:
        self.node, self.meta, self.owner, self.count, self.start = node, meta, owner, 0, len(self.nodes)

    def emit(self, op: str | Callable[..., Any], *args: Any, **params: Any) -> Ref:
        """Append ``apply(op, *args, **params)`` (``op`` a callable: a static node) as ``<fx name>.<k>``."""
        self.count += 1
        name = f"{self.node.name}.{self.count}"
        self.nodes.append(Node(name, op, args, params, self.meta))
        return Ref("node", name)

    def finish(self, out: Any) -> Any:
        """Name the node holding the fx node's value after the fx node."""
        if not (isinstance(out, Ref) and out.kind == "node"):
            return out
        for i in range(self.start, len(self.nodes)):
            if self.nodes[i].name == out.name:
                new = Ref("node", self.node.name)
                for j in range(i, len(self.nodes)):
                    n = self.nodes[j]
                    name = new.name if j == i else n.name
                    args, params = _rename(n.args, out, new), _rename(n.params, out, new)
                    self.nodes[j] = n._replace(name=name, args=args, params=params)
                return new
        return out

    def val(self, i: int = -1) -> Any:
        """The example value (a FakeTensor) of argument ``i`` of the current node; -1: of its output."""
        if i < 0:
            return self.node.meta.get("val")
        a = self.node.args[i]
        return a.meta.get("val") if isinstance(a, torch.fx.Node) else a

    def ndim(self, i: int = 0) -> int:
        return self.val(i).dim()

    def out_dtype(self) -> np.dtype:
        """The current node's output dtype as the graph computes it (floats: ``dtype`` if given)."""
        t = self.val(-1).dtype
        return self.float_dtype(t)

    def float_dtype(self, t: torch.dtype) -> np.dtype:
        return self.dtype if t.is_floating_point and self.dtype is not None else numpy_dtype(t)

    def unsupported(self, what: str = "", hint: str = "") -> UnsupportedOpError:
        m = self.meta
        where = f"graph node '{self.node.name}'" if self.node is not None else self.what
        if m.get("module"):
            where += f" in module '{m['module']}'" + (f" ({self.owner})" if self.owner else "")
        else:
            where += f" in the top module ({self.what})"
        if m.get("source"):
            where += f", called at {m['source']}"
        return UnsupportedOpError(
            f"{what or 'ATen op ' + m.get('target', '?')} at {where}",
            hint
            or "dualjac/torch/aten.py has no entry for this Core ATen op; rewrite this step of forward with "
            "supported torch operations, or add an emitter to ATEN_OPS",
        )

    def training(self, what: str) -> UnsupportedOpError:
        e = training_error(f"{what} at graph node '{self.node.name}' (module '{self.meta.get('module', '')}')")
        return e


def _rename(a: Any, old: Ref, new: Ref) -> Any:
    t = type(a)
    if t is Ref:
        return new if a == old else a
    if t is tuple or t is list:
        return t(_rename(x, old, new) for x in a)
    if t is dict:
        return {k: _rename(v, old, new) for k, v in a.items()}
    if t is slice:
        return slice(_rename(a.start, old, new), _rename(a.stop, old, new), _rename(a.step, old, new))
    return a


def lower_node(b: Builder, target: Any, args: tuple, kwargs: dict) -> Any:
    """Emit the graph nodes of one fx node: its ATen op's (or Python function's) emitter."""
    emit = ATEN_OPS.get(str(target)) if isinstance(target, torch._ops.OpOverload) else SYMBOLIC.get(target)
    if emit is None:
        if isinstance(target, torch._ops.OpOverload):
            raise b.unsupported()
        raise b.unsupported(f"the Python function {getattr(target, '__name__', target)!r}")
    return emit(b, *args, **kwargs)


# --- static helpers: Python functions of values (shapes, indices, masks) -----------------------
def _key(dim: int, k: Any) -> tuple:
    """An indexing key taking ``k`` along axis ``dim`` (nonnegative) and everything elsewhere."""
    return (slice(None),) * dim + (k,)


def _axis(b: Builder, dim: int, i: int = 0, extra: int = 0) -> int:
    return pos_axes(dim, max(b.ndim(i) + extra, 1))[0]


def _is_ref(*xs: Any) -> bool:
    return any(isinstance(x, Ref) for x in xs)


def _static(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A Python function of sizes or masks: computed now when every argument is known, else a static node."""

    def emit(b, *args, **kwargs):
        if _is_ref(*args, *kwargs.values()) or any(isinstance(a, (tuple, list)) and _is_ref(*a) for a in args):
            return b.emit(fn, *args, **kwargs)
        return fn(*args, **kwargs)

    return emit


# --- emitters: ATen signatures in, Graph nodes out ---------------------------------------------
def _unary(op: str, **settings: Any) -> Callable[..., Any]:
    def emit(b, x, *args, **kwargs):
        return b.emit(op, x, **{**settings, **dict(zip(settings, args)), **kwargs})

    return emit


def _binary(op: str) -> Callable[..., Any]:
    def emit(b, x, y, alpha=1):
        if alpha != 1:
            y = b.emit("multiply", y, alpha)
        return b.emit(op, x, y)

    return emit


def _rsub(b, x, y, alpha=1):  # y - alpha * x
    return b.emit("subtract", y, b.emit("multiply", x, alpha) if alpha != 1 else x)


def _div_mode(b, x, y, rounding_mode=None):
    if rounding_mode == "floor":
        return b.emit("floor_divide", x, y)
    if rounding_mode == "trunc":
        return b.emit("trunc", b.emit("divide", x, y))
    return b.emit("divide", x, y)


def _pow_scalar(b, base, exponent):
    return b.emit("power", base, exponent)


def _rsqrt(b, x):
    return b.emit("reciprocal", b.emit("sqrt", x))


def _clamp(b, x, min=None, max=None):
    return b.emit("clip", x, min, max)


def _elu(b, x, alpha=1.0, scale=1.0, input_scale=1.0):
    if input_scale == 1:
        y = b.emit("elu", x, alpha=alpha)
        return y if scale == 1 else b.emit("multiply", y, scale)
    # celu: x > 0 ? scale*x : scale*alpha*(exp(x*input_scale) - 1), with torch's branch at 0
    neg = b.emit("multiply", b.emit("expm1", b.emit("multiply", x, input_scale)), scale * alpha)
    return b.emit("where", b.emit("greater", x, 0), b.emit("multiply", x, scale) if scale != 1 else x, neg)


def _prelu_kernel(b, x, w):
    # torch's jvp takes the x branch at 0, as the prelu rule does
    return b.emit("where", b.emit("greater_equal", x, 0), x, b.emit("multiply", w, x))


def _log_sigmoid_forward(b, x):
    return b.emit("log_sigmoid", x), None


def _where(b, cond, x, y):
    return b.emit("where", cond, x, y)


def _masked_fill(b, x, mask, value):
    return b.emit("where", mask, value, x)


def _logical(fn: Callable[..., Any]) -> Callable[..., Any]:
    return lambda b, *args: b.emit(fn, *args)


def _dims(dim: Any) -> Any:
    if dim is None or (isinstance(dim, (list, tuple)) and not dim):
        return None
    return tuple(dim) if isinstance(dim, (list, tuple)) else dim


def _reduction(op: str) -> Callable[..., Any]:
    def emit(b, x, dim=None, keepdim=False, dtype=None):
        return b.emit(op, x, axis=_dims(dim), keepdims=bool(keepdim))

    return emit


def _full_reduction(op: str) -> Callable[..., Any]:
    return lambda b, x, dtype=None: b.emit(op, x, axis=None, keepdims=False)


def _extremum_dim(arg: str) -> Callable[..., Any]:
    """``max.dim``: (values, indices); the values gathered at torch's index, so ties follow torch."""

    def emit(b, x, dim, keepdim=False):
        d = _axis(b, dim)
        idx = b.emit(static.arg_extremum, x, arg, d, True)
        values = b.emit("take_along_axis", x, idx, axis=d)
        if not keepdim:
            values, idx = b.emit("getitem", values, key=_key(d, 0)), b.emit(operator.getitem, idx, _key(d, 0))
        return values, idx

    return emit


def _arg(fn: str) -> Callable[..., Any]:
    return lambda b, x, dim=None, keepdim=False: b.emit(static.arg_extremum, x, fn, dim, bool(keepdim))


def _bool_reduction(fn: str) -> Callable[..., Any]:
    return lambda b, x, dim=None, keepdim=False: b.emit(static.reduce_bool, x, fn, _dims(dim), bool(keepdim))


def _var(op: str) -> Callable[..., Any]:
    def emit(b, x, dim=None, unbiased=None, keepdim=False, correction=None):
        ddof = correction if correction is not None else (0 if unbiased is False else 1)
        return b.emit(op, x, axis=_dims(dim), keepdims=bool(keepdim), ddof=ddof)

    return emit


def _cumulative(op: str) -> Callable[..., Any]:
    return lambda b, x, dim, dtype=None: b.emit(op, x, axis=dim)


def _var_mean(b, x, dim=None, correction=None, keepdim=False):
    return _var("var")(b, x, dim, correction=correction, keepdim=keepdim), _reduction("mean")(b, x, dim, keepdim)


def _sort(b, x, dim=-1, descending=False, stable=False):
    d = _axis(b, dim)
    idx = b.emit(static.argsort, x, d, bool(descending))  # stable, as torch's stable sort
    return b.emit("take_along_axis", x, idx, axis=d), idx


def _topk(b, x, k, dim=-1, largest=True, sorted=True):
    d = _axis(b, dim)
    idx = b.emit(static.first, b.emit(static.argsort, x, d, bool(largest)), d, k)
    return b.emit("take_along_axis", x, idx, axis=d), idx


def _diagonal(b, x, offset=0, dim1=0, dim2=1):
    a1, a2 = pos_axes((dim1, dim2), max(b.ndim(0), 1))
    return b.emit("diagonal", x, offset=offset, axis1=a1, axis2=a2)


def _logsumexp(b, x, dim, keepdim=False):
    return b.emit("logsumexp", x, axis=_dims(dim), keepdims=bool(keepdim))


def _vector_norm(b, x, ord=2, dim=None, keepdim=False, dtype=None):
    nd = b.ndim(0)
    dims = sorted(set(pos_axes(_dims(dim), max(nd, 1)))) if _dims(dim) is not None else list(range(nd))
    if len(dims) == 1:
        return b.emit("norm", x, ord=ord, axis=dims[0], keepdims=bool(keepdim))
    # several axes: move them last, flatten them into one, take one vector norm
    rest = [d for d in range(nd) if d not in dims]
    moved = b.emit("transpose", x, axes=tuple(rest + dims))
    flat = b.emit("reshape", moved, shape=b.emit(static.flat_last, moved, len(dims)))
    n = b.emit("norm", flat, ord=ord, axis=-1, keepdims=False)
    if not keepdim:
        return n
    return b.emit("getitem", n, key=tuple(None if d in dims else slice(None) for d in range(nd)))


def _softmax(op: str) -> Callable[..., Any]:
    return lambda b, x, dim, half_to_float=False: b.emit(op, x, axis=dim)


def _safe_softmax(b, x, dim, dtype=None):
    # torch: a row that is -inf everywhere (attention masked entirely) attends to nothing: 0, not NaN
    alive = b.emit(static.any_finite, x, dim)
    p = b.emit("softmax", b.emit("where", alive, x, 0.0), axis=dim)
    return b.emit("where", alive, p, 0.0)


# shapes
def _reshape(b, x, size):
    return b.emit("reshape", x, shape=tuple(size))


def _permute(b, x, dims):
    return b.emit("transpose", x, axes=tuple(dims))


def _t(b, x):
    return b.emit("transpose", x, axes=None)


def _transpose(b, x, dim0, dim1):
    order = list(range(b.ndim(0)))
    i, j = pos_axes((dim0, dim1), max(len(order), 1))
    if not order:
        return x
    order[i], order[j] = order[j], order[i]
    return b.emit("transpose", x, axes=tuple(order))


def _expand(b, x, size, implicit=False):
    size = tuple(size)
    if any(not isinstance(s, Ref) and s == -1 for s in size):
        in_shape = (1,) * (len(size) - b.ndim(0)) + tuple(b.val(0).shape)
        if all(isinstance(n, int) for n, s in zip(in_shape, size) if not isinstance(s, Ref) and s == -1):
            size = tuple(n if (not isinstance(s, Ref) and s == -1) else s for n, s in zip(in_shape, size))
        else:
            return b.emit("broadcast_to", x, shape=b.emit(static.expand_shape, x, size))
    return b.emit("broadcast_to", x, shape=size)


def _unsqueeze(b, x, dim):
    return b.emit("getitem", x, key=_key(_axis(b, dim, extra=1), None))


def _squeeze(b, x, dim=None):
    shape = tuple(b.val(0).shape)
    dims = tuple(range(len(shape))) if dim is None else tuple(pos_axes(dim, max(len(shape), 1)))
    dims = tuple(d for d in dims if shape and shape[d] is not None and (not isinstance(shape[d], int) or shape[d] == 1))
    if any(not isinstance(shape[d], int) for d in dims):  # a dynamic size: squeezed when it is 1, as ATen does
        return b.emit("getitem", x, key=b.emit(static.squeeze_key, x, dims))
    if not dims:
        return x
    return b.emit("getitem", x, key=static.squeeze_key_for(shape, dims))


def _slice(b, x, dim=0, start=None, end=None, step=1):
    if start in (None, 0) and (end is None or (isinstance(end, int) and end >= 2**62)) and step == 1:
        return x
    return b.emit("getitem", x, key=_key(_axis(b, dim), slice(start, end, step)))


def _select(b, x, dim, index):
    return b.emit("getitem", x, key=_key(_axis(b, dim), index))


def _index(b, x, indices):
    return b.emit("getitem", x, key=tuple(slice(None) if i is None else i for i in indices))


def _index_select(b, x, dim, index):
    return b.emit("take", x, indices=index, axis=_axis(b, dim))


def _gather(b, x, dim, index, sparse_grad=False):
    return b.emit("take_along_axis", x, index, axis=_axis(b, dim))


def _cat(b, tensors, dim=0):
    vals = [a.meta["val"] if isinstance(a, torch.fx.Node) else a for a in b.node.args[0]]
    # torch skips 1-D empty tensors whatever the other shapes (a legacy rule; an empty cache does it)
    kept = [t for t, v in zip(tensors, vals) if not (v.dim() == 1 and v.shape[0] == 0)]
    nd = max(v.dim() for v in vals)
    return b.emit("concatenate", *kept, axis=pos_axes(dim, max(nd, 1))[0]) if len(kept) > 1 else kept[0]


def _stack(b, tensors, dim=0):
    return b.emit("stack", *tensors, axis=dim)


def _pieces(b, x, dim, sizes):
    d = _axis(b, dim)
    out, start = [], 0
    for n in sizes:
        out.append(b.emit("getitem", x, key=_key(d, slice(start, start + n))))
        start = start + n
    return tuple(out)


def _split_with_sizes(b, x, split_sizes, dim=0):
    if _is_ref(*split_sizes):
        raise b.unsupported(hint="split sizes that depend on the batch size are not supported")
    return _pieces(b, x, dim, split_sizes)


def _split(b, x, split_size, dim=0):
    sizes = [int(v.shape[_axis(b, dim)]) for v in b.val(-1)]
    return _pieces(b, x, dim, sizes)


def _unbind(b, x, dim=0):
    d = _axis(b, dim)
    return tuple(b.emit("getitem", x, key=_key(d, i)) for i in range(len(b.val(-1))))


def _flip(b, x, dims):
    flipped = set(pos_axes(tuple(dims), max(b.ndim(0), 1)))
    key = tuple(slice(None, None, -1) if d in flipped else slice(None) for d in range(b.ndim(0)))
    return b.emit("getitem", x, key=key)


def _roll(b, x, shifts, dims=()):
    return b.emit("roll", x, shift=tuple(shifts), axis=tuple(dims) if dims else None)


def _repeat(b, x, repeats):
    return b.emit("tile", x, reps=tuple(repeats))


def _pad_pairs(b, pad, nd):
    pairs = [(pad[2 * i], pad[2 * i + 1]) for i in range(len(pad) // 2)]
    if any(isinstance(p, Ref) or p < 0 for pair in pairs for p in pair):
        raise b.unsupported(hint="negative (cropping) or batch-dependent padding is not supported")
    return tuple([(0, 0)] * (nd - len(pairs)) + pairs[::-1])


def _constant_pad(b, x, pad, value=0):
    return b.emit("pad", x, pad_width=_pad_pairs(b, pad, b.ndim(0)), mode="constant", constant_values=value)


def _pad_mode(mode: str) -> Callable[..., Any]:
    return lambda b, x, padding: b.emit("pad", x, pad_width=_pad_pairs(b, padding, b.ndim(0)), mode=mode)


def _slice_scatter(b, x, src, dim=0, start=None, end=None, step=1):
    return b.emit("setitem", x, src, key=_key(_axis(b, dim), slice(start, end, step)))


def _select_scatter(b, x, src, dim, index):
    return b.emit("setitem", x, src, key=_key(_axis(b, dim), index))


def _index_put(b, x, indices, values, accumulate=False):
    if accumulate:
        raise b.unsupported(hint="index_put with accumulate=True (index_add) is not supported")
    return b.emit("setitem", x, values, key=tuple(slice(None) if i is None else i for i in indices))


def _identity(b, x, *args, **kwargs):
    return x


def _no_value(b, *args, **kwargs):
    return None


def _detach(b, x):
    return b.emit("stop_gradient", x)


def _alias(b, x):
    # export's functional graph writes x.detach() as alias(x), like x[...]: only the former stops gradients
    return _detach(b, x) if str(b.node.meta.get("original_aten")) == "aten.detach.default" else x


def _to_copy(b, x, dtype=None, **kwargs):
    src = b.val(0).dtype
    if dtype is None or dtype == src:
        return x
    if dtype.is_floating_point and src.is_floating_point:
        # with a dtype given (float64 in check), dualjac computes in it; without, it rounds as torch does
        # (Llama's RMSNorm computes in float32 whatever the model's dtype)
        return x if b.dtype is not None else b.emit("astype", x, dtype=numpy_dtype(dtype))
    if dtype.is_floating_point:  # integers or booleans to floats: a constant, in the graph's dtype
        return b.emit("astype", x, dtype=b.float_dtype(dtype))
    return b.emit(static.astype, x, numpy_dtype(dtype))  # to integers or booleans: no derivative


def _copy(b, x, src, non_blocking=False):
    return b.emit("broadcast_to", src, shape=b.emit(np.shape, x))


def _as_strided(b, x, size, stride, storage_offset=None):
    v = b.val(0)
    contiguous = [math.prod(size[i + 1 :]) for i in range(len(size))]
    if (
        not _is_ref(*size, *stride)
        and storage_offset in (None, 0)
        and v.is_contiguous()
        and math.prod(size) == v.numel()
        and all(s == c for s, c, n in zip(stride, contiguous, size) if n != 1)
    ):
        return b.emit("reshape", x, shape=tuple(size))
    raise b.unsupported(hint="as_strided is supported only as a plain view (a reshape of contiguous memory)")


def _tril(op: str) -> Callable[..., Any]:
    return lambda b, x, diagonal=0: b.emit(op, x, k=diagonal)


# creation (constants; their float dtype follows the graph's)
def _full_op(b, size, fill_value, **kwargs):
    return _static(static.full)(b, tuple(size), fill_value, b.out_dtype(), b.backend)


def _filled(value: float) -> Callable[..., Any]:
    return lambda b, size, **kwargs: _static(static.full)(b, tuple(size), value, b.out_dtype(), b.backend)


def _like(value: Any) -> Callable[..., Any]:
    def emit(b, x, fill_value=None, **kwargs):
        v = value if value is not None else fill_value
        return b.emit(static.full, b.emit(np.shape, x), v, b.out_dtype(), b.backend)

    return emit


def _new(value: Any) -> Callable[..., Any]:
    def emit(b, x, size, fill_value=None, **kwargs):
        v = value if value is not None else fill_value
        return _static(static.full)(b, tuple(size), v, b.out_dtype(), b.backend)

    return emit


def _fill(b, x, value):
    return b.emit(static.full, b.emit(np.shape, x), value, b.out_dtype(), b.backend)


def _scalar_tensor(b, s, **kwargs):
    return _static(static.full)(b, (), s, b.out_dtype(), b.backend)


def _arange_op(b, start, end=None, step=1, **kwargs):
    if end is None:
        start, end = 0, start
    return _static(static.arange)(b, start, end, step, b.out_dtype(), b.backend)


# linear algebra and layers
def _matmul(b, x, y):
    return b.emit("matmul", x, y)


def _addmm(b, bias, x, y, beta=1, alpha=1):
    prod = b.emit("matmul", x, y)
    if alpha != 1:
        prod = b.emit("multiply", prod, alpha)
    if beta == 0:
        return prod
    return b.emit("add", prod, bias if beta == 1 else b.emit("multiply", bias, beta))


def _linear(b, x, w, bias=None):
    return b.emit("linear", x, w, bias)


def _dot(b, x, y):
    return b.emit("dot", x, y)


_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _trilinear(b, i1, i2, i3, expand1, expand2, expand3, sumdim, unroll_dim=1):
    """``_trilinear``: each input gets size-1 axes at ``expand*``, the three are multiplied, ``sumdim`` summed."""
    n = b.ndim(0) + len(expand1)
    letters = _LETTERS[:n]
    subs = ["".join(c for i, c in enumerate(letters) if i not in set(e)) for e in (expand1, expand2, expand3)]
    out = "".join(c for i, c in enumerate(letters) if i not in set(sumdim))
    return b.emit("einsum", i1, i2, i3, subscripts=f"{subs[0]},{subs[1]},{subs[2]}->{out}")


def _convolution(b, x, w, bias, stride, padding, dilation, transposed, output_padding, groups):
    p = dict(stride=tuple(stride), padding=tuple(padding), dilation=tuple(dilation), groups=groups)
    if transposed:
        return b.emit("conv_transpose", x, w, bias, output_padding=tuple(output_padding), **p)
    if any(output_padding):
        raise b.unsupported(hint="a non-transposed convolution with output_padding is not supported")
    return b.emit("conv", x, w, bias, **p)


def _nd_tuple(v: Any, nd: int) -> tuple:
    v = tuple(v) if isinstance(v, (list, tuple)) else (v,)
    return v * nd if len(v) == 1 else v


def _max_pool(nd: int) -> Callable[..., Any]:
    def emit(b, x, kernel_size, stride=(), padding=0, dilation=1, ceil_mode=False):
        k = _nd_tuple(kernel_size, nd)
        out = b.emit(
            "max_pool", x, kernel_size=k, stride=_nd_tuple(stride, nd) if stride else k,
            padding=_nd_tuple(padding, nd), dilation=_nd_tuple(dilation, nd), ceil_mode=bool(ceil_mode),
        )  # fmt: skip
        return out, None  # the indices: no value in the graph (used only by max_unpool and backward)

    return emit


def _avg_pool(nd: int) -> Callable[..., Any]:
    def emit(b, x, kernel_size, stride=(), padding=0, ceil_mode=False, count_include_pad=True, divisor_override=None):
        if divisor_override is not None:
            raise b.unsupported(hint="avg_pool with divisor_override is not supported")
        k = _nd_tuple(kernel_size, nd)
        return b.emit(
            "avg_pool", x, kernel_size=k, stride=_nd_tuple(stride, nd) if stride else k,
            padding=_nd_tuple(padding, nd), ceil_mode=bool(ceil_mode), count_include_pad=bool(count_include_pad),
        )  # fmt: skip

    return emit


def _adaptive_avg_pool(nd: int) -> Callable[..., Any]:
    return lambda b, x, output_size: b.emit("adaptive_avg_pool", x, output_size=_nd_tuple(output_size, nd))


def _bn_no_training(b, x, weight, bias, mean, var, momentum, eps):
    return b.emit("batch_norm", x, mean, var, weight, bias, eps=eps), None, None


def _bn_legit(b, x, weight, bias, mean, var, training, momentum, eps):
    if training:
        raise b.training("batch_norm")
    return _bn_no_training(b, x, weight, bias, mean, var, momentum, eps)


def _bn_no_stats(b, x, weight, bias, training, momentum, eps):
    shape = tuple(b.val(0).shape)
    if shape[0] == 1:  # instance norm: torch views (B, C, ...) as (1, B*C, ...), one group per channel
        groups = shape[1] if isinstance(shape[1], int) else b.emit(static.size, x, 1)
        return b.emit("group_norm", x, weight, bias, num_groups=groups, eps=eps), None, None
    raise b.unsupported(
        hint="BatchNorm without running stats (track_running_stats=False) normalises with batch statistics; "
        "per-sample Jacobians are not defined"
    )


def _native_batch_norm(b, x, weight, bias, mean, var, training, momentum, eps):
    if training or mean is None:
        raise b.training("batch_norm")
    return _bn_no_training(b, x, weight, bias, mean, var, momentum, eps)


def _layer_norm(b, x, normalized_shape, weight=None, bias=None, eps=1e-5):
    return b.emit("layer_norm", x, weight, bias, normalized_shape=tuple(normalized_shape), eps=eps), None, None


def _group_norm(b, x, weight, bias, N, C, HxW, group, eps):
    return b.emit("group_norm", x, weight, bias, num_groups=group, eps=eps), None, None


def _embedding(b, weight, indices, padding_idx=-1, scale_grad_by_freq=False, sparse=False):
    rows = b.emit("take", weight, indices=indices, axis=0)
    if padding_idx is None or padding_idx < 0:
        return rows
    # torch: the padding row gets no gradient (it is not trained), wherever it is looked up
    at_padding = b.emit(static.padding_mask, indices, padding_idx)
    return b.emit("where", at_padding, b.emit("stop_gradient", rows), rows)


def _sdpa(b, q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
    """softmax(q kᵀ * scale + mask) v, torch's math reference; kept whole by ``lower`` (its decomposition
    to the CPU flash kernel gives outputs whose strides later views reject)."""
    if dropout_p:
        raise b.unsupported(hint="dropout_p > 0 draws a random mask; pass dropout_p=0.0 (in eval mode)")
    qv, kv = b.val(0), b.val(1)
    if enable_gqa and qv.shape[-3] != kv.shape[-3]:  # grouped-query attention: torch repeats k, v per group
        rep = qv.shape[-3] // kv.shape[-3]
        k, v = b.emit("repeat", k, repeats=rep, axis=-3), b.emit("repeat", v, repeats=rep, axis=-3)
    kt = b.emit("transpose", k, axes=tuple(range(kv.dim() - 2)) + (kv.dim() - 1, kv.dim() - 2))
    s = b.emit("multiply", b.emit("matmul", q, kt), scale if scale is not None else 1.0 / math.sqrt(qv.shape[-1]))
    masked = is_causal or attn_mask is not None
    if is_causal:
        s = b.emit("where", b.emit(static.causal_mask, q, k), s, -math.inf)
    if attn_mask is not None:
        node = b.node.kwargs.get("attn_mask", b.node.args[3] if len(b.node.args) > 3 else None)
        if node.meta["val"].dtype == torch.bool:
            s = b.emit("where", attn_mask, s, -math.inf)
        else:
            s = b.emit("add", s, attn_mask)
    if not masked:
        return b.emit("matmul", b.emit("softmax", s, axis=-1), v)
    return b.emit("matmul", _safe_softmax(b, s, -1), v)


def _interp_matrix(n_in: int, n_out: int, align_corners: bool, scale: float | None, dtype: Any) -> Any:
    """(n_out, n_in) weights of torch's linear interpolation along one axis (upsample_*linear*)."""
    dst = np.arange(n_out, dtype=np.float64)
    if align_corners:
        src = dst * ((n_in - 1) / (n_out - 1) if n_out > 1 else 0.0)
    else:
        r = 1.0 / scale if scale else n_in / n_out
        src = np.maximum((dst + 0.5) * r - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(int), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    lam = src - i0
    m = np.zeros((n_out, n_in))
    np.add.at(m, (np.arange(n_out), i0), 1 - lam)
    np.add.at(m, (np.arange(n_out), i1), lam)
    return m.astype(dtype)


def _nearest_index(n_in: int, n_out: int, scale: float | None) -> Any:
    r = 1.0 / scale if scale else n_in / n_out  # torch's nearest: floor(dst * r), clamped
    return np.minimum(np.floor(np.arange(n_out) * r).astype(np.int64), n_in - 1)


def _upsample_sizes(b, output_size, scale_factors, nd):
    spatial = tuple(b.val(0).shape[-nd:])
    if output_size is not None:
        return spatial, tuple(output_size), (None,) * nd
    return spatial, tuple(int(math.floor(n * s)) for n, s in zip(spatial, scale_factors)), tuple(scale_factors)


def _upsample_nearest(nd: int) -> Callable[..., Any]:
    def emit(b, x, output_size=None, scale_factors=None):
        spatial, out, scales = _upsample_sizes(b, output_size, scale_factors, nd)
        idx = [_nearest_index(n, o, s) for n, o, s in zip(spatial, out, scales)]
        key = (Ellipsis,) + tuple(i.reshape((-1,) + (1,) * (nd - 1 - k)) for k, i in enumerate(idx))
        return b.emit("getitem", x, key=key)

    return emit


def _upsample_linear(nd: int) -> Callable[..., Any]:
    """``upsample_{linear1d,bilinear2d,trilinear3d}``: one interpolation matrix per spatial axis (linear)."""

    def emit(b, x, output_size=None, align_corners=False, scale_factors=None):
        spatial, out, scales = _upsample_sizes(b, output_size, scale_factors, nd)
        dtype = b.float_dtype(b.val(0).dtype)
        mats = [_interp_matrix(n, o, align_corners, s, dtype) for n, o, s in zip(spatial, out, scales)]
        if b.backend == "cupy":
            mats = [static.namespace("cupy").asarray(m) for m in mats]
        src, dst = "xyz"[:nd], "XYZ"[:nd]
        subs = f"...{src}," + ",".join(f"{o}{i}" for o, i in zip(dst, src)) + f"->...{dst}"
        return b.emit("einsum", x, *mats, subscripts=subs)

    return emit


def _dropout(b, x, p, train):
    if train and p > 0:
        raise b.training("dropout")
    return x


def _native_dropout(b, x, p, train):
    return _dropout(b, x, p, train), None


def _random(b, *args, **kwargs):
    raise b.unsupported(hint="random sampling is not a fixed function of the input; call model.eval()")


# --- the tables --------------------------------------------------------------------------------
_UNARY = {
    "abs": "absolute", "neg": "negative", "exp": "exp", "exp2": "exp2", "expm1": "expm1", "log": "log",
    "log2": "log2", "log10": "log10", "log1p": "log1p", "sqrt": "sqrt", "reciprocal": "reciprocal", "sin": "sin",
    "cos": "cos", "tan": "tan", "sinh": "sinh", "cosh": "cosh", "tanh": "tanh", "asin": "arcsin",
    "acos": "arccos", "atan": "arctan", "asinh": "arcsinh", "acosh": "arccosh", "atanh": "arctanh",
    "sigmoid": "sigmoid", "relu": "relu", "silu": "silu", "mish": "mish", "hardswish": "hardswish",
    "hardsigmoid": "hardsigmoid", "erf": "erf", "sign": "sign", "floor": "floor", "ceil": "ceil", "round": "rint",
    "trunc": "trunc", "isnan": "isnan", "isinf": "isinf", "isfinite": "isfinite", "signbit": "signbit",
    "logical_not": "logical_not",
}  # fmt: skip
_BINARY = {
    "add": "add", "sub": "subtract", "mul": "multiply", "div": "divide", "maximum": "maximum",
    "minimum": "minimum", "fmax": "fmax", "fmin": "fmin", "atan2": "arctan2", "hypot": "hypot",
    "remainder": "remainder", "fmod": "fmod", "floor_divide": "floor_divide", "eq": "equal", "ne": "not_equal",
    "gt": "greater", "ge": "greater_equal", "lt": "less", "le": "less_equal", "logical_and": "logical_and",
    "logical_or": "logical_or", "logical_xor": "logical_xor",
}  # fmt: skip
_BITWISE = {"bitwise_not": np.invert, "bitwise_and": np.bitwise_and, "bitwise_or": np.bitwise_or,
            "bitwise_xor": np.bitwise_xor}  # fmt: skip



def _overloads(name: str, *candidates: str) -> list[str]:
    """The overloads among ``candidates`` that ``aten.<name>`` has (``add.Tensor``, ``add.Scalar``)."""
    return [o for o in candidates if o in getattr(torch.ops.aten, name).overloads()]


ATEN_OPS: dict[str, Callable[..., Any]] = {
    **{f"aten.{k}.default": _unary(v) for k, v in _UNARY.items()},
    **{f"aten.{k}.{o}": _binary(v) for k, v in _BINARY.items() for o in _overloads(k, "Tensor", "Scalar", "default")},
    **{f"aten.{k}.{o}": _logical(f) for k, f in _BITWISE.items() for o in _overloads(k, "Tensor", "Scalar", "default")},
    "aten.rsub.Scalar": _rsub, "aten.rsub.Tensor": _rsub, "aten.div.Tensor_mode": _div_mode,
    "aten.div.Scalar_mode": _div_mode, "aten.pow.Tensor_Scalar": _pow_scalar, "aten.pow.Tensor_Tensor": _pow_scalar,
    "aten.pow.Scalar": _pow_scalar, "aten.rsqrt.default": _rsqrt, "aten.where.self": _where,
    "aten.clamp.default": _clamp, "aten.clamp.Tensor": _clamp,
    "aten.clamp_min.default": lambda b, x, min: _clamp(b, x, min, None),
    "aten.clamp_max.default": lambda b, x, max: _clamp(b, x, None, max),
    "aten.masked_fill.Scalar": _masked_fill, "aten.masked_fill.Tensor": _masked_fill,
    # activations
    "aten.gelu.default": _unary("gelu", approximate="none"), "aten.elu.default": _elu,
    "aten.hardtanh.default": _unary("hardtanh", min_val=-1.0, max_val=1.0),
    "aten.leaky_relu.default": _unary("leaky_relu", negative_slope=0.01),
    "aten.softplus.default": _unary("softplus", beta=1.0, threshold=20.0),
    "aten.log_sigmoid_forward.default": _log_sigmoid_forward, "aten._prelu_kernel.default": _prelu_kernel,
    "aten.prelu.default": _prelu_kernel,
    "aten._softmax.default": _softmax("softmax"), "aten._log_softmax.default": _softmax("log_softmax"),
    "aten._safe_softmax.default": _safe_softmax,
    # reductions
    "aten.sum.default": _full_reduction("sum"), "aten.sum.dim_IntList": _reduction("sum"),
    "aten.mean.default": _full_reduction("mean"), "aten.mean.dim": _reduction("mean"),
    "aten.prod.default": _full_reduction("prod"), "aten.prod.dim_int": _reduction("prod"),
    "aten.amax.default": _reduction("amax"), "aten.amin.default": _reduction("amin"),
    "aten.max.default": _full_reduction("amax"), "aten.min.default": _full_reduction("amin"),
    "aten.max.dim": _extremum_dim("argmax"), "aten.min.dim": _extremum_dim("argmin"),
    "aten.argmax.default": _arg("argmax"), "aten.argmin.default": _arg("argmin"),
    "aten.any.default": _bool_reduction("any"), "aten.any.dim": _bool_reduction("any"),
    "aten.any.dims": _bool_reduction("any"), "aten.all.default": _bool_reduction("all"),
    "aten.all.dim": _bool_reduction("all"), "aten.all.dims": _bool_reduction("all"),
    "aten.var.correction": _var("var"), "aten.var.dim": _var("var"), "aten.std.correction": _var("std"),
    "aten.std.dim": _var("std"), "aten.cumsum.default": _cumulative("cumsum"),
    "aten.cumprod.default": _cumulative("cumprod"), "aten.logsumexp.default": _logsumexp,
    "aten.linalg_vector_norm.default": _vector_norm, "aten.var_mean.correction": _var_mean,
    "aten.sort.default": _sort, "aten.sort.stable": _sort, "aten.topk.default": _topk,
    "aten.diagonal.default": _diagonal,
    # shapes and indexing
    "aten.view.default": _reshape, "aten._unsafe_view.default": _reshape, "aten.reshape.default": _reshape,
    "aten.permute.default": _permute, "aten.t.default": _t, "aten.transpose.int": _transpose,
    "aten.expand.default": _expand, "aten.unsqueeze.default": _unsqueeze, "aten.squeeze.default": _squeeze,
    "aten.squeeze.dim": _squeeze, "aten.squeeze.dims": _squeeze, "aten.slice.Tensor": _slice,
    "aten.select.int": _select, "aten.index.Tensor": _index, "aten._unsafe_index.Tensor": _index,
    "aten.index_select.default": _index_select,
    "aten.gather.default": _gather, "aten.cat.default": _cat, "aten.stack.default": _stack,
    "aten.split_with_sizes.default": _split_with_sizes, "aten.split.Tensor": _split, "aten.unbind.int": _unbind,
    "aten.flip.default": _flip, "aten.roll.default": _roll, "aten.repeat.default": _repeat,
    "aten.constant_pad_nd.default": _constant_pad, "aten.reflection_pad1d.default": _pad_mode("reflect"),
    "aten.reflection_pad2d.default": _pad_mode("reflect"), "aten.reflection_pad3d.default": _pad_mode("reflect"),
    "aten.replication_pad1d.default": _pad_mode("edge"), "aten.replication_pad2d.default": _pad_mode("edge"),
    "aten.replication_pad3d.default": _pad_mode("edge"), "aten.slice_scatter.default": _slice_scatter,
    "aten.select_scatter.default": _select_scatter, "aten.index_put.default": _index_put,
    "aten.as_strided.default": _as_strided, "aten.tril.default": _tril("tril"), "aten.triu.default": _tril("triu"),
    "aten.clone.default": _identity, "aten.alias.default": _alias, "aten.lift_fresh_copy.default": _identity,
    "aten.contiguous.default": _identity, "aten.detach.default": _detach, "aten._to_copy.default": _to_copy,
    "aten.copy.default": _copy, "aten._assert_tensor_metadata.default": _no_value,
    "aten._assert_scalar.default": _no_value, "aten.sym_constrain_range_for_size.default": _no_value,
    "aten.sym_constrain_range.default": _no_value, "aten._assert_async.msg": _no_value,
    "aten.sym_size.int": _static(static.size), "aten.sym_numel.default": _static(static.numel),
    # creation
    "aten.full.default": _full_op, "aten.zeros.default": _filled(0), "aten.ones.default": _filled(1),
    "aten.empty.memory_format": _filled(0),
    "aten.empty_strided.default": lambda b, size, stride, **k: _filled(0)(b, size),
    "aten.full_like.default": _like(None), "aten.zeros_like.default": _like(0), "aten.ones_like.default": _like(1),
    "aten.empty_like.default": _like(0), "aten.new_zeros.default": _new(0), "aten.new_ones.default": _new(1),
    "aten.new_empty.default": _new(0), "aten.new_full.default": _new(None), "aten.fill.Scalar": _fill,
    "aten.scalar_tensor.default": _scalar_tensor, "aten.arange.default": _arange_op,
    "aten.arange.start": _arange_op, "aten.arange.start_step": _arange_op,
    # linear algebra and layers
    "aten.mm.default": _matmul, "aten.bmm.default": _matmul, "aten.matmul.default": _matmul,
    "aten.mv.default": _matmul, "aten.dot.default": _dot, "aten.addmm.default": _addmm,
    "aten.baddbmm.default": _addmm, "aten.linear.default": _linear, "aten._trilinear.default": _trilinear,
    "aten.convolution.default": _convolution,
    "aten.max_pool1d_with_indices.default": _max_pool(1), "aten.max_pool2d_with_indices.default": _max_pool(2),
    "aten.avg_pool1d.default": _avg_pool(1),
    "aten.avg_pool2d.default": _avg_pool(2),  # 3-D pooling: the pooling rules are 1-D and 2-D
    "aten.adaptive_avg_pool1d.default": _adaptive_avg_pool(1),
    "aten._adaptive_avg_pool2d.default": _adaptive_avg_pool(2),
    "aten._native_batch_norm_legit_no_training.default": _bn_no_training,
    "aten._native_batch_norm_legit.default": _bn_legit, "aten._native_batch_norm_legit.no_stats": _bn_no_stats,
    "aten._native_batch_norm_legit_functional.default": _bn_legit,
    "aten.native_batch_norm.default": _native_batch_norm, "aten.native_layer_norm.default": _layer_norm,
    "aten.native_group_norm.default": _group_norm, "aten.embedding.default": _embedding,
    "aten.upsample_nearest1d.vec": _upsample_nearest(1), "aten.upsample_nearest2d.vec": _upsample_nearest(2),
    "aten.upsample_nearest3d.vec": _upsample_nearest(3), "aten.upsample_linear1d.vec": _upsample_linear(1),
    "aten.upsample_bilinear2d.vec": _upsample_linear(2), "aten.upsample_trilinear3d.vec": _upsample_linear(3),
    "aten.scaled_dot_product_attention.default": _sdpa, "aten.native_dropout.default": _native_dropout,
    "aten.dropout.default": _dropout,
    "aten.bernoulli.p": _random, "aten.bernoulli.default": _random, "aten.rand.default": _random,
    "aten.randn.default": _random, "aten.rand_like.default": _random, "aten.randn_like.default": _random,
}  # fmt: skip


def _symbolic(fn: Callable[..., Any]) -> Callable[..., Any]:
    return _static(fn)


def _getitem(b, x, i):
    if isinstance(x, (tuple, list)):
        return x[i]
    return _static(operator.getitem)(b, x, i)


SYMBOLIC: dict[Any, Callable[..., Any]] = {
    operator.getitem: _getitem,
    **{
        f: _symbolic(f)
        for f in (
            operator.add, operator.sub, operator.mul, operator.truediv, operator.floordiv, operator.mod,
            operator.neg, operator.pow, operator.eq, operator.ne, operator.lt, operator.le, operator.gt,
            operator.ge, operator.and_, operator.or_, math.sqrt, math.ceil, math.floor,
        )
    },
    torch.sym_float: _symbolic(float), torch.sym_int: _symbolic(int), torch.sym_max: _symbolic(max),
    torch.sym_min: _symbolic(min), torch.sym_not: _symbolic(operator.not_),
}  # fmt: skip
