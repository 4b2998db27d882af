"""ATen emitters of the ops that move or create elements: views and reshapes, permutes, expand,
squeeze, slicing and indexing, gather, cat/stack/split, flips, padding, scatters into slices,
copies and dtype casts, and the creation ops (full, zeros, arange: constants of the graph).

Their common work is shape bookkeeping: torch's dims to NumPy axes, and batch-dependent sizes
(``Ref``s) kept as static nodes. ``aten.py`` merges ``OPS`` into ``ATEN_OPS``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from .. import static
from ..graph import Ref
from ..numpy_api import pos_axes
from .aten_builder import axis_of, is_ref, key_along, numpy_dtype, static_emitter


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
    return b.emit("getitem", x, key=key_along(axis_of(b, dim, extra=1), None))


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
    return b.emit("getitem", x, key=key_along(axis_of(b, dim), slice(start, end, step)))


def _select(b, x, dim, index):
    return b.emit("getitem", x, key=key_along(axis_of(b, dim), index))


def _index(b, x, indices):
    return b.emit("getitem", x, key=tuple(slice(None) if i is None else i for i in indices))


def _index_select(b, x, dim, index):
    return b.emit("take", x, indices=index, axis=axis_of(b, dim))


def _gather(b, x, dim, index, sparse_grad=False):
    return b.emit("take_along_axis", x, index, axis=axis_of(b, dim))


def _cat(b, tensors, dim=0):
    vals = [a.meta["val"] if isinstance(a, torch.fx.Node) else a for a in b.node.args[0]]
    # torch skips 1-D empty tensors whatever the other shapes (a legacy rule; an empty cache does it)
    kept = [t for t, v in zip(tensors, vals) if not (v.dim() == 1 and v.shape[0] == 0)]
    nd = max(v.dim() for v in vals)
    return b.emit("concatenate", *kept, axis=pos_axes(dim, max(nd, 1))[0]) if len(kept) > 1 else kept[0]


def _stack(b, tensors, dim=0):
    return b.emit("stack", *tensors, axis=dim)


def _pieces(b, x, dim, sizes):
    d = axis_of(b, dim)
    out, start = [], 0
    for n in sizes:
        out.append(b.emit("getitem", x, key=key_along(d, slice(start, start + n))))
        start = start + n
    return tuple(out)


def _split_with_sizes(b, x, split_sizes, dim=0):
    if is_ref(*split_sizes):
        raise b.unsupported(hint="split sizes that depend on the batch size are not supported")
    return _pieces(b, x, dim, split_sizes)


def _split(b, x, split_size, dim=0):
    sizes = [int(v.shape[axis_of(b, dim)]) for v in b.val(-1)]
    return _pieces(b, x, dim, sizes)


def _unbind(b, x, dim=0):
    d = axis_of(b, dim)
    return tuple(b.emit("getitem", x, key=key_along(d, i)) for i in range(len(b.val(-1))))


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
    return b.emit("setitem", x, src, key=key_along(axis_of(b, dim), slice(start, end, step)))


def _select_scatter(b, x, src, dim, index):
    return b.emit("setitem", x, src, key=key_along(axis_of(b, dim), index))


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
        not is_ref(*size, *stride)
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
    return static_emitter(static.full)(b, tuple(size), fill_value, b.out_dtype(), b.backend)


def _filled(value: float) -> Callable[..., Any]:
    return lambda b, size, **kwargs: static_emitter(static.full)(b, tuple(size), value, b.out_dtype(), b.backend)


def _like(value: Any) -> Callable[..., Any]:
    def emit(b, x, fill_value=None, **kwargs):
        v = value if value is not None else fill_value
        return b.emit(static.full, b.emit(np.shape, x), v, b.out_dtype(), b.backend)

    return emit


def _new(value: Any) -> Callable[..., Any]:
    def emit(b, x, size, fill_value=None, **kwargs):
        v = value if value is not None else fill_value
        return static_emitter(static.full)(b, tuple(size), v, b.out_dtype(), b.backend)

    return emit


def _fill(b, x, value):
    return b.emit(static.full, b.emit(np.shape, x), value, b.out_dtype(), b.backend)


def _scalar_tensor(b, s, **kwargs):
    return static_emitter(static.full)(b, (), s, b.out_dtype(), b.backend)


def _arange_op(b, start, end=None, step=1, **kwargs):
    if end is None:
        start, end = 0, start
    return static_emitter(static.arange)(b, start, end, step, b.out_dtype(), b.backend)


# views, indexing, joins, copies, and constants
OPS: dict[str, Callable[..., Any]] = {
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
    "aten.sym_size.int": static_emitter(static.size), "aten.sym_numel.default": static_emitter(static.numel),
    # creation
    "aten.full.default": _full_op, "aten.zeros.default": _filled(0), "aten.ones.default": _filled(1),
    "aten.empty.memory_format": _filled(0),
    "aten.empty_strided.default": lambda b, size, stride, **k: _filled(0)(b, size),
    "aten.full_like.default": _like(None), "aten.zeros_like.default": _like(0), "aten.ones_like.default": _like(1),
    "aten.empty_like.default": _like(0), "aten.new_zeros.default": _new(0), "aten.new_ones.default": _new(1),
    "aten.new_empty.default": _new(0), "aten.new_full.default": _new(None), "aten.fill.Scalar": _fill,
    "aten.scalar_tensor.default": _scalar_tensor, "aten.arange.default": _arange_op,
    "aten.arange.start": _arange_op, "aten.arange.start_step": _arange_op,
}  # fmt: skip
