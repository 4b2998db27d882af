"""Reverse mode's whole-op tangent maps for conv and conv_transpose (``rules.SYMBOLIC``).

conv's rule computes its tangent with im2col, not with NumPy calls a ``Linear`` could record, so
for a symbolic ``dx`` the tangent is recorded as one node whose transpose is the other op
(conv <-> conv_transpose; a direct col2im for plain arrays). ``dualjac.transposes`` registers these;
they are separate because they lean on the conv kernels' geometry, not on the NumPy transposes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .rules import apply
from .tape import is_linear, record


def conv_symbolic(
    xp: Any,
    ans: Any,
    ts: Sequence[Any],
    x: Any,
    w: Any,
    b: Any = None,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
) -> Any:
    """conv's tangent when ``dx`` may be symbolic: ``conv(dx, w)`` as one node, plus the rule's own dw, db terms."""
    from .kernels.conv import conv_params
    from .rules import RULES

    dx, rest = ts[0], [None] + list(ts[1:])
    parts = []
    if any(t is not None for t in rest):  # dw, db: the rule's own (NumPy) numerics record them
        parts.append(RULES["conv"].joint(xp, ans, rest, x, w, b, stride, padding, dilation, groups))
    if dx is not None:
        if not is_linear(dx):
            parts.append(RULES["conv"].joint(xp, ans, [dx, None, None], x, w, None, stride, padding, dilation, groups))
        else:
            parts.append(_conv_x(dx, ans, x, w, stride, padding, dilation, groups, conv_params))
    out = parts[0]
    for p in parts[1:]:
        out = out + p
    return out


def _conv_x(dx, ans, x, w, stride, padding, dilation, groups, conv_params):
    """``conv(dx, w)`` recorded as one node; its transpose is ``conv_transpose`` with the same weight."""
    _, _, k, st, pairs, dil = conv_params(x, w, stride, padding, dilation)
    nd = len(k)
    osp = tuple(ans.shape[-nd:])
    xsp = tuple(x.shape[-nd:])
    # conv_transpose (no padding) gives (o - 1) s + d (k - 1) + 1 (+ output_padding) per axis: grow it to the
    # padded input, then crop the padding
    extra = tuple(
        n + a + b - ((o - 1) * s + d * (kk - 1) + 1) for n, (a, b), o, s, d, kk in zip(xsp, pairs, osp, st, dil, k)
    )
    crop = (Ellipsis,) + tuple(slice(a, a + n) for (a, _), n in zip(pairs, xsp))
    xs, shape = dx.shape, (1,) + tuple(ans.shape)

    def fwd(v):
        return apply("conv", v.reshape((-1,) + tuple(x.shape[-nd - 1 :])), w, None, stride=stride, padding=padding,
                     dilation=dilation, groups=groups).reshape(shape)  # fmt: skip

    def transpose(ct):
        c = ct.reshape((-1,) + tuple(ans.shape[-nd - 1 :]))  # cotangent lanes (and batch) are one batch axis
        if type(c) is np.ndarray and type(w) is np.ndarray:
            y = _col2im(c, w, k, st, pairs, dil, groups, xsp)
        else:  # a Dual cotangent or weight (nested transforms): conv_transpose, through the rules
            y = apply("conv_transpose", c, w, None, stride=st, padding=0, output_padding=extra, groups=groups,
                      dilation=dil)[crop]  # fmt: skip
        return (y.reshape(ct.shape[:1] + xs),)

    return record([dx], fwd, transpose, shape, dx.dtype, "conv")


def _col2im(c, w, k, stride, pairs, dil, groups, xsp):
    """The transpose of conv in x for a plain cotangent ``c`` (N, O, *out): ``cols = Wᵀ c`` (one GEMM
    per group), then each kernel offset's slab of cols added back where it was read from (col2im).
    Its columns have C·prod(k) rows, against O·prod(k) for conv_transpose's im2col."""
    N, O, out = c.shape[0], c.shape[1], c.shape[2:]  # noqa: E741
    C = w.shape[1] * groups
    # rows ordered (kernel offset, channel) so that each offset's slab of cols is contiguous
    wg = w.reshape((groups, O // groups, C // groups) + tuple(k))
    wt = np.moveaxis(wg, 1, -1).reshape(groups, C // groups, -1, O // groups)  # (G, C/G, prod(k), O/G)
    wt = np.swapaxes(wt, 1, 2).reshape(groups, -1, O // groups)  # (G, prod(k) * C/G, O/G)
    cols = np.matmul(wt, c.reshape(N, groups, O // groups, -1))  # (N, G, prod(k) * C/G, P)
    cols = cols.reshape((N, groups) + tuple(k) + (C // groups,) + tuple(out))
    padded = tuple(n + a + b for n, (a, b) in zip(xsp, pairs))
    y = np.zeros((N, C) + padded, dtype=cols.dtype)
    for off in np.ndindex(*k):
        idx = tuple(slice(i * d, i * d + (o - 1) * s + 1, s) for i, d, o, s in zip(off, dil, out, stride))
        y[(Ellipsis,) + idx] += cols[(slice(None), slice(None)) + off].reshape((N, C) + tuple(out))
    return y[(Ellipsis,) + tuple(slice(a, a + n) for (a, _), n in zip(pairs, xsp))]


def conv_transpose_symbolic(
    xp: Any,
    ans: Any,
    ts: Sequence[Any],
    x: Any,
    w: Any,
    b: Any = None,
    stride: Any = 1,
    padding: Any = 0,
    output_padding: Any = 0,
    groups: int = 1,
    dilation: Any = 1,
) -> Any:
    """conv_transpose's tangent when ``dx`` may be symbolic: its transpose is a conv of the padded cotangent."""
    from .kernels.conv import as_tuple, pad_spatial
    from .rules import RULES

    p = dict(stride=stride, padding=padding, output_padding=output_padding, groups=groups, dilation=dilation)
    dx, rest = ts[0], [None] + list(ts[1:])
    joint = RULES["conv_transpose"].joint
    parts = [joint(xp, ans, rest, x, w, b, **p)] if any(t is not None for t in rest) else []
    if dx is not None and not is_linear(dx):
        parts.append(joint(xp, ans, [dx, None, None], x, w, None, **p))
    elif dx is not None:
        nd = w.ndim - 2
        pad, opad = as_tuple(padding, nd, "padding"), as_tuple(output_padding, nd, "output_padding")
        st, dil = as_tuple(stride, nd, "stride"), as_tuple(dilation, nd, "dilation")
        xs, shape = dx.shape, (1,) + tuple(ans.shape)

        def fwd(v):
            return apply("conv_transpose", v.reshape((-1,) + tuple(x.shape[-nd - 1 :])), w, None, **p).reshape(shape)

        def transpose(ct):  # conv_transpose crops (p, p - o) from the full result: pad them back, then conv
            c = pad_spatial(
                np, ct.reshape((-1,) + tuple(ans.shape[-nd - 1 :])), tuple((a, a - o) for a, o in zip(pad, opad))
            )
            y = apply("conv", c, w, None, stride=st, padding=0, dilation=dil, groups=groups)
            return (y.reshape(ct.shape[:1] + xs),)

        parts.append(record([dx], fwd, transpose, shape, dx.dtype, "conv_transpose"))
    out = parts[0]
    for q in parts[1:]:
        out = out + q
    return out
