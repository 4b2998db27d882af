"""ATen emitters of linear algebra and neural-network layers: matrix products (mm, addmm, linear,
einsum-like ``_trilinear``), convolution, pooling, batch/layer/group norm, embedding, scaled dot-product
attention, upsampling, and dropout and random sampling (refused outside eval mode).

These map one torch layer to one dualjac rule where one exists, and spell out torch's exact
semantics where it differs (padding rows of embeddings, attention masks, interpolation weights).
``aten.py`` merges ``OPS`` into ``ATEN_OPS``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from .. import static
from .aten_reductions import safe_softmax


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


# torch.linalg's *_ex ops: (result, ..., info); info feeds only the error check, which NumPy does itself
def _inv_ex(b, a, check_errors=False):
    return b.emit("inv", a), None


def _cholesky_ex(b, a, upper=False, check_errors=False):
    low = b.emit("cholesky", a)
    if not upper:
        return low, None
    n = b.ndim(0)  # real input: the upper factor is the lower one transposed
    return b.emit("transpose", low, axes=tuple(range(n - 2)) + (n - 1, n - 2)), None


def _solve_ex(b, a, rhs, left=True, check_errors=False):
    if not left or b.ndim(1) != b.ndim(0):  # NumPy reads a vector right-hand side unlike torch
        raise b.unsupported(hint="torch.linalg.solve is lowered for left=True and B with A's number of axes")
    return b.emit("solve", a, rhs), None, None, None


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
    indices = b.emit(static.embedding_ids, indices, int(b.val(0).shape[0]))  # torch raises on a bad id
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
    return b.emit("matmul", safe_softmax(b, s, -1), v)


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


# matrix products and the layers export keeps whole
OPS: dict[str, Callable[..., Any]] = {
    # linear algebra and layers
    "aten.mm.default": _matmul, "aten.bmm.default": _matmul, "aten.matmul.default": _matmul,
    "aten.mv.default": _matmul, "aten.dot.default": _dot, "aten.addmm.default": _addmm,
    "aten.baddbmm.default": _addmm, "aten.linalg_inv_ex.default": _inv_ex,
    "aten.linalg_cholesky_ex.default": _cholesky_ex, "aten._linalg_solve_ex.default": _solve_ex,
    "aten.linear.default": _linear, "aten._trilinear.default": _trilinear,
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
