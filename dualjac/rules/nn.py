"""Neural-network ops: activations, softmax, linear/conv layers, pooling, normalisation.

These are the ops the torch adapter lowers ``torch.nn`` modules to; kinks follow
torch's conventions (as ``torch.func.jvp`` computes them) so that
``dualjac.torch.check`` agrees with torch:

* ``relu'(0) = 0``, ``leaky_relu'(0) = negative_slope``, ``elu'(0) = alpha``,
  ``selu'(0) = scale * alpha``, ``celu'(0) = 1``, ``prelu'(0) = 1`` (the x branch);
* ``hardtanh`` passes no tangent at ``min_val`` or ``max_val``, ``hardsigmoid`` none at
  ``+-3``; ``hardswish = x * relu6(x + 3) / 6`` has derivative 0 at -3 and 1 at 3;
* ``softplus`` is linear only strictly above its threshold (``beta * x > threshold``);
* ``max_pool`` gathers the tangent at the first maximum of each window (row-major).

Layers are linear (or bilinear) maps, so their tangents are the same maps applied to
tangents. Convolution and pooling fold the lane axis into the batch axis, so the K lanes
are never looped over: convolution runs an im2col GEMM (``sliding_window_view`` +
``matmul``) per batch chunk whose columns fit in cache (``kconv.conv_core``), and pooling sums
window slabs (average) or gathers with ``take`` (max).
"""

from __future__ import annotations

import math
import numbers

from ..kernels import conv as kconv
from ..kernels import special as kspecial
from .table import as_dtype, defrule, lanes_to_rank, neg_axes, select, sum_parts

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def _act(name, primal, d):
    """An elementwise activation ``primal(xp, x, **p)`` with derivative ``d(xp, ans, x, **p)``."""
    defrule(name, primal=primal, factors=(d,))


def _act_select(name, primal, mask, factor=None):
    """An activation whose derivative is 0 off ``mask(xp, x, **p)``: a selection (an inf tangent
    there gives 0, as torch's threshold backward does), NaN where the result is NaN."""

    def jvp(xp, ans, dx, x, **p):
        d = dx if factor is None else factor(xp, ans, x, **p) * dx
        return select(xp, ans, mask(xp, x, **p), d, nan_where=ans)

    defrule(name, primal=primal, jvp=(jvp,), elementwise=True)


# --- erf / erfc (W. J. Cody's rational approximations, ~1e-16 relative in float64) ------


# d erf(x) = 2/sqrt(pi) exp(-x^2) dx (the torch adapter's aten.erf; NumPy has no erf ufunc)
_act("erf", lambda xp, x: 1 - kspecial.erfc(xp, x), lambda xp, ans, x: (2 / math.sqrt(math.pi)) * xp.exp(-x * x))


# --- activations (elementwise) ----------------------------------------------------------
def _sigmoid(xp, x):
    e = xp.exp(-xp.abs(x))  # never overflows
    return xp.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _softplus0(xp, x):
    """log(1 + e^x), stable for any x."""
    return xp.maximum(x, 0) + xp.log1p(xp.exp(-xp.abs(x)))


_act_select("relu", lambda xp, x: xp.maximum(x, 0), lambda xp, x: x > 0)
_act(
    "leaky_relu",
    lambda xp, x, negative_slope=0.01: xp.where(x > 0, x, negative_slope * x),
    lambda xp, ans, x, negative_slope=0.01: xp.where(x > 0, 1, negative_slope).astype(ans.dtype),
)
# elu = alpha (e^x - 1) for x <= 0: derivative alpha e^x = ans + alpha there
_act(
    "elu",
    lambda xp, x, alpha=1.0: xp.where(x > 0, x, alpha * xp.expm1(xp.minimum(x, 0))),
    lambda xp, ans, x, alpha=1.0: xp.where(x > 0, 1, ans + alpha).astype(ans.dtype),
)
_act(
    "celu",
    lambda xp, x, alpha=1.0: xp.where(x > 0, x, alpha * xp.expm1(xp.minimum(x, 0) / alpha)),
    lambda xp, ans, x, alpha=1.0: xp.where(x > 0, 1, xp.exp(xp.minimum(x, 0) / alpha)).astype(ans.dtype),
)
_act(
    "selu",
    lambda xp, x: SELU_SCALE * xp.where(x > 0, x, SELU_ALPHA * xp.expm1(xp.minimum(x, 0))),
    lambda xp, ans, x: xp.where(x > 0, SELU_SCALE, ans + SELU_SCALE * SELU_ALPHA).astype(ans.dtype),
)


def _gelu(xp, x, approximate="none"):
    if approximate == "tanh":  # x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
        return 0.5 * x * (1 + xp.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x * x * x)))
    if approximate != "none":
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', not {approximate!r}")
    return x * kspecial.ndtr(xp, x)


def _dgelu(xp, ans, x, approximate="none"):
    if approximate == "tanh":
        c = math.sqrt(2 / math.pi)
        t = xp.tanh(c * (x + 0.044715 * x * x * x))
        return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * c * (1 + 3 * 0.044715 * x * x)
    # d(x Phi(x)) = Phi(x) + x phi(x)
    return kspecial.ndtr(xp, x) + x * xp.exp(-0.5 * x * x) * (1 / math.sqrt(2 * math.pi))


_act("gelu", _gelu, _dgelu)
_act("sigmoid", _sigmoid, lambda xp, ans, x: ans * (1 - ans))
# silu = x s(x): derivative s (1 + x (1 - s))
_act(
    "silu",
    lambda xp, x: x * _sigmoid(xp, x),
    lambda xp, ans, x: (lambda s: s * (1 + x * (1 - s)))(_sigmoid(xp, x)),
)
# mish = x tanh(softplus x): derivative tanh(sp) + x s(x) (1 - tanh(sp)^2)
_act(
    "mish",
    lambda xp, x: x * xp.tanh(_softplus0(xp, x)),
    lambda xp, ans, x: (lambda t: t + x * _sigmoid(xp, x) * (1 - t * t))(xp.tanh(_softplus0(xp, x))),
)
_act(
    "softplus",
    lambda xp, x, beta=1.0, threshold=20.0: xp.where(x * beta > threshold, x, _softplus0(xp, beta * x) / beta),
    lambda xp, ans, x, beta=1.0, threshold=20.0: xp.where(x * beta > threshold, 1, _sigmoid(xp, beta * x)).astype(
        ans.dtype
    ),
)
# log s(x) = min(x, 0) - log(1 + e^-|x|): derivative 1 - s(x) = s(-x)
_act(
    "log_sigmoid",
    lambda xp, x: xp.minimum(x, 0) - xp.log1p(xp.exp(-xp.abs(x))),
    lambda xp, ans, x: _sigmoid(xp, -x),
)
_act_select(
    "hardtanh",
    lambda xp, x, min_val=-1.0, max_val=1.0: xp.clip(x, min_val, max_val),
    lambda xp, x, min_val=-1.0, max_val=1.0: (x > min_val) & (x < max_val),
)
# hardswish = x relu6(x + 3) / 6: derivative relu6(x + 3)/6 + x/6 on (-3, 3), 0 below -3
_act_select(
    "hardswish",
    lambda xp, x: x * xp.clip(x + 3, 0, 6) / 6,
    lambda xp, x: x > -3,
    lambda xp, ans, x: xp.clip(x + 3, 0, 6) / 6 + as_dtype(ans, x < 3) * x / 6,
)
_act_select(
    "hardsigmoid", lambda xp, x: xp.clip(x + 3, 0, 6) / 6, lambda xp, x: (x > -3) & (x < 3), lambda xp, ans, x: 1 / 6
)
_act("softsign", lambda xp, x: x / (1 + xp.abs(x)), lambda xp, ans, x: 1 / ((1 + xp.abs(x)) * (1 + xp.abs(x))))
_act("tanhshrink", lambda xp, x: x - xp.tanh(x), lambda xp, ans, x: xp.tanh(x) ** 2)


def _prelu_w(w, ndim, lanes=0):
    """prelu's weight (C,) or (1,) aligned with axis 1 of an ``ndim``-array (with ``lanes`` leading axes)."""
    lead = w.shape[:lanes]
    if ndim < 2:  # no channel axis: a single weight
        return w.reshape(lead + (1,) * ndim)
    return w.reshape(lead + (1, w.shape[-1]) + (1,) * (ndim - 2))


def _prelu(xp, x, w):
    return xp.where(x >= 0, x, _prelu_w(w, x.ndim) * x)


# torch's jvp takes the x branch at 0: d = (x >= 0 ? 1 : w) dx + (x >= 0 ? 0 : x) dw
defrule(
    "prelu",
    primal=_prelu,
    jvp=(
        lambda xp, ans, dx, x, w: xp.where(x >= 0, dx, _prelu_w(w, x.ndim) * dx),
        lambda xp, ans, dw, x, w: xp.where(x >= 0, 0 * x, x) * _prelu_w(dw, x.ndim, 1),
    ),
)


# --- softmax family (along an axis) --------------------------------------------------------
def _logsumexp(xp, x, axis=None, keepdims=False):
    m = xp.max(x, axis=axis, keepdims=True)
    m = xp.where(xp.isfinite(m), m, 0 * m)  # all -inf (or inf) along the axis: no shift
    out = xp.log(xp.sum(xp.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else xp.squeeze(out, axis=axis)


def _softmax(xp, x, axis=-1):
    return xp.exp(x - _logsumexp(xp, x, axis=axis, keepdims=True))


# d softmax = s * (dx - sum(s * dx)); d log_softmax = dx - sum(s * dx); d logsumexp = sum(s * dx)
def _dsoftmax(xp, ans, dx, x, axis=-1):
    a = neg_axes(axis, x.ndim)  # an int, a tuple, or None (all axes)
    return ans * (dx - xp.sum(ans * dx, axis=a, keepdims=True))


def _dlog_softmax(xp, ans, dx, x, axis=-1):
    a = neg_axes(axis, x.ndim)  # an int, a tuple, or None (all axes)
    return dx - xp.sum(xp.exp(ans) * dx, axis=a, keepdims=True)


def _dlogsumexp(xp, ans, dx, x, axis=None, keepdims=False):
    a = neg_axes(axis, x.ndim)
    s = xp.exp(x - (ans if keepdims else xp.expand_dims(ans, a)))  # the softmax, from the result
    return xp.sum(s * dx, axis=a, keepdims=keepdims)


defrule("softmax", primal=_softmax, jvp=(_dsoftmax,))
defrule("log_softmax", primal=lambda xp, x, axis=-1: x - _logsumexp(xp, x, axis, True), jvp=(_dlog_softmax,))
defrule("logsumexp", primal=_logsumexp, jvp=(_dlogsumexp,))


# --- linear and bilinear layers ---------------------------------------------------------------
def _lin(x, w):
    """``x @ w.T`` as one GEMM over all leading axes of x."""
    return (x.reshape(-1, x.shape[-1]) @ w.T).reshape(x.shape[:-1] + (w.shape[0],))


def _linear(xp, x, w, b=None):
    y = _lin(x, w)
    return y if b is None else y + b


# y = x W^T + b: bilinear in (x, W), linear in b
defrule(
    "linear",
    primal=_linear,
    jvp=(
        lambda xp, ans, dx, x, w, b=None: _lin(dx, w),  # lanes folded into the rows
        lambda xp, ans, dw, x, w, b=None: xp.matmul(x.reshape(-1, x.shape[-1]), xp.swapaxes(dw, -1, -2)).reshape(
            dw.shape[:1] + ans.shape
        ),  # x @ dw[k].T for every lane k
        lambda xp, ans, db, x, w, b=None: lanes_to_rank(db, ans.ndim),
    ),
)


def _bil(xp, a, w, c):
    """``y[..., o] = sum_ij a[..., i] w[..., o, i, j] c[..., j]`` (the leading axes broadcast)."""
    t = xp.matmul(w, c[..., None, :, None])[..., 0]  # (..., o, i)
    return xp.sum(t * a[..., None, :], axis=-1)


def _bilinear(xp, x1, x2, w, b=None):
    y = _bil(xp, x1, w, x2)
    return y if b is None else y + b


# y = x1^T W x2 + b: linear in each of x1, x2, W and b
defrule(
    "bilinear",
    primal=_bilinear,
    jvp=(
        lambda xp, ans, d1, x1, x2, w, b=None: _bil(xp, d1, w, x2),
        lambda xp, ans, d2, x1, x2, w, b=None: _bil(xp, x1, w, d2),
        lambda xp, ans, dw, x1, x2, w, b=None: _bil(  # dw (K, o, i, j) against x's leading axes
            xp, x1, dw.reshape(dw.shape[:1] + (1,) * (ans.ndim - 1) + dw.shape[1:]), x2
        ),
        lambda xp, ans, db, x1, x2, w, b=None: lanes_to_rank(db, ans.ndim),
    ),
)


# --- convolution (im2col + GEMM) -----------------------------------------------------------------


def _conv_layer(xp, x, w, b, groups, plan):
    """A conv layer (conv or conv_transpose) run as the plain conv its ``plan`` describes."""
    x_in, w_in, *geom = plan
    batched = x.ndim == w.ndim
    y = kconv.conv_core(xp, x_in(x if batched else x[None]), w_in(w), *geom, groups)
    y = y if batched else y[0]
    return y if b is None else y + kconv.per_channel(b, w.ndim - 2)


def _conv_layer_joint(xp, ans, ts, x, w, groups, plan):
    # bilinear: d conv(x, w) = conv(dx, w) + conv(x, dw); + db along the channel axis
    x_in, w_in, *geom = plan
    dx, dw, db = (list(ts) + [None])[:3]
    K = next(t for t in ts if t is not None).shape[0]
    xb = x if x.ndim == w.ndim else x[None]
    parts = []
    if dx is not None:  # lanes folded into the batch, which kconv.conv_core runs in cache-sized chunks
        dxb = x_in(dx.reshape((-1,) + xb.shape[1:]))
        parts.append(kconv.conv_core(xp, dxb, w_in(w), *geom, groups).reshape((K,) + ans.shape))
    if dw is not None:  # K weights against the one set of columns of x
        cols, osz = kconv.im2col(xp, x_in(xb), *geom, groups)
        parts.append(kconv.gemm(xp, w_in(dw), cols, groups, osz).reshape((K,) + ans.shape))
    if db is not None:
        parts.append(lanes_to_rank(kconv.per_channel(db, w.ndim - 2), ans.ndim))
    out = sum_parts(parts)
    return xp.broadcast_to(out, out.shape[:1] + ans.shape)


def _conv(xp, x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    return _conv_layer(xp, x, w, b, groups, kconv.conv_params(x, w, stride, padding, dilation))


def _conv_joint(xp, ans, ts, x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    return _conv_layer_joint(xp, ans, ts, x, w, groups, kconv.conv_params(x, w, stride, padding, dilation))


defrule("conv", primal=_conv, joint=_conv_joint)


def _conv_transpose(xp, x, w, b=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    plan = kconv.convt_params(xp, w, stride, padding, output_padding, groups, dilation)
    return _conv_layer(xp, x, w, b, groups, plan)


def _conv_transpose_joint(xp, ans, ts, x, w, b=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    plan = kconv.convt_params(xp, w, stride, padding, output_padding, groups, dilation)
    return _conv_layer_joint(xp, ans, ts, x, w, groups, plan)


defrule("conv_transpose", primal=_conv_transpose, joint=_conv_transpose_joint)


# --- pooling ---------------------------------------------------------------------------------


def _max_pool(xp, x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    w = kconv.max_pool_windows(xp, x, kernel_size, stride, padding, dilation, ceil_mode)[0]
    return xp.max(w, axis=-1)


def _dmax_pool(xp, ans, dx, x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    # the tangent at each window's first maximum (row-major order within the window, as torch)
    w, k, stride, pairs, dil, out = kconv.max_pool_windows(xp, x, kernel_size, stride, padding, dilation, ceil_mode)
    nd = len(k)
    a = xp.argmax(w, axis=-1)  # (*lead, *out): position within the window
    L = x.shape[x.ndim - nd :]
    flat = 0
    for i in range(nd):
        ki = math.prod(k[i + 1 :])
        pos = (a // ki) % k[i]  # the window offset along axis i
        o = xp.arange(out[i]).reshape((out[i],) + (1,) * (nd - 1 - i))
        coord = xp.clip(o * stride[i] - pairs[i][0] + pos * dil[i], 0, L[i] - 1)
        flat = flat * L[i] + coord
    lead = x.shape[: x.ndim - nd]
    flat = flat + math.prod(L) * xp.arange(math.prod(lead)).reshape(lead + (1,) * nd)  # into all of x
    g = xp.take(dx.reshape((dx.shape[0], -1)), flat.reshape(-1), axis=1)  # one index for every lane
    return g.reshape(dx.shape[:1] + ans.shape)


defrule("max_pool", primal=_max_pool, jvp=(_dmax_pool,))


def _avg_pool(xp, x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    # torch's divisor per axis: the window clipped to the padded input (count_include_pad)
    # or to the input itself; a 2-D divisor is the product of the two
    k, stride, pairs, dil, out = kconv.pool_params(x, kernel_size, stride, padding, 1, ceil_mode)
    nd = len(k)
    # prod(k) adds: faster than a window sum
    total = sum_parts(kconv.slabs(kconv.pad_spatial(xp, x, pairs), k, stride, dil, out))
    L = x.shape[x.ndim - nd :]
    div = 1
    for i in range(nd):
        p = pairs[i][0]
        start = xp.arange(out[i]) * stride[i] - p
        end = xp.minimum(start + k[i], L[i] + p)
        if not count_include_pad:
            start, end = xp.maximum(start, 0), xp.minimum(end, L[i])
        div = div * (end - start).reshape((out[i],) + (1,) * (nd - 1 - i))
    return total / div.astype(x.dtype)


defrule("avg_pool", primal=_avg_pool, linear=lambda xp, dx, x, *a, **p: _avg_pool(xp, dx, *a, **p))  # lanes: more batch


def _adaptive_avg_pool(xp, x, output_size):
    nd = len(output_size)
    y = x
    for i, o in enumerate(output_size):
        ax = x.ndim - nd + i
        n = x.shape[ax]
        A = kconv.adaptive_matrix(xp, n, n if o is None else int(o), x.dtype)
        y = xp.moveaxis(xp.matmul(A, xp.moveaxis(y, ax - y.ndim, -2)), -2, ax - y.ndim)
    return y


defrule(
    "adaptive_avg_pool",
    primal=_adaptive_avg_pool,
    linear=lambda xp, dx, x, output_size: _adaptive_avg_pool(xp, dx, output_size),
)


# --- normalisation ---------------------------------------------------------------------------
def _bn_lanes(dv, ndim):
    """A (K, C) tangent of a per-channel vector (channels on axis 1 of an ``ndim``-array x),
    broadcasting with a (K, *x.shape) tangent."""
    return lanes_to_rank(kconv.per_channel(dv, ndim - 2), ndim)


def _batch_norm(xp, x, mean, var, weight=None, bias=None, eps=1e-5):
    y = (x - kconv.per_channel(mean, x.ndim - 2)) / xp.sqrt(kconv.per_channel(var, x.ndim - 2) + eps)
    if weight is not None:
        y = y * kconv.per_channel(weight, x.ndim - 2)
    return y if bias is None else y + kconv.per_channel(bias, x.ndim - 2)


def _bn_terms(xp, x, mean, var, weight, eps):
    """x - m, r = (v + eps)^-1/2 and r w, per channel."""
    nd = x.ndim
    r = 1 / xp.sqrt(kconv.per_channel(var, nd - 2) + eps)
    rw = r if weight is None else r * kconv.per_channel(weight, nd - 2)
    return x - kconv.per_channel(mean, nd - 2), r, rw


# y = (x - m) r w + b with r = (v + eps)^-1/2:
# dy = r w (dx - dm) - (x - m) r^3 w dv / 2 + (x - m) r dw + db
def _bn_dx(xp, ans, dx, x, mean, var, weight=None, bias=None, eps=1e-5):
    return _bn_terms(xp, x, mean, var, weight, eps)[2] * dx


def _bn_dmean(xp, ans, dm, x, mean, var, weight=None, bias=None, eps=1e-5):
    return -_bn_terms(xp, x, mean, var, weight, eps)[2] * _bn_lanes(dm, x.ndim)


def _bn_dvar(xp, ans, dv, x, mean, var, weight=None, bias=None, eps=1e-5):
    xm, r, rw = _bn_terms(xp, x, mean, var, weight, eps)
    return (-0.5 * xm * rw * r * r) * _bn_lanes(dv, x.ndim)


def _bn_dweight(xp, ans, dw, x, mean, var, weight=None, bias=None, eps=1e-5):
    xm, r, _ = _bn_terms(xp, x, mean, var, weight, eps)
    return (xm * r) * _bn_lanes(dw, x.ndim)


def _bn_dbias(xp, ans, db, x, *args, **params):
    return _bn_lanes(db, x.ndim)


defrule("batch_norm", primal=_batch_norm, jvp=(_bn_dx, _bn_dmean, _bn_dvar, _bn_dweight, _bn_dbias))


def _standardize(xp, x, axes, eps):
    """(x - mean) / sqrt(var + eps) over ``axes`` (biased variance), and 1/sqrt(var + eps)."""
    mu = xp.mean(x, axis=axes, keepdims=True)
    xc = x - mu
    r = 1 / xp.sqrt(xp.mean(xc * xc, axis=axes, keepdims=True) + eps)
    return xc * r, r


def _dstandardize(xp, xhat, r, dx, axes):
    # d xhat = r (dx - mean(dx) - xhat mean(xhat dx))
    return r * (dx - xp.mean(dx, axis=axes, keepdims=True) - xhat * xp.mean(xhat * dx, axis=axes, keepdims=True))


def _ln_axes(x, weight, normalized_shape):
    if normalized_shape is None:
        normalized_shape = tuple(weight.shape) if weight is not None else (x.shape[-1],)
    n = len(tuple(normalized_shape)) if not isinstance(normalized_shape, numbers.Integral) else 1
    return tuple(range(-n, 0))


def _layer_norm(xp, x, weight=None, bias=None, normalized_shape=None, eps=1e-5):
    y = _standardize(xp, x, _ln_axes(x, weight, normalized_shape), eps)[0]
    if weight is not None:
        y = y * weight
    return y if bias is None else y + bias


def _layer_norm_dx(xp, ans, dx, x, weight=None, bias=None, normalized_shape=None, eps=1e-5):
    axes = _ln_axes(x, weight, normalized_shape)
    t = _dstandardize(xp, *_standardize(xp, x, axes, eps), dx, axes)
    return t if weight is None else t * weight


def _layer_norm_dw(xp, ans, dw, x, weight=None, bias=None, normalized_shape=None, eps=1e-5):
    return _standardize(xp, x, _ln_axes(x, weight, normalized_shape), eps)[0] * lanes_to_rank(dw, x.ndim)


defrule(
    "layer_norm",
    primal=_layer_norm,
    jvp=(_layer_norm_dx, _layer_norm_dw, lambda xp, ans, db, x, *a, **p: lanes_to_rank(db, x.ndim)),
)


def _grouped(x, G, lanes=0):
    """(*L, N, C, *S) to (*L, N, G, C/G * prod(S))."""
    return x.reshape(x.shape[: lanes + 1] + (G, -1))


def _group_norm(xp, x, weight=None, bias=None, num_groups=1, eps=1e-5):
    y = _standardize(xp, _grouped(x, num_groups), -1, eps)[0].reshape(x.shape)
    if weight is not None:
        y = y * kconv.per_channel(weight, x.ndim - 2)
    return y if bias is None else y + kconv.per_channel(bias, x.ndim - 2)


def _group_norm_dx(xp, ans, dx, x, weight=None, bias=None, num_groups=1, eps=1e-5):
    xhat, r = _standardize(xp, _grouped(x, num_groups), -1, eps)
    t = _dstandardize(xp, xhat, r, _grouped(dx, num_groups, 1), -1).reshape(dx.shape)
    return t if weight is None else t * kconv.per_channel(weight, x.ndim - 2)


def _group_norm_dw(xp, ans, dw, x, weight=None, bias=None, num_groups=1, eps=1e-5):
    return _standardize(xp, _grouped(x, num_groups), -1, eps)[0].reshape(x.shape) * _bn_lanes(dw, x.ndim)


defrule(
    "group_norm",
    primal=_group_norm,
    jvp=(_group_norm_dx, _group_norm_dw, _bn_dbias),
)
