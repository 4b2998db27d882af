"""from_torch through torch.export: every zoo model and every op case agrees with torch, values and derivatives."""

from __future__ import annotations

import math
import operator

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402
from zoo import WrongTanh, with_floats, zoo  # noqa: E402

import dualjac as dj  # noqa: E402
import dualjac.torch as djt  # noqa: E402
from dualjac.torch import from_torch  # noqa: E402

RTOL, ATOL = 1e-9, 1e-12
# torch's hardsigmoid derivative uses 1/6 rounded to float32, even in float64 (0.1666666716...):
# dualjac's exact 1/6 differs from it by 3e-8 relative.
LOOSE = {"mlp_hard": 1e-7, "F.activations": 1e-7, "nn.layers": 1e-7}
LOOSE["casts"] = 1e-6  # x.float() rounds to float32 in torch, and in dualjac: float32 kernels differ by ulps
CASES = {c.name: c for c in zoo()}
_UNARY_NAMES = ("exp", "log", "log2", "log10", "log1p", "expm1", "sqrt", "sin", "cos", "tan", "sinh", "cosh", "tanh",
                "asin", "acos", "atan", "abs", "neg", "square", "reciprocal", "sigmoid", "erf")  # fmt: skip
_ACTIVATION_NAMES = ("relu", "relu6", "leaky_relu", "prelu", "elu", "selu", "celu", "gelu", "silu", "mish", "softplus",
                     "sigmoid", "tanh", "hardtanh", "hardswish", "hardsigmoid", "logsigmoid", "softsign", "tanhshrink",
                     "softmax", "log_softmax")  # fmt: skip


def _leaves(tree):
    if isinstance(tree, dict):
        return [x for k in tree for x in _leaves(tree[k])]
    if isinstance(tree, (tuple, list)):
        return [x for t in tree for x in _leaves(t)]
    return [tree.detach().numpy() if isinstance(tree, torch.Tensor) else np.asarray(tree)]


def _close(ours, theirs, rtol=RTOL, atol=ATOL):
    a, b = _leaves(ours), _leaves(theirs)
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.shape == y.shape
        np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)


# --- the zoo ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(CASES))
def test_zoo_outputs_and_jacobians(name):
    model, inputs = CASES[name].model, CASES[name].inputs
    g = from_torch(model, *inputs)
    xs = tuple(x.numpy() for x in inputs)
    _close(g(*xs), model(*inputs), rtol=1e-12, atol=1e-13)

    diff = [i for i, x in enumerate(inputs) if x.is_floating_point()]

    merged = lambda call, all_inputs: with_floats(call, all_inputs, diff)  # noqa: E731

    # d out / d inputs (the floating ones)
    J_torch = torch.autograd.functional.jacobian(merged(model, inputs), tuple(inputs[i] for i in diff))
    J_dj = dj.jacobian(merged(g, xs), tuple(xs[i] for i in diff))
    rtol = LOOSE.get(name, RTOL)
    _close(J_dj, J_torch, rtol)

    # per-sample Jacobians: the diagonal blocks of the full one
    if len(inputs) == 1:
        outs = model(*inputs)
        J_full = J_torch if isinstance(outs, tuple) else (J_torch,)
        J_rows = [
            np.stack([np.take(J[0][b].numpy(), b, axis=o.dim() - 1) for b in range(o.shape[0])])
            for J, o in zip(J_full, outs if isinstance(outs, tuple) else (outs,))
        ]
        _close(dj.batch_jacobian(g, xs[0]), J_rows if isinstance(outs, tuple) else J_rows[0], rtol)

    # d out / d params, by name
    params = {k: v.detach() for k, v in model.named_parameters()}
    if not params:
        return
    buffers = dict(model.named_buffers())
    J_p = torch.func.jacrev(lambda p: torch.func.functional_call(model, {**p, **buffers}, inputs))(params)
    J_pd = dj.jacfwd(lambda p: g(*xs, params=p))(g.params)
    assert list(g.params) == list(params)
    _close(J_pd, J_p, rtol)


def test_graph_prints_and_keeps_qualified_names():
    g = from_torch(CASES["resblock_bn"].model, *CASES["resblock_bn"].inputs)
    assert set(g.params) == {"conv1.weight", "bn1.weight", "bn1.bias", "conv2.weight", "bn2.weight", "bn2.bias"}
    assert "bn1.running_mean" in g.constants and g.dtype == np.float64
    text = str(g)
    assert "batch_norm" in text and "@conv1.weight" in text and "$bn1.running_var" in text


def test_dtype_and_float32():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.GELU(), nn.Linear(4, 2)).eval()
    x = torch.randn(5, 3)
    g32, g64 = from_torch(model, x), from_torch(model, x, dtype=np.float64)
    assert g32.dtype == np.float32 and g64.dtype == np.float64
    np.testing.assert_allclose(g32(x.numpy()), model(x).detach().numpy(), rtol=1e-5, atol=1e-6)
    assert g64(x.double().numpy()).dtype == np.float64
    with pytest.raises(ValueError, match="backend"):
        from_torch(model, x, backend="jax")


# --- every table entry, against torch.func.jvp --------------------------------------------
class _Method:
    """``_Method().sum(x, 1)`` is ``x.sum(1)``: the same case written as a tensor method."""

    def __getattr__(self, name):
        return lambda x, *a, **k: getattr(x, name)(*a, **k)


T, M = torch, _Method()
pos = lambda *s: torch.rand(*s, dtype=torch.float64) + 0.5
unit = lambda *s: torch.rand(*s, dtype=torch.float64) * 1.6 - 0.8
rnd = lambda *s: torch.randn(*s, dtype=torch.float64)
_rng = torch.Generator().manual_seed(1)
_lo, _hi = torch.full((4,), -0.3, dtype=torch.float64), torch.full((4,), 0.4, dtype=torch.float64)
_idx = torch.tensor([2, 0, 1])
_bmask = torch.rand(3, 3, generator=_rng) > 0.3
_bmask[:, 0] = True


def _ops_cases():
    """(id, fn, inputs): each fn traced by fx and lowered, checked value- and jvp-wise."""
    c = []
    # grouped: each case is one export (about half a second), so related ops share one
    for ns, prefix in ((T, "torch"), (M, "Tensor")):
        on_pos = [n for n in _UNARY_NAMES if n in ("log", "log2", "log10", "sqrt", "reciprocal")]
        on_unit = [n for n in _UNARY_NAMES if n not in on_pos]
        c += [(f"{prefix}.unary_positive", _group(ns, on_pos), (pos(3, 4),))]
        c += [(f"{prefix}.unary", _group(ns, on_unit), (unit(3, 4),))]
        c += [(f"{prefix}.binary", _group(ns, ("add", "sub", "mul", "div", "pow", "maximum", "minimum"), 2),
               (pos(3, 4), pos(4)))]  # fmt: skip
        c += [(f"{prefix}.compare", _compares(ns), (rnd(3, 4), rnd(4)))]
    ops = (operator.gt, operator.lt, operator.ge, operator.le)
    c += [("operator.compare", lambda x, y: tuple(_compare(op)(x, y) for op in ops), (rnd(3, 4), rnd(3, 4)))]
    c += [
        ("add_alpha", lambda x, y: T.add(x, y, alpha=2.0) + T.sub(x, y, alpha=0.5), (rnd(3), rnd(3))),
        (
            "div_modes",
            lambda x, y: T.div(x, y, rounding_mode="floor") + T.div(x, y, rounding_mode="trunc") + x,
            (rnd(3) * 4, pos(3)),
        ),
        ("true_divide", lambda x, y: T.true_divide(x, y), (rnd(3), pos(3))),
        (
            "operators",
            lambda x, y: (
                (x + y) * (x - y) / (y + 2) + (-x) ** 2 + abs(x) + 2 - x + 3 / (y + 2) + 2**x + (x @ y.T).sum()
            ),
            (rnd(3, 2), rnd(3, 2)),
        ),
        ("rsqrt", lambda x: T.rsqrt(x) + x.rsqrt(), (pos(3),)),
        ("detach", lambda x: x * x.detach() + T.detach(x).sin() + x, (rnd(3, 4),)),
        ("relu", lambda x: T.relu(x) + x.relu(), (rnd(3, 4),)),
        (
            "softmax",
            lambda x: T.softmax(x, 1) + x.softmax(0) + T.log_softmax(x, -1) + x.log_softmax(dim=1),
            (rnd(3, 4),),
        ),
        ("legacy_softmax", lambda x: F.softmax(x) + F.log_softmax(x), (rnd(3, 4),)),
        (
            "matmul",
            lambda a, b, v: (
                T.matmul(a, b).sum()
                + a.matmul(b).sum()
                + T.mm(a, b)
                + a.mm(b)
                + T.mv(a, v).unsqueeze(1)
                + a.mv(v)[:, None]
                + T.dot(v, v)
                + v.dot(v)
            ),
            (rnd(3, 4), rnd(4, 3), rnd(4)),
        ),
        ("bmm", lambda a, b: T.bmm(a, b) + a.bmm(b), (rnd(2, 3, 4), rnd(2, 4, 3))),
        (
            "sum_mean_prod",
            lambda x: (
                T.sum(x, 1)
                + x.sum(dim=(0, 1))
                + T.mean(x, 1)
                + x.mean()
                + T.prod(x, 1)
                + x.prod(1)
                + T.sum(x)
                + T.mean(x, [0, 1])
            ),
            (pos(3, 4),),
        ),
        ("amax_amin", lambda x: T.amax(x, 1) + x.amax(dim=1) + T.amin(x, 1) + x.amin(1) + T.amax(x), (rnd(3, 4),)),
        (
            "max_min",
            lambda x, y: (
                T.max(x, 1)[0]
                + x.max(1).values
                + T.min(x, 1, keepdim=True).values.squeeze(1)
                + x.min(dim=1)[0]
                + T.max(x)
                + x.min()
                + T.max(x, y).sum(1)
                + T.min(x, y).sum(1)
                + x.max(1)[1]
                + T.min(x, 0)[1].sum()
            ),
            (rnd(3, 4), rnd(3, 4)),
        ),
        (
            "var_std",
            lambda x: (
                T.var(x, 1)
                + x.var(1, unbiased=False)
                + T.std(x, 1, correction=0)
                + x.std(dim=1)
                + T.var(x, False)
                + x.std()
            ),
            (rnd(3, 4),),
        ),
        ("cumulative", lambda x: T.cumsum(x, 1) + x.cumsum(0) + T.cumprod(x, 1) + x.cumprod(dim=1), (pos(3, 4),)),
        (
            "norms",
            lambda x: (
                T.norm(x)
                + x.norm(dim=1).sum()
                + T.norm(x, p=1, dim=0).sum()
                + x.norm(p="fro", dim=(0, 1))
                + T.linalg.norm(x)
                + T.linalg.vector_norm(x, ord=3, dim=1).sum()
                + T.linalg.vector_norm(x, dim=(0, 1))
                + T.linalg.vector_norm(x, ord=3, dim=(0, 1))
                + T.norm(x, keepdim=True).sum()
            ),
            (rnd(3, 4),),
        ),
        ("logsumexp", lambda x: T.logsumexp(x, 1) + x.logsumexp(dim=1), (rnd(3, 4),)),
        (
            "reshape_view",
            lambda x: (
                T.reshape(x, (4, 3)).sum(0)
                + x.reshape(2, 6).sum(0)[:3]
                + x.view(-1)[:3]
                + x.view(x.size(0), -1).sum(0)[:3]
                + x.view_as(x).sum(1)
                + x.reshape_as(x.T).sum(0)[:3]
            ),
            (rnd(3, 4),),
        ),
        (
            "permute_transpose",
            lambda x: (
                T.permute(x, (2, 0, 1)) * 2
                + x.permute(2, 0, 1)
                + T.transpose(x, 0, 2).transpose(1, 2)
                + x.swapaxes(1, 2).mT.permute([2, 0, 1])
                + T.swapaxes(x, 0, 2).T.contiguous().T.transpose(1, 2)
                + x.mT.mT.permute(2, 0, 1)
            ),
            (rnd(2, 3, 4),),
        ),
        ("t", lambda x: T.t(x) + x.t() + x.T, (rnd(3, 3),)),
        (
            "flatten",
            lambda x: (
                T.flatten(x, 1)
                + x.flatten(1, 2)
                + T.unflatten(x.flatten(), 0, (2, 12)).flatten(1)
                + x.flatten().unflatten(0, (2, -1))
            ),
            (rnd(2, 3, 4),),
        ),
        (
            "squeeze",
            lambda x: (
                T.squeeze(x, 1)
                + x.squeeze()
                + T.unsqueeze(x, 0).squeeze(0).squeeze(1)
                + x.unsqueeze(-1).squeeze(-1).squeeze(dim=1)
            ),
            (rnd(3, 1, 4),),
        ),
        (
            "expand",
            lambda x, y: x.expand(2, 3, 4) + x.expand(2, -1, 4) * 2 + x.expand_as(y) + y,
            (rnd(3, 1), rnd(2, 3, 4)),
        ),
        (
            "chunk_split",
            lambda x: (
                T.cat([T.chunk(x, 2, 1)[0], x[:, :2].chunk(3, dim=0)[1]], 0).sum()
                + T.split(x, 2, dim=1)[1].sum()
                + x.split([1, 2], 0)[1].sum()
                + T.unbind(x, 1)[2]
                + x.unbind()[0][:3]
            ),
            (rnd(3, 4),),
        ),
        (
            "cat_stack",
            lambda x, y: (
                T.cat([x, y], 1) + T.concat([y, x], dim=1) + T.concatenate((x, x), 1) + T.stack([x, y], 1).flatten(1)
            ),
            (rnd(3, 2), rnd(3, 2)),
        ),
        (
            "getitem",
            lambda x: (
                x[0]
                + x[1:, None, ::2].sum(0).flatten()[:2].sum()
                + x[..., -1].sum()
                + x[_idx].sum(0)
                + x[:, _idx[:2]].sum()
                + x[x > 0].sum()
                + x[_bmask].sum()
            ),
            (rnd(3, 3),),
        ),
        (
            "where_masked",
            lambda x, y: (
                T.where(x > 0, x, y)
                + x.where(x < 0.5, y)
                + T.where(y > 0, x, 0.0)
                + x.masked_fill(_bmask, 0.5)
                + T.masked_fill(x, _bmask, -1.0)
            ),
            (rnd(3, 3), rnd(3, 3)),
        ),
        (
            "clamp",
            lambda x: (
                T.clamp(x, -0.5, 0.5)
                + x.clamp(min=-0.2)
                + T.clip(x, max=0.3)
                + x.clip(-0.4, 0.4)
                + T.clamp_min(x, 0.1)
                + x.clamp_max(0.2)
                + T.clamp(x, _lo, _hi)
                + x.clamp_min(0.1)
                + T.clamp_max(x, 0.2)
            ),
            (rnd(3, 4),),
        ),
        ("einsum", lambda a, b: T.einsum("ij,jk->ik", a, b) + T.einsum("ij,jk->ik", [a, b]), (rnd(2, 3), rnd(3, 2))),
        (
            "shapes",
            lambda x: (
                x * x.size(1)
                + x.shape[0]
                + x.dim()
                + x.numel()
                + math.sqrt(x.size(-1))
                + x.ndim
                + x.view(x.size(0) // 2, -1).sum()
                + x.size()[1]
            ),
            (rnd(2, 3),),
        ),
        (
            "core_arith",
            lambda x, y: (
                T.remainder(x, y), T.fmod(x, y), T.atan2(x, y), T.hypot(x, y), x.floor() * x, x.ceil() * x,
                x.round() * x, x.trunc() * x, x.sign() * x, T.fmax(x, y), T.fmin(x, y), 2.0 - x, T.exp2(x),
                T.asinh(x), T.atanh(x.clamp(-0.5, 0.5)), T.acosh(x.abs() + 1.5), x * T.signbit(y),
            ),  # fmt: skip
            (rnd(4, 4), rnd(4, 4) + 0.1),
        ),
        (
            "core_logic",
            lambda x, y: (
                T.where(T.isnan(x) | T.isinf(y) | ~T.isfinite(x) | ((x > 0) & (y > 0)) | ((x > 0) ^ (y < 0)), x, y),
                T.where(T.logical_and(x > 0, y > 0) | T.logical_or(x < -1, y < -1) | T.logical_xor(x > 0, y > 0), x, y),
                x * (x > 0).any(1, keepdim=True) * (y > -5).all(),
                x[T.arange(x.shape[0]), x.argmax(1)] + x[T.arange(x.shape[0]), x.argmin(1)],
            ),
            (rnd(4, 4), rnd(4, 4)),
        ),
        (
            "core_shapes",
            lambda x, y: (
                _scatter(x), x.index_select(1, _idx[:2]), T.roll(x, 1, 1), T.roll(x, (1, 2), (0, 1)), x.t() @ y,
                T.tril(x) + T.triu(y, 1), x.prod(), x.std(), x.unbind(0)[1], T.stack([x, y], 2),
                F.pad(x[None], (1, 2), mode="reflect"), F.pad(x[None, None], (1, 2, 2, 1), mode="reflect"),
                F.pad(x[None], (2, 1), mode="replicate"), F.pad(x[None, None], (1, 1, 1, 1), mode="replicate"),
                F.avg_pool1d(x[None], 2), F.max_pool1d(x[None], 2), F.adaptive_avg_pool1d(x[None], 2),
                F.interpolate(x[None], scale_factor=2, mode="nearest"),
                F.interpolate(x[None, None, None].expand(1, 1, 2, 4, 4) + 0, scale_factor=2, mode="trilinear"),
                F.interpolate(x[None, None, None].expand(1, 1, 2, 4, 4) + 0, scale_factor=2, mode="nearest"),
            ),  # fmt: skip
            (rnd(4, 4), rnd(4, 4)),
        ),
        (
            "sdpa_gqa",
            lambda q, k, v: F.scaled_dot_product_attention(q, k, v, enable_gqa=True, is_causal=True),
            (rnd(2, 4, 3, 4), rnd(2, 2, 3, 4), rnd(2, 2, 3, 2)),
        ),
        (
            "export_ops",  # ops the fx adapter had no entry for
            lambda x: (
                F.interpolate(x, scale_factor=2, mode="nearest"),
                F.interpolate(x, scale_factor=2, mode="bilinear"),
                F.interpolate(x, size=(7, 5), mode="bilinear", align_corners=True),
                F.interpolate(x[..., 0], size=6, mode="linear"),
                F.pixel_shuffle(x[:, :1].repeat(1, 4, 1, 1), 2),
                torch.sort(x, dim=-1).values,
                torch.sort(x, dim=1, descending=True).values,
                torch.topk(x, 2, dim=-1).values,
                torch.std_mean(x, dim=1)[0] + torch.var_mean(x, dim=(1, 2))[1][:, None],
                torch.diagonal(x, dim1=-2, dim2=-1) + torch.diagonal(x, 1, 2, 3).sum(),
                F.instance_norm(x),
                F.glu(x[:, :2], dim=1),
                F.cosine_similarity(x, x * 2 + 1, dim=1),
                torch.linalg.matrix_norm(x),
                torch.logit(torch.sigmoid(x)),
                F.unfold(x, 2),
            ),
            (rnd(2, 3, 4, 4),),
        ),
        ("casts", lambda x: x.to(torch.float64) + x.float() + x.double() + x.type_as(x) + x.clone(), (rnd(3),)),
        ("inplace_methods", lambda x: _inplace(x), (rnd(3, 4),)),
    ]
    acts = {"prelu": (T.tensor([0.2], dtype=T.float64),), "softmax": (1,), "log_softmax": (1,)}
    c += [("F.activations", lambda x: tuple(getattr(F, n)(x, *acts.get(n, ())) for n in _ACTIVATION_NAMES),
           (rnd(3, 4) * 3,))]  # fmt: skip
    c += [
        (
            "torch_acts",
            lambda x: (
                T.sigmoid(x) + T.selu(x) + T.celu(x, 0.5) + T.prelu(x, T.tensor([0.3], dtype=T.float64)) + T.tanh(x)
            ),
            (rnd(3, 4),),
        ),
        (
            "F_kwargs",
            lambda x: (
                F.leaky_relu(x, 0.2)
                + F.elu(x, alpha=0.5)
                + F.gelu(x, approximate="tanh")
                + F.softplus(x, beta=2, threshold=1)
                + F.hardtanh(x, -0.3, 0.6)
                + F.relu(x.clone(), inplace=True)
            ),
            (rnd(3, 4),),
        ),
        ("F_linear", lambda x, w, b: F.linear(x, w, b) + F.linear(x, w), (rnd(3, 4), rnd(2, 4), rnd(2))),
        ("F_bilinear", lambda x, y, w: F.bilinear(x, y, w), (rnd(3, 2), rnd(3, 4), rnd(5, 2, 4))),
        (
            "F_conv",
            lambda x, w, v: F.conv2d(x, w, None, 1, "same").sum() + F.conv1d(x[:, :, 0], v, stride=2).sum(),
            (rnd(2, 2, 5, 5), rnd(3, 2, 3, 3), rnd(3, 2, 3)),
        ),
        (
            "F_conv_transpose",
            lambda x, w, v: (
                F.conv_transpose2d(x, w, stride=2).sum() + F.conv_transpose1d(x[:, :, 0], v, padding=1).sum()
            ),
            (rnd(2, 2, 3, 3), rnd(2, 3, 3, 3), rnd(2, 3, 3)),
        ),
        (
            "F_pool",
            lambda x: (
                F.max_pool2d(x, 2).sum()
                + F.max_pool1d(x[:, :, 0], 2, stride=1).sum()
                + F.avg_pool2d(x, 3, 1, 1).sum()
                + F.avg_pool1d(x[:, :, 1], 2).sum()
                + F.adaptive_avg_pool2d(x, 2).sum()
                + F.adaptive_avg_pool1d(x[:, :, 2], 3).sum()
            ),
            (rnd(2, 2, 6, 6),),
        ),
        (
            "F_norms",
            lambda x, w, b: (
                F.batch_norm(x, _lo, _hi, w, b)
                + F.layer_norm(x, (4,), w, b)
                + F.group_norm(x, 2, w, b)
                + F.normalize(x)
                + F.normalize(x, p=1.0, dim=0)
            ),
            (rnd(3, 4), rnd(4), rnd(4)),
        ),
        (
            "F_embedding_dropout",
            lambda w: (
                F.embedding(_idx, w)
                + F.dropout(w[:3], 0.5, training=False)
                + F.alpha_dropout(w[:3], 0.2, False)
                + F.dropout1d(w[:3], training=False)
                + F.dropout2d(w[:3, :, None], training=False)[..., 0]
                + F.feature_alpha_dropout(w[:3], 0.1, False)
            ),
            (rnd(4, 2),),
        ),
        (
            "F_pad",
            lambda x: (
                F.pad(x, (1, 2)).sum(0)
                + F.pad(x, (1, 2, 0, 1), value=0.5).sum(0)
                + F.pad(x[None], (1, 2), mode="reflect")[0].sum(0)
                + F.pad(x[None], (1, 2), mode="replicate")[0].sum(0)
                + F.pad(x[None], (2, 1), mode="circular")[0].sum(0)
            ),
            (rnd(3, 4),),
        ),
        (
            "F_sdpa",
            lambda q, k, v: (
                F.scaled_dot_product_attention(q, k, v)
                + F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.3)
                + F.scaled_dot_product_attention(q, k, v, attn_mask=_bmask)
                + F.scaled_dot_product_attention(q, k, v, attn_mask=q @ k.transpose(-2, -1) * 0.1)
                + F.scaled_dot_product_attention(q, k, v, attn_mask=(q @ k.transpose(-2, -1)) > -1.0)
            ),
            (rnd(2, 3, 4), rnd(2, 3, 4), rnd(2, 3, 2)),
        ),
    ]
    modules = [
        nn.Linear(4, 3), nn.Conv1d(4, 2, 1), nn.ReLU(), nn.ReLU6(), nn.LeakyReLU(), nn.PReLU(), nn.ELU(), nn.SELU(),
        nn.CELU(), nn.GELU(), nn.SiLU(), nn.Mish(), nn.Softplus(), nn.Sigmoid(), nn.Tanh(), nn.Hardtanh(),
        nn.Hardswish(), nn.Hardsigmoid(), nn.LogSigmoid(), nn.Softsign(), nn.Tanhshrink(), nn.Softmax(1),
        nn.LogSoftmax(1), nn.Identity(), nn.Dropout(), nn.Dropout1d(), nn.AlphaDropout(), nn.FeatureAlphaDropout(),
        nn.Flatten(0), nn.Unflatten(1, (2, 2)), nn.LayerNorm(4), nn.BatchNorm1d(4), nn.Dropout2d(),
    ]  # fmt: skip
    flat = [m for m in modules if not isinstance(m, (nn.Conv1d, nn.Dropout2d))]
    c += [("nn.layers", _Layers(flat).double().eval(), (rnd(3, 4) * 2,))]
    c += [("nn.layers_3d", _Layers([nn.Conv1d(4, 2, 1), nn.Dropout2d()]).double().eval(), (rnd(3, 4, 2),))]
    return c


class _Layers(nn.Module):
    """Several layers applied to the same input: one export for all of them."""

    def __init__(self, layers):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x):
        return tuple(m(x) for m in self.layers)


def _group(ns, names, arity=1):
    return lambda *xs: tuple(getattr(ns, n)(*xs[:arity]) for n in names)


def _compares(ns):
    return lambda x, y: tuple(_compare(getattr(ns, n))(x, y) for n in ("gt", "lt", "ge", "le", "eq", "ne"))


def _scatter(x):
    y = x.clone()
    y[:, 0] = x[:, 1] * 2  # select_scatter
    y[_idx[:2]] = y[_idx[:2]] * 3  # index_put
    return y


def _unary(ns, name, *args):
    return lambda x: getattr(ns, name)(x, *args)


def _binary(ns, name):
    return lambda x, y: getattr(ns, name)(x, y)


def _compare(op):
    return lambda x, y: T.where(op(x, y), x, y * 2)


def _inplace(x):
    y = x.clone()
    y.add_(1.0)
    y.mul_(x)
    y.relu_()
    y += x
    y.sigmoid_()
    z = F.relu(y - 0.5, inplace=True)
    return y + z.tanh_()


OPS = _ops_cases()


@pytest.mark.parametrize("case", OPS, ids=[c[0] for c in OPS])
def test_op_matches_torch_jvp(case):
    name, fn, inputs = case
    g = from_torch(fn, *inputs)
    xs = tuple(x.numpy() for x in inputs)
    out = fn(*inputs)
    _close(g(*xs), out, rtol=LOOSE.get(name, 1e-12), atol=1e-12)
    gen = torch.Generator().manual_seed(0)
    tangents = tuple(torch.randn(x.shape, generator=gen, dtype=x.dtype) for x in inputs)
    _, t_torch = torch.func.jvp(fn, inputs, tangents)
    _, t_dj = dj.jvp(g, xs, tuple(t.numpy() for t in tangents))
    _close(t_dj, t_torch, LOOSE.get(name, RTOL))


# --- what export adds: provenance, errors, dynamic batch, the cache -----------------------------
class _Erf(nn.Module):
    def forward(self, x):
        return torch.special.i0(x) + 1


def test_nodes_record_the_aten_op_module_and_source_line():
    model = CASES["resblock_bn"].model
    g = from_torch(model, *CASES["resblock_bn"].inputs)
    conv = next(n for n in g.nodes if n.meta.get("target") == "aten.convolution.default")
    assert conv.name == "convolution" and conv.op == "conv" and conv.meta["module"] == "conv1"
    bn = next(n for n in g.nodes if n.op == "batch_norm")
    assert bn.meta["target"] == "aten._native_batch_norm_legit_no_training.default" and bn.meta["module"] == "bn1"
    add = next(n for n in g.nodes if n.meta.get("target") == "aten.add.Tensor")
    assert add.meta["source"].endswith("zoo.py:44")  # out += x in ResBlock.forward


def test_unsupported_op_names_the_aten_op_module_and_source_line():
    model = nn.Sequential(nn.Linear(2, 2), _Erf()).double()
    with pytest.raises(dj.UnsupportedOpError) as e:
        from_torch(model, rnd(3, 2))
    msg = str(e.value)
    assert "aten.i0.default" in msg and "graph node 'i0'" in msg and "module '1' (_Erf)" in msg
    assert "test_export.py:" in msg and "ATEN_OPS" in msg
    with pytest.raises(dj.UnsupportedOpError, match="aten.max_pool3d_with_indices.default"):
        from_torch(lambda x: F.max_pool3d(x, 2), rnd(1, 1, 2, 4, 4))


class _Branchy(nn.Module):
    def forward(self, x):
        if x.sum() > 0:
            return x
        return -x


def test_a_model_export_cannot_handle_gets_exports_reason_and_the_fix():
    with pytest.raises(djt.ExportFailedError) as e:
        from_torch(_Branchy(), rnd(3))
    msg = str(e.value)
    assert "torch.export could not export _Branchy" in msg and "export said:" in msg
    assert "torch.cond" in msg and "Dim" in msg and "strict=False" in msg and "no forward-mode rule" not in msg
    assert isinstance(e.value, dj.UnsupportedOpError) and "data-dependent" in e.value.reason
    with pytest.raises(TypeError, match="needs example inputs"):
        from_torch(nn.Linear(2, 2))


@pytest.mark.parametrize(
    "model", [nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5)), nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))]
)
def test_training_mode_asks_for_eval_before_torch_runs_the_model(model):
    model = model.double()
    ran = []
    hook = model.register_forward_pre_hook(lambda *a: ran.append(1))
    stats = [b.clone() for b in model.buffers()]
    with pytest.raises(dj.UnsupportedOpError, match=r"training mode.*call model\.eval\(\)"):
        from_torch(model.train(), rnd(4, 2))
    assert not ran and all(torch.equal(a, b) for a, b in zip(stats, model.buffers()))
    hook.remove()
    from_torch(model.eval(), rnd(4, 2))
    with pytest.raises(dj.UnsupportedOpError, match="training mode"):
        from_torch(lambda x: F.dropout(x, 0.1), rnd(4, 2))


def test_autograd_function_is_lowered_through_its_forward_not_its_backward():
    fn = lambda x: WrongTanh.apply(x * 2)
    x = rnd(3, 4)
    g = from_torch(fn, x)
    J = dj.batch_jacobian(g, x.numpy())
    exact = np.stack([np.diag(2 / np.cosh(2 * r) ** 2) for r in x.numpy()])
    np.testing.assert_allclose(J, exact, rtol=1e-12)  # the forward's derivative, not the 1%-wrong backward
    J_torch = torch.autograd.functional.jacobian(lambda x: fn(x).sum(0), x).permute(1, 0, 2).numpy()
    np.testing.assert_allclose(J_torch, exact * 1.01, rtol=1e-12)


def test_any_batch_size_and_a_fixed_one_says_so():
    model = CASES["self_attention"].model  # view(B, T, heads, D // heads): shape arithmetic on B
    (x,) = CASES["self_attention"].inputs
    g = from_torch(model, x)
    for B in (1, 5):
        xb = rnd(B, *x.shape[1:])
        _close(g(xb.numpy()), model(xb))
        J = dj.batch_jacobian(g, xb.numpy())
        assert J.shape == (B, 4, 8, 4, 8)
    assert from_torch(model, x[:1]) is not g and djt.lower(model, x[:1]).program is djt.lower(model, x).program
    fresh = type(model)().double().eval()
    g1 = from_torch(fresh, x[:1])  # a size-1 example first: export fixes the batch size
    assert not djt.lower(fresh, x[:1]).dynamic_batch
    with pytest.raises(ValueError, match=r"exported for \(1, 4, 8\).*example input of the shape you use"):
        g1(x.numpy())


def test_squeeze_of_the_batch_axis_follows_the_batch_size_as_in_torch():
    fn = lambda x: (x * 2).squeeze() + x.squeeze(0).sum()
    x = rnd(3, 1, 4)
    g = from_torch(fn, x)  # exported with a dynamic batch of 3: at 1, torch squeezes the batch axis too
    for xb in (x, x[:1]):
        _close(g(xb.numpy()), fn(xb))
        _close(dj.jacobian(g, xb.numpy()), torch.autograd.functional.jacobian(fn, xb))


def test_lower_is_cached_and_reads_parameters_at_call_time():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double().eval()
    x = rnd(5, 3)
    first = djt.lower(model, x)
    again = djt.lower(model, rnd(7, 3))  # another batch size: the same dynamic program
    assert again.program is first.program and again.graph.nodes is first.graph.nodes
    assert first.export_time > 0 and first.lowering_time > 0
    with torch.no_grad():
        model[0].weight.mul_(-2.0)
    g = djt.lower(model, x).graph
    J = torch.autograd.functional.jacobian(lambda x: model(x).sum(0), x).permute(1, 0, 2)
    _close(dj.batch_jacobian(g, x.numpy()), J)  # not the Jacobian of the old weights
    assert djt.lower(model, x, dtype=np.float32).program is not first.program
    model[1] = nn.Sigmoid()  # a replaced layer: lowered anew
    g = djt.lower(model, x).graph
    assert any(n.op == "sigmoid" for n in g.nodes)
    _close(g(x.numpy()), model(x))


def test_graph_values_name_every_node_as_fx_does():
    model, inputs = CASES["gated_mlp"].model, CASES["gated_mlp"].inputs
    low = djt.lower(model, *inputs)
    values = low.graph.values(*(x.numpy() for x in inputs))
    fx_names = [n.name for n in low.program.graph.nodes if n.op == "call_function"]
    for name in fx_names:
        ref = low.refs[name]
        assert ref is None or isinstance(ref, tuple) or ref.kind != "node" or ref.name in values
    out = [n for n in low.program.graph.nodes if n.op == "output"][0].args[0][0]
    np.testing.assert_allclose(values[low.refs[out.name].name], model(*inputs).detach().numpy(), rtol=1e-12)


def test_integer_and_boolean_inputs_are_constants():
    fn = lambda q, mask, idx: F.scaled_dot_product_attention(q, q, q, attn_mask=mask)[:, idx]
    q, idx = rnd(2, 3, 4), torch.tensor([2, 0])
    g = from_torch(fn, q, _bmask, idx)
    _close(g(q.numpy(), _bmask.numpy(), idx.numpy()), fn(q, _bmask, idx))
    J = torch.autograd.functional.jacobian(lambda q: fn(q, _bmask, idx), q)
    _close(dj.jacobian(lambda q: g(q, _bmask.numpy(), idx.numpy()), q.numpy()), J)


class _InPlace(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 3)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        y = self.lin(x)
        y += x
        y.mul_(2.0)
        y = self.act(y)
        y = y * 1.5
        F.elu(y, inplace=True)
        y = y * 1.0
        y[:, 0] = x[:, 1] * 3
        return torch.tanh(y) + x


def test_in_place_ops_and_default_arguments():
    torch.manual_seed(0)
    model = _InPlace().double().eval()
    x = rnd(4, 3)
    g = from_torch(model, x)
    _close(g(x.numpy()), model(x))
    _close(dj.jacobian(g, x.numpy()), torch.autograd.functional.jacobian(model, x))

    class WithScale(nn.Module):
        def forward(self, x, scale=2.0):
            return x * scale

    g = from_torch(WithScale(), rnd(2))
    assert g.inputs == ("x",)
    np.testing.assert_allclose(g(np.ones(2)), [2.0, 2.0])


def test_as_strided_as_a_plain_view_and_otherwise_a_named_error():
    x = rnd(4, 4)
    fn = lambda x: (x * 2).as_strided((2, 8), (8, 1)).sin()
    g = from_torch(fn, x)
    assert any(n.meta["target"] == "aten.as_strided.default" and n.op == "reshape" for n in g.nodes)
    _close(g(x.numpy()), fn(x))
    _close(dj.jacobian(g, x.numpy()), torch.autograd.functional.jacobian(fn, x))
    with pytest.raises(dj.UnsupportedOpError, match="as_strided is supported only as a plain view"):
        from_torch(lambda x: (x * 2).as_strided((3, 3), (4, 1)), x)


# --- what export specialises or adds to the outputs: mutations, fixed sizes, guards, baked numbers ---
class _BufMut(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("calls", torch.zeros((), dtype=torch.float64))

    def forward(self, x):
        self.calls.add_(1)  # a call counter kept in eval mode: a BUFFER_MUTATION output comes first
        return torch.tanh(x) * 2


class _InMut(nn.Module):
    def forward(self, x):
        x.mul_(2)
        return x + 1, x.sum()


@pytest.mark.parametrize("model", [_BufMut(), _InMut()], ids=["buffer", "input"])
def test_a_mutating_forward_returns_its_own_output(model):
    x = rnd(3, 4)
    g = from_torch(model.eval(), x.clone())
    xn = x.numpy().copy()
    _close(g(xn), model(x.clone()))
    np.testing.assert_array_equal(xn, x.numpy())  # the caller's array is not mutated
    J = torch.autograd.functional.jacobian(lambda x: model(x.clone()), x)
    _close(dj.jacobian(g, x.numpy()), J)


class _Loop(nn.Module):
    def forward(self, x):
        h = torch.zeros_like(x[0])
        for t in range(x.shape[0]):  # export unrolls it: axis 0 is fixed to the example's size
            h = torch.tanh(h + x[t])
        return h


def test_a_size_export_specialised_is_fixed_and_says_so():
    x2, x5 = rnd(2, 3), rnd(5, 3)
    low = djt.lower(_Loop(), x2)
    assert low.input_shapes == ((2, 3),) and not low.dynamic_batch
    with pytest.raises(ValueError, match=r"exported for \(2, 3\);") as e:
        low.graph(x5.numpy())
    assert "any batch size" not in str(e.value)
    g = from_torch(_Loop(), x5)  # a new example of that size: a new program, not the cached 2-step one
    _close(g(x5.numpy()), _Loop()(x5))
    _close(dj.jacobian(g, x5.numpy()), torch.autograd.functional.jacobian(_Loop(), x5))


class _Guarded(nn.Module):
    def forward(self, x):
        return x * 2 if x.shape[0] > 2 else x * 3  # export: B >= 3


def test_export_guards_on_the_batch_size_are_enforced():
    model, x2, x7 = _Guarded(), rnd(2, 3), rnd(7, 3)
    g = from_torch(model, rnd(4, 3))
    _close(g(x7.numpy()), model(x7))
    with pytest.raises(ValueError, match=r"shape \(2, 3\).*B >= 3.*example input of batch size 2"):
        g(x2.numpy())
    g2 = from_torch(model, x2)  # outside the cached program's range: lowered anew
    _close(g2(x2.numpy()), model(x2))
    _close(dj.jacobian(g2, x2.numpy()), torch.autograd.functional.jacobian(model, x2))


class _Scale(nn.Module):
    def forward(self, x, s):
        return x * s


def test_a_python_number_input_must_be_the_one_it_was_lowered_with():
    x = rnd(2, 3)
    g = from_torch(_Scale(), x, 2.0)
    _close(g(x.numpy(), 2.0), _Scale()(x, 2.0))
    _close(dj.jacobian(lambda x: g(x, 2.0), x.numpy()), torch.autograd.functional.jacobian(lambda x: x * 2.0, x))
    for other in (5.0, np.array(5.0)):
        with pytest.raises(ValueError, match=r"'s' is 5.0.*lowered with 2.0.*from_torch.*tensor"):
            g(x.numpy(), other)
    _close(from_torch(_Scale(), x, 5.0)(x.numpy(), np.array(5.0)), _Scale()(x, 5.0))


def test_the_cache_sees_what_export_bakes_in():
    """A changed Python attribute (LeakyReLU's slope, a float forward reads, train/eval) or tensor
    attribute that is not a parameter (reassigned or written in place) is a new program."""

    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(3, 3).double()
            self.act = torch.nn.LeakyReLU(0.1)
            self.c = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
            self.alpha = 0.5

        def forward(self, x):
            return self.act(self.lin(x)) * self.c + self.alpha

    m = M().eval()
    x = torch.randn(4, 3, dtype=torch.float64)

    def agrees():
        g = from_torch(m, x)
        np.testing.assert_allclose(g(x.numpy()), m(x).detach().numpy(), rtol=1e-13, atol=1e-13)
        J = torch.autograd.functional.jacobian(m, x).numpy()
        np.testing.assert_allclose(dj.jacfwd(g)(x.numpy()), J, rtol=1e-12, atol=1e-13)

    agrees()
    m.act.negative_slope = 0.5
    agrees()
    m.alpha = 100.0
    agrees()
    m.c.mul_(10)
    agrees()
    m.c = torch.tensor([5.0, 6.0, 7.0], dtype=torch.float64)
    agrees()


def test_no_grad_blocks_in_forward_stop_gradients_as_in_torch():
    """Export under grad mode keeps forward's own no_grad() blocks; their values are constants to
    torch's autograd, so they must be to the Graph (was: differentiated through)."""

    class M(torch.nn.Module):
        def forward(self, x):
            with torch.no_grad():
                s = x.norm(dim=1, keepdim=True)
                m = x.mean(dim=1, keepdim=True)
            return (x - m) / s + torch.tanh(x) * s

    x = torch.randn(3, 4, dtype=torch.float64)
    g = from_torch(M().eval(), x)
    J = torch.autograd.functional.jacobian(M(), x).numpy()
    np.testing.assert_allclose(dj.jacfwd(g)(x.numpy()), J, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dj.jacrev(g)(x.numpy()), J, rtol=1e-12, atol=1e-14)
