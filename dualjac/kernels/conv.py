"""Convolution and pooling numerics: im2col windows, the grouped GEMM, padding and pooling geometry.

Forward numerics only, no derivatives: ``dualjac/rules/nn.py`` builds the conv, conv_transpose and
pooling rules from these, and reverse mode (``dualjac/tape.py``) builds conv's transpose from them.
They take NumPy or CuPy arrays, and lower-level Duals under nested transforms (``nested``), which
reach the rules again through NumPy calls.
"""

from __future__ import annotations

import math
import numbers

from ..dual import Dual
from ..errors import UnsupportedOpError


def as_tuple(v, nd, what):
    if isinstance(v, numbers.Integral):
        return (int(v),) * nd
    v = tuple(int(a) for a in v)
    if len(v) == 1:
        return v * nd
    if len(v) != nd:
        raise ValueError(f"{what} {v} does not match {nd} spatial dimension(s)")
    return v


def pad_spatial(xp, x, pairs, value=0.0):
    """Pad (or, for negative amounts, crop) the last ``len(pairs)`` axes by ``(before, after)`` pairs."""
    nd = len(pairs)
    if any(p < 0 for pair in pairs for p in pair):
        x = x[(Ellipsis,) + tuple(slice(max(-a, 0), x.shape[i - nd] - max(-b, 0)) for i, (a, b) in enumerate(pairs))]
        pairs = tuple((max(a, 0), max(b, 0)) for a, b in pairs)
    if not any(a or b for a, b in pairs):
        return x
    return xp.pad(x, ((0, 0),) * (x.ndim - nd) + tuple(pairs), mode="constant", constant_values=value)


def windows(xp, x, k, stride, pairs, dilation, value=0.0, out=None):
    """Sliding windows over the last ``nd = len(k)`` axes of (padded) x: a view of shape
    ``(*lead, *out, *k)``. ``out`` (sizes) defaults to all complete windows."""
    nd = len(k)
    x = pad_spatial(xp, x, pairs, value)
    keff = tuple(d * (n - 1) + 1 for d, n in zip(dilation, k))
    if out is None:
        out = tuple((x.shape[x.ndim - nd + i] - keff[i]) // stride[i] + 1 for i in range(nd))
    if any(o <= 0 for o in out):
        raise ValueError(f"the kernel (effective size {keff}) is larger than the padded input {x.shape[-nd:]}")
    if nested(x):
        return windows_by_offsets(xp, x, k, stride, dilation, out)
    w = xp.lib.stride_tricks.sliding_window_view(x, keff, axis=tuple(range(x.ndim - nd, x.ndim)))
    lead = (slice(None),) * (x.ndim - nd)
    outs = tuple(slice(0, o * s, s) for o, s in zip(out, stride))
    return w[lead + outs + tuple(slice(None, None, d) for d in dilation)]


def nested(x):
    """Whether x is a lower-level Dual (nested transforms), which only NumPy functions reach."""
    return type(x) is Dual


def slabs(x, k, stride, dilation, out):
    """For each kernel offset (row-major), the strided slice of x that it sees in every window."""
    offsets = [()]
    for n in k:
        offsets = [o + (i,) for o in offsets for i in range(n)]
    for off in offsets:
        idx = tuple(slice(i * d, i * d + (o - 1) * s + 1, s) for i, d, o, s in zip(off, dilation, out, stride))
        yield x[(Ellipsis,) + idx]


def windows_by_offsets(xp, x, k, stride, dilation, out):
    """``windows`` from supported ops only (the slices of ``slabs``, stacked): the path for a
    lower-level Dual under nested transforms, which sliding_window_view cannot take."""
    parts = list(slabs(x, k, stride, dilation, out))
    return xp.stack(parts, axis=-1).reshape(tuple(x.shape[: x.ndim - len(k)]) + tuple(out) + tuple(k))


def im2col(xp, x, k, stride, pairs, dilation, groups):
    """im2col: x (B, C, *S) to columns (B, G, C/G * prod(k), P) and the output sizes (P = prod(out))."""
    return window_cols(xp, windows(xp, x, k, stride, pairs, dilation), groups)


def window_cols(xp, w, groups):
    """im2col of ``windows`` (B, C, *out, *k): columns (B, G, C/G * prod(k), P) and out."""
    nd = (w.ndim - 2) // 2
    out = w.shape[2 : 2 + nd]
    B = w.shape[0]
    perm = (0, 1) + tuple(range(2 + nd, 2 + 2 * nd)) + tuple(range(2, 2 + nd))  # (B, C, *k, *out)
    cols = xp.transpose(w, perm).reshape(B, groups, -1, math.prod(out))
    return cols, out


def gemm(xp, w, cols, groups, out):
    """Weights (*L, O, C/G, *k) times columns (B, G, C/G*prod(k), P): (*L, B, O, *out) in one matmul."""
    nd = len(out)
    L, n_out = w.shape[: -nd - 2], w.shape[-nd - 2]
    wm = w.reshape(L + (1, groups, n_out // groups, -1))  # (*L, 1, G, O/G, C/G*prod(k))
    y = xp.matmul(wm, cols)  # (*L, B, G, O/G, P)
    return y.reshape(L + (cols.shape[0], n_out) + tuple(out))


def unchanged(v):
    return v


def conv_params(x, w, stride, padding, dilation):
    """conv's plan ``(x_in, w_in, k, stride, pairs, dilation)``: the conv of ``x_in(x)`` with ``w_in(w)``
    (here x and w as they are) with these kernel sizes, strides, padding pairs and dilations."""
    nd = w.ndim - 2
    if nd not in (1, 2):
        raise UnsupportedOpError(f"conv with {nd} spatial dimensions", "conv supports 1-D and 2-D convolutions")
    if x.ndim not in (nd + 1, nd + 2):
        raise ValueError(f"conv: a {nd}-D convolution takes a ({nd + 1})- or ({nd + 2})-D input, not {x.shape}")
    k = tuple(w.shape[2:])
    stride, dilation = as_tuple(stride, nd, "stride"), as_tuple(dilation, nd, "dilation")
    if padding == "valid":
        pairs = ((0, 0),) * nd
    elif padding == "same":  # torch: total d(k-1), the odd one out goes after
        pairs = tuple((d * (n - 1) // 2, d * (n - 1) - d * (n - 1) // 2) for d, n in zip(dilation, k))
    else:
        pairs = tuple((p, p) for p in as_tuple(padding, nd, "padding"))
    return unchanged, unchanged, k, stride, pairs, dilation


def per_channel(b, ndim_after):
    """A per-channel vector (*L, C) shaped to broadcast along the channel axis: (*L, C, 1, ...)
    (``ndim_after <= 0``: as it is)."""
    return b.reshape(b.shape + (1,) * ndim_after)


COLS_BYTES = 1 << 20  # im2col columns built per GEMM: about 1 MiB, kept in cache


def conv_core(xp, x, w, k, stride, pairs, dilation, groups):
    """conv of a batched x (B, C, *S) with w (O, C/G, *k): (B, O, *out), in batch chunks
    whose im2col columns fit in cache (lanes folded into B make the full columns large)."""
    win = windows(xp, x, k, stride, pairs, dilation)  # (B, C, *out, *k), a view
    B = x.shape[0]
    n = B  # one chunk for Duals (nested transforms): they do not go into a preallocated array
    if not (nested(win) or nested(w)):
        n = max(1, COLS_BYTES // max(1, math.prod(win.shape[1:]) * x.dtype.itemsize))
    y = None
    for s in range(0, B, n):
        cols, out = window_cols(xp, win[s : s + n], groups)
        part = gemm(xp, w, cols, groups, out)
        if n >= B:
            return part
        if y is None:
            y = xp.empty((B,) + tuple(part.shape[1:]), dtype=part.dtype)
        y[s : s + n] = part
    return y


# conv_transpose is the adjoint of conv in x: spread x by the stride (zeros between), pad by
# d(k-1) - p on each side (+ output_padding after), and convolve with the flipped kernel whose
# in/out channels are swapped within each group.
def flip_weight(xp, w, groups, nd):
    """(*L, C_in, C_out/G, *k) to the conv weight (*L, C_out, C_in/G, *k), flipped in space."""
    L = w.shape[: w.ndim - nd - 2]
    cin, cog = w.shape[len(L)], w.shape[len(L) + 1]
    k = w.shape[len(L) + 2 :]
    v = w.reshape(L + (groups, cin // groups, cog) + k)
    v = xp.swapaxes(v, -nd - 1, -nd - 2).reshape(L + (groups * cog, cin // groups) + k)
    return v[(Ellipsis,) + (slice(None, None, -1),) * nd]


def spread(xp, x, stride):
    """Insert ``stride - 1`` zeros between neighbours along the last ``len(stride)`` axes."""
    nd = len(stride)
    for i, s in enumerate(stride):
        if s == 1:
            continue
        ax = x.ndim - nd + i
        n = x.shape[ax]
        x = xp.moveaxis(x, ax, -1)
        z = xp.zeros(tuple(x.shape), dtype=x.dtype)
        x = xp.stack([x] + [z] * (s - 1), axis=-1)  # (..., n, s): each value then s - 1 zeros
        x = x.reshape(tuple(x.shape[:-2]) + (n * s,))[..., : (n - 1) * s + 1]
        x = xp.moveaxis(x, -1, ax)
    return x


def convt_params(xp, w, stride, padding, output_padding, groups, dilation):
    """conv_transpose's plan (as ``conv_params``): a stride-1 conv of x spread by the stride with the
    flipped weight (the maps apply to tangents alike: both are linear)."""
    nd = w.ndim - 2
    if nd not in (1, 2):
        raise UnsupportedOpError(
            f"conv_transpose with {nd} spatial dimensions", "conv_transpose supports 1-D and 2-D convolutions"
        )
    k = tuple(w.shape[2:])
    stride, dilation = as_tuple(stride, nd, "stride"), as_tuple(dilation, nd, "dilation")
    pad, opad = as_tuple(padding, nd, "padding"), as_tuple(output_padding, nd, "output_padding")
    pairs = tuple((d * (n - 1) - p, d * (n - 1) - p + o) for d, n, p, o in zip(dilation, k, pad, opad))
    x_in = lambda v: spread(xp, v, stride)  # noqa: E731
    w_in = lambda v: flip_weight(xp, v, groups, nd)  # noqa: E731
    return x_in, w_in, k, (1,) * nd, pairs, dilation


def pool_params(x, kernel_size, stride, padding, dilation, ceil_mode):
    if isinstance(kernel_size, numbers.Integral) or len(kernel_size) not in (1, 2):
        raise ValueError(f"pooling: kernel_size must be a tuple of 1 or 2 ints (1-D or 2-D), not {kernel_size!r}")
    k = tuple(int(n) for n in kernel_size)
    nd = len(k)
    if x.ndim < nd:
        raise ValueError(f"pooling: a {nd}-D pool needs at least {nd} axes, not shape {x.shape}")
    stride = k if stride is None or (not isinstance(stride, numbers.Integral) and len(stride) == 0) else stride
    stride, pad = as_tuple(stride, nd, "stride"), as_tuple(padding, nd, "padding")
    dil = as_tuple(dilation, nd, "dilation")
    L = x.shape[x.ndim - nd :]
    out, pairs = [], []
    for n, kk, s, p, d in zip(L, k, stride, pad, dil):
        span = n + 2 * p - d * (kk - 1) - 1
        o = (-(-span // s) if ceil_mode else span // s) + 1
        if ceil_mode and (o - 1) * s >= n + p:  # torch: the last window must start inside input or left pad
            o -= 1
        extra = max(0, (o - 1) * s + d * (kk - 1) + 1 - (n + 2 * p))
        out.append(o)
        pairs.append((p, p + extra))
    return k, stride, tuple(pairs), dil, tuple(out)


def max_pool_windows(xp, x, kernel_size, stride, padding, dilation, ceil_mode):
    k, stride, pairs, dil, out = pool_params(x, kernel_size, stride, padding, dilation, ceil_mode)
    w = windows(xp, x, k, stride, pairs, dil, value=-math.inf, out=out)
    return w.reshape(w.shape[: x.ndim] + (-1,)), k, stride, pairs, dil, out  # (*lead, *out, prod(k))


def adaptive_matrix(xp, n, o, dtype):
    """(o, n) averaging matrix of torch's bins [floor(i n / o), ceil((i + 1) n / o))."""
    i = xp.arange(o)
    start, end = (i * n) // o, -((-(i + 1) * n) // o)
    j = xp.arange(n)
    inside = (j >= start[:, None]) & (j < end[:, None])
    return inside.astype(dtype) / (end - start)[:, None].astype(dtype)
