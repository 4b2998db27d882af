"""Specs for rules/nn.py: activations, softmax family, linear/conv layers, pooling, normalisation.

Each spec calls the rule through ``apply`` with the torch.nn.functional twin alongside, so every
rule is checked against central differences and against ``torch.func.jvp``; the ``*-kink`` and
``*-ties`` specs put inputs exactly on kinks and ties, where only torch's convention decides.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from dualjac.rules import apply
from rule_specs import UNARY, Spec, draw, on


def _at(*points):
    """x of the given shape with about half its entries exactly at the kinks ``points``."""

    def gen(rng, shape, dtype):
        x = draw(rng, shape, dtype, -4.0, 4.0)
        pick = rng.integers(0, len(points), size=shape)
        return (np.where(rng.random(shape) < 0.6, np.asarray(points)[pick], x).astype(dtype),)

    return gen


def _act(name, torch_fn, domain=(-2.0, 2.0), kinks=(), **params):
    """A random spec and, with ``kinks``, a spec with inputs exactly on them (torch decides there)."""
    fn = lambda x: apply(name, x, **params)
    tag = "-".join(f"{k}={v}" for k, v in params.items())
    base = name + (f"-{tag}" if tag else "")
    out = [Spec(base, fn, domain=domain, torch=torch_fn)]
    if kinks:
        out.append(Spec(f"{base}-kink", fn, [(7,), (2, 5)], torch=torch_fn, gen=_at(*kinks), fd=False))
    return out


ACTIVATIONS = [
    *_act("relu", F.relu, kinks=(0.0,)),
    *_act("leaky_relu", lambda x: F.leaky_relu(x, 0.1), kinks=(0.0,), negative_slope=0.1),
    *_act("leaky_relu", F.leaky_relu),
    *_act("elu", lambda x: F.elu(x, 1.5), kinks=(0.0,), alpha=1.5),
    *_act("celu", lambda x: F.celu(x, 2.0), kinks=(0.0,), alpha=2.0),
    *_act("selu", F.selu, kinks=(0.0,)),
    *_act("gelu", F.gelu),
    *_act("gelu", lambda x: F.gelu(x, approximate="tanh"), approximate="tanh"),
    Spec("gelu-wide", lambda x: apply("gelu", x), [(40,)], domain=(-9.0, 9.0), torch=F.gelu),
    *_act("silu", F.silu),
    *_act("mish", F.mish, domain=(-4.0, 4.0)),
    *_act("erf", torch.erf, domain=(-3.0, 3.0)),
    *_act("softplus", F.softplus, domain=(-4.0, 4.0)),
    *_act("softplus", lambda x: F.softplus(x, 2.0, 3.0), kinks=(1.5, 1.6, 3.0), beta=2.0, threshold=3.0),
    *_act("sigmoid", torch.sigmoid, domain=(-40.0, 40.0)),
    *_act("log_sigmoid", F.logsigmoid, domain=(-40.0, 40.0)),
    *_act("hardtanh", F.hardtanh, kinks=(-1.0, 1.0)),
    *_act(
        "hardtanh", lambda x: F.hardtanh(x, 0.0, 6.0), domain=(-2.0, 8.0), kinks=(0.0, 6.0), min_val=0.0, max_val=6.0
    ),
    *_act("hardswish", F.hardswish, domain=(-5.0, 5.0), kinks=(-3.0, 3.0)),
    # torch's own hardsigmoid derivative is the float32 constant 1/6 even in float64 (off by 3e-8):
    # compare with its exact composition, which has the same kinks (no tangent at +-3)
    *_act("hardsigmoid", lambda x: F.hardtanh(x + 3, 0.0, 6.0) / 6, domain=(-5.0, 5.0), kinks=(-3.0, 3.0)),
    *_act("softsign", F.softsign),
    *_act("tanhshrink", F.tanhshrink),
]


def _prelu_kink(rng, shapes, dtype):
    xs, ws = shapes
    x = draw(rng, xs, dtype)
    return np.where(rng.random(xs) < 0.5, 0.0, x).astype(dtype), draw(rng, ws, dtype, 0.1, 0.9)


PRELU = [
    Spec(
        "prelu",
        lambda x, w: apply("prelu", x, w),
        [((2, 3, 4), (3,)), ((2, 3), (1,)), ((5,), (1,)), ((), (1,))],
        torch=F.prelu,
    ),
    Spec(
        "prelu-kink", lambda x, w: apply("prelu", x, w), [((2, 3, 4), (3,))], torch=F.prelu, gen=_prelu_kink, fd=False
    ),
]


# --- softmax family ----------------------------------------------------------------------
def _lse_t(axis, keepdims=False):
    def f(x):
        if axis is None:
            out = torch.logsumexp(x.reshape(-1), 0)
            return out.reshape((1,) * x.ndim) if keepdims else out
        return torch.logsumexp(x, axis, keepdim=keepdims)

    return f


SOFTMAX = [
    Spec("softmax", lambda x: apply("softmax", x), [(3,), (2, 3)], torch=lambda x: F.softmax(x, -1)),
    Spec("softmax-axis0", lambda x: apply("softmax", x, axis=0), [(2, 3, 2)], torch=lambda x: F.softmax(x, 0)),
    Spec(
        "softmax-large",
        lambda x: apply("softmax", x, axis=1),
        [(2, 4)],
        domain=(-500.0, 500.0),
        torch=lambda x: F.softmax(x, 1),
    ),
    Spec("log_softmax", lambda x: apply("log_softmax", x), [(3,), (2, 3)], torch=lambda x: F.log_softmax(x, -1)),
    Spec(
        "log_softmax-axis0",
        lambda x: apply("log_softmax", x, axis=0),
        [(2, 3, 2)],
        domain=(-300.0, 300.0),
        torch=lambda x: F.log_softmax(x, 0),
    ),
    Spec("logsumexp", lambda x: apply("logsumexp", x), UNARY, torch=_lse_t(None)),
    Spec(
        "logsumexp-axis",
        lambda x: apply("logsumexp", x, axis=1, keepdims=True),
        [(2, 3), (2, 3, 2)],
        domain=(-300.0, 300.0),
        torch=_lse_t(1, True),
    ),
    Spec(
        "logsumexp-all-keepdims",
        lambda x: apply("logsumexp", x, axis=None, keepdims=True),
        [(2, 3)],
        torch=_lse_t(None, True),
    ),
]


# --- linear layers ----------------------------------------------------------------------------
LINEAR = [
    Spec(
        "linear",
        lambda x, w, b: apply("linear", x, w, b),
        [((2, 3), (4, 3), (4,)), ((3,), (4, 3), (4,)), ((2, 2, 3), (4, 3), (4,))],
        torch=F.linear,
    ),
    Spec("linear-nobias", lambda x, w: apply("linear", x, w), [((2, 3), (4, 3))], torch=F.linear),
    Spec(
        "bilinear",
        lambda a, b, w, c: apply("bilinear", a, b, w, c),
        [((2, 3), (2, 4), (5, 3, 4), (5,))],
        torch=F.bilinear,
    ),
    Spec(
        "bilinear-nobias", lambda a, b, w: apply("bilinear", a, b, w), [((2, 3), (2, 2), (2, 3, 2))], torch=F.bilinear
    ),
]


# --- convolutions --------------------------------------------------------------------------------
_TORCH_CONV = {"conv": (F.conv1d, F.conv2d), "conv_transpose": (F.conv_transpose1d, F.conv_transpose2d)}


def _conv_spec(name, nd, shapes, op="conv", **p):
    """``op`` (an ``nd``-D conv or conv_transpose) against torch's twin."""
    tf = _TORCH_CONV[op][nd - 1]
    return Spec(
        name,
        lambda x, w, b=None: apply(op, x, w, b, **p),
        shapes,
        torch=lambda x, w, b=None: tf(x, w, b, **p),
    )


def _convt_spec(name, nd, shapes, **p):
    return _conv_spec(name, nd, shapes, "conv_transpose", **p)


CONV = [
    _conv_spec("conv2d", 2, [((2, 2, 5, 5), (3, 2, 3, 3), (3,)), ((2, 4, 4), (3, 2, 3, 3), (3,))]),
    _conv_spec("conv2d-stride-pad", 2, [((2, 2, 5, 6), (3, 2, 3, 2), (3,))], stride=(2, 1), padding=(1, 2)),
    _conv_spec("conv2d-same-dilation", 2, [((1, 2, 5, 6), (2, 2, 2, 3), (2,))], padding="same", dilation=(1, 2)),
    _conv_spec("conv2d-valid-nobias", 2, [((2, 1, 4, 4), (2, 1, 2, 2))], padding="valid", stride=2),
    _conv_spec("conv2d-groups", 2, [((1, 4, 4, 4), (4, 2, 2, 2), (4,))], groups=2, padding=1, dilation=2),
    _conv_spec("conv1d", 1, [((2, 2, 7), (3, 2, 3), (3,)), ((2, 6), (3, 2, 3), (3,))], stride=2, padding=1),
    _conv_spec("conv1d-same-even", 1, [((2, 2, 6), (2, 2, 4), (2,))], padding="same", dilation=2),
    _conv_spec("conv1d-groups", 1, [((2, 6, 5), (6, 2, 3))], groups=3),
    _convt_spec("conv_transpose2d", 2, [((1, 2, 3, 3), (2, 2, 3, 3), (2,))], stride=2, padding=1, output_padding=1),
    _convt_spec("conv_transpose2d-plain", 2, [((2, 1, 3, 2), (1, 2, 2, 2), (2,)), ((1, 3, 2), (1, 2, 2, 2), (2,))]),
    _convt_spec(
        "conv_transpose2d-groups-dilation",
        2,
        [((1, 4, 3, 3), (4, 1, 2, 2))],
        groups=2,
        dilation=2,
        stride=(1, 2),
        padding=(0, 1),
    ),
    _convt_spec("conv_transpose1d", 1, [((2, 2, 4), (2, 3, 3), (3,))], stride=2, padding=1, output_padding=1),
    _convt_spec("conv_transpose1d-bigpad", 1, [((1, 2, 5), (2, 1, 2), (1,))], padding=2, dilation=1),
]


# --- pooling --------------------------------------------------------------------------------------
def _ties(rng, shape, dtype):
    return (rng.integers(-1, 2, size=shape).astype(dtype),)


_TORCH_POOL = {"max": (F.max_pool1d, F.max_pool2d), "avg": (F.avg_pool1d, F.avg_pool2d)}


def _pool_spec(name, which, k, shapes, tie=False, **p):
    """``max_pool`` or ``avg_pool`` (``which``) with kernel ``k`` against torch's 1-D or 2-D twin."""
    tf = _TORCH_POOL[which][len(k) - 1]
    return Spec(
        name,
        lambda x: apply(f"{which}_pool", x, k, **p),
        shapes,
        torch=lambda x: tf(x, k, **p),
        gen=_ties if tie else None,
        fd=not tie,
    )


POOL = [
    _pool_spec("max_pool2d", "max", (2, 2), [(2, 2, 5, 5), (2, 4, 4)]),
    _pool_spec(
        "max_pool2d-pad-dilation-ceil",
        "max",
        (2, 3),
        [(1, 2, 6, 7)],
        stride=(2, 1),
        padding=1,
        dilation=2,
        ceil_mode=True,
    ),
    _pool_spec("max_pool2d-ceil", "max", (3, 3), [(1, 1, 6, 6)], stride=2, ceil_mode=True),
    _pool_spec("max_pool1d", "max", (3,), [(2, 3, 7), (2, 8)], stride=2, padding=1),
    _pool_spec("max_pool2d-ties", "max", (2, 2), [(2, 2, 5, 5)], tie=True, stride=1, padding=1),
    _pool_spec("max_pool1d-ties", "max", (3,), [(2, 3, 9)], tie=True, stride=2, ceil_mode=True),
    _pool_spec("avg_pool2d", "avg", (2, 2), [(2, 2, 5, 5), (2, 4, 4)]),
    _pool_spec("avg_pool2d-pad-ceil", "avg", (3, 3), [(1, 2, 6, 7)], stride=2, padding=1, ceil_mode=True),
    _pool_spec(
        "avg_pool2d-exclude-pad",
        "avg",
        (3, 2),
        [(1, 2, 5, 6)],
        stride=(2, 1),
        padding=1,
        ceil_mode=True,
        count_include_pad=False,
    ),
    _pool_spec("avg_pool1d", "avg", (3,), [(2, 3, 7)], stride=2, padding=1, count_include_pad=False),
    Spec(
        "adaptive_avg_pool2d",
        lambda x: apply("adaptive_avg_pool", x, (3, 4)),
        [(2, 2, 5, 7), (2, 4, 4)],
        torch=lambda x: F.adaptive_avg_pool2d(x, (3, 4)),
    ),
    Spec(
        "adaptive_avg_pool2d-none",
        lambda x: apply("adaptive_avg_pool", x, (2, None)),
        [(1, 2, 5, 3)],
        torch=lambda x: F.adaptive_avg_pool2d(x, (2, None)),
    ),
    Spec(
        "adaptive_avg_pool1d",
        lambda x: apply("adaptive_avg_pool", x, (3,)),
        [(2, 3, 7), (2, 2)],
        torch=lambda x: F.adaptive_avg_pool1d(x, 3),
    ),
]


# --- normalisation -----------------------------------------------------------------------------------
def _bn_gen(affine):
    def gen(rng, shape, dtype):
        C = shape[1]
        args = [draw(rng, shape, dtype), draw(rng, (C,), dtype), draw(rng, (C,), dtype, 0.2, 2.0)]
        if affine:
            args += [draw(rng, (C,), dtype), draw(rng, (C,), dtype)]
        return args

    return gen


def _bn_t(x, m, v, w=None, b=None):
    """torch's eval-mode batch norm written out: F.batch_norm has no forward grad for the running stats."""
    shape = (-1,) + (1,) * (x.ndim - 2)
    y = (x - m.reshape(shape)) / torch.sqrt(v.reshape(shape) + 1e-3)
    return y if w is None else y * w.reshape(shape) + b.reshape(shape)


def _bn_stats_constant(x, m, v, w, b):
    return apply("batch_norm", x, on(x, m), on(x, v), w, b, eps=1e-3)


NORM = [
    Spec(
        "batch_norm",
        lambda x, m, v, w, b: apply("batch_norm", x, m, v, w, b, eps=1e-3),
        [(3, 2), (2, 3, 4), (2, 2, 3, 3)],
        gen=_bn_gen(True),
        torch=_bn_t,
    ),
    Spec(
        "batch_norm-F",
        _bn_stats_constant,
        [(2, 3, 4)],
        gen=_bn_gen(True),
        diff=(0, 3, 4),
        torch=lambda x, m, v, w, b: F.batch_norm(x, m, v, w, b, training=False, eps=1e-3),
    ),
    Spec(
        "batch_norm-noaffine",
        lambda x, m, v: apply("batch_norm", x, m, v, eps=1e-3),
        [(2, 3, 2)],
        gen=_bn_gen(False),
        torch=_bn_t,
    ),
    Spec(
        "layer_norm",
        lambda x, w, b: apply("layer_norm", x, w, b, normalized_shape=(3, 4)),
        [((2, 3, 4), (3, 4), (3, 4)), ((3, 4), (3, 4), (3, 4))],
        torch=lambda x, w, b: F.layer_norm(x, (3, 4), w, b),
    ),
    Spec(
        "layer_norm-noaffine",
        lambda x: apply("layer_norm", x, normalized_shape=(4,), eps=1e-3),
        [(2, 4), (4,)],
        torch=lambda x: F.layer_norm(x, (4,), eps=1e-3),
    ),
    Spec(
        "group_norm",
        lambda x, w, b: apply("group_norm", x, w, b, num_groups=2),
        [((2, 4, 3), (4,), (4,)), ((2, 4, 2, 2), (4,), (4,))],
        torch=lambda x, w, b: F.group_norm(x, 2, w, b),
    ),
    Spec(
        "group_norm-noaffine",
        lambda x: apply("group_norm", x, num_groups=3, eps=1e-3),
        [(2, 6, 2)],
        torch=lambda x: F.group_norm(x, 3, eps=1e-3),
    ),
]

SPECS = ACTIVATIONS + PRELU + SOFTMAX + LINEAR + CONV + POOL + NORM
