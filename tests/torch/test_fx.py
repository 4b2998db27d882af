"""from_torch: every zoo model and every table entry agrees with torch, values and derivatives."""

from __future__ import annotations

import math
import operator

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402
from torch.fx import symbolic_trace  # noqa: E402
from zoo import zoo  # noqa: E402

import dualjac as dj  # noqa: E402
from dualjac.torch import from_torch  # noqa: E402
from dualjac.torch import fx as djfx  # noqa: E402

RTOL, ATOL = 1e-9, 1e-12
# torch's hardsigmoid derivative uses 1/6 rounded to float32, even in float64 (0.1666666716...):
# dualjac's exact 1/6 differs from it by 3e-8 relative.
LOOSE = {"mlp_hard": 1e-7, "F.hardsigmoid": 1e-7, "nn.Hardsigmoid": 1e-7}
LOOSE["casts"] = 1e-6  # x.float() rounds to float32 in torch; dualjac computes in the graph's dtype
CASES = {c.name: c for c in zoo()}


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
    g = from_torch(model)
    xs = tuple(x.numpy() for x in inputs)
    _close(g(*xs), model(*inputs), rtol=1e-12, atol=1e-13)

    diff = [i for i, x in enumerate(inputs) if x.is_floating_point()]

    def merged(call, all_inputs):
        def f(*floats):
            args = list(all_inputs)
            for i, v in zip(diff, floats):
                args[i] = v
            return call(*args)

        return f

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
    g = from_torch(CASES["resblock_bn"].model)
    assert set(g.params) == {"conv1.weight", "bn1.weight", "bn1.bias", "conv2.weight", "bn2.weight", "bn2.bias"}
    assert "bn1.running_mean" in g.constants and g.dtype == np.float64
    text = str(g)
    assert "batch_norm" in text and "@conv1.weight" in text and "$bn1.running_var" in text


def test_dtype_and_float32():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.GELU(), nn.Linear(4, 2)).eval()
    g32, g64 = from_torch(model), from_torch(model, dtype=np.float64)
    assert g32.dtype == np.float32 and g64.dtype == np.float64
    x = torch.randn(5, 3)
    np.testing.assert_allclose(g32(x.numpy()), model(x).detach().numpy(), rtol=1e-5, atol=1e-6)
    assert g64(x.double().numpy()).dtype == np.float64
    with pytest.raises(ValueError, match="backend"):
        from_torch(model, backend="jax")


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
    for name in djfx._UNARY:
        dom = pos if name in ("log", "log2", "log10", "sqrt", "reciprocal") else unit
        c += [(f"torch.{name}", _unary(T, name), (dom(3, 4),)), (f"Tensor.{name}", _unary(M, name), (dom(3, 4),))]
    for name in ("add", "sub", "mul", "div", "pow", "maximum", "minimum"):
        c += [(f"torch.{name}", _binary(T, name), (pos(3, 4), pos(4)))]
        c += [(f"Tensor.{name}", _binary(M, name), (pos(3, 4), pos(4)))]
    for name in ("gt", "lt", "ge", "le", "eq", "ne"):
        c += [(f"torch.{name}", _compare(getattr(T, name)), (rnd(3, 4), rnd(4)))]
        c += [(f"Tensor.{name}", _compare(getattr(M, name)), (rnd(3, 4), rnd(4)))]
    for op in (operator.gt, operator.lt, operator.ge, operator.le):
        c += [(f"operator.{op.__name__}", _compare(op), (rnd(3, 4), rnd(3, 4)))]
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
                + x.norm(p="nuc")
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
        ("casts", lambda x: x.to(torch.float64) + x.float() + x.double() + x.type_as(x) + x.clone(), (rnd(3),)),
        ("inplace_methods", lambda x: _inplace(x), (rnd(3, 4),)),
    ]
    for name in djfx._ACTIVATIONS:
        args = {"prelu": (T.tensor([0.2], dtype=T.float64),), "softmax": (1,), "log_softmax": (1,)}.get(name, ())
        c += [(f"F.{name}", _unary(F, name, *args), (rnd(3, 4) * 3,))]
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
    for m in modules:
        x = rnd(3, 4, 1)[..., 0] * 2 if not isinstance(m, (nn.Conv1d, nn.Dropout2d)) else rnd(3, 4, 2)
        c += [(f"nn.{type(m).__name__}", m.double().eval(), (x,))]
    return c


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
    g = from_torch(fn)
    xs = tuple(x.numpy() for x in inputs)
    out = fn(*inputs)
    _close(g(*xs), out, rtol=LOOSE.get(name, 1e-12), atol=1e-12)
    gen = torch.Generator().manual_seed(0)
    tangents = tuple(torch.randn(x.shape, generator=gen, dtype=x.dtype) for x in inputs)
    _, t_torch = torch.func.jvp(fn, inputs, tangents)
    _, t_dj = dj.jvp(g, xs, tuple(t.numpy() for t in tangents))
    _close(t_dj, t_torch, LOOSE.get(name, RTOL))


def test_every_table_entry_is_exercised():
    """Like tests/test_rule_coverage.py: a mapping no test traces cannot exist."""
    funcs, methods, modules = set(), set(), set()
    for fn in [c[1] for c in OPS] + [c.model for c in CASES.values()]:
        root = fn if isinstance(fn, nn.Module) else None
        if type(fn) in djfx.MODULE_OPS:  # a single layer: from_torch lowers it whole
            modules.add(type(fn))
            continue
        gm = symbolic_trace(fn)
        for n in gm.graph.nodes:
            if n.op == "call_function":
                funcs.add(n.target)
            elif n.op == "call_method":
                methods.add(n.target[:-1] if n.target.endswith("_") else n.target)
            elif n.op == "call_module":
                modules.add(type(gm.get_submodule(n.target)))
        if root is not None:
            modules.update(type(m) for m in root.modules())
    missing = [k for k in djfx.FUNCTION_OPS if k not in funcs]
    missing += [f"Tensor.{k}" for k in djfx.METHOD_OPS if k not in methods]
    missing += [k.__name__ for k in djfx.MODULE_OPS if k not in modules]
    assert not missing, f"table entries no test exercises: {missing}"


# --- errors and in-place ops --------------------------------------------------------------
class _Erf(nn.Module):
    def forward(self, x):
        return torch.erf(x) + 1


def test_unsupported_op_names_the_node_target_and_module():
    model = nn.Sequential(nn.Linear(2, 2), _Erf())
    with pytest.raises(dj.UnsupportedOpError) as e:
        from_torch(model)
    msg = str(e.value)
    assert "torch.erf" in msg and "fx node 'erf'" in msg and "module '1' (_Erf)" in msg and "test_fx.py" in msg
    with pytest.raises(dj.UnsupportedOpError, match="Upsample.*module '0'"):
        from_torch(nn.Sequential(nn.Upsample(scale_factor=2)))
    with pytest.raises(dj.UnsupportedOpError, match="Tensor.cummax"):
        from_torch(lambda x: x.cummax(0)[0])


class _Branchy(nn.Module):
    def forward(self, x):
        if x.sum() > 0:
            return x
        return -x


def test_untraceable_module_says_fx_could_not_trace_it():
    with pytest.raises(dj.UnsupportedOpError, match="torch.fx could not trace _Branchy") as e:
        from_torch(_Branchy())
    assert "control flow" in str(e.value)


@pytest.mark.parametrize(
    "model", [nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5)), nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))]
)
def test_training_mode_asks_for_eval(model):
    with pytest.raises(dj.UnsupportedOpError, match=r"training mode.*call model\.eval\(\)"):
        from_torch(model.train())
    from_torch(model.eval())
    with pytest.raises(dj.UnsupportedOpError, match="training mode"):
        from_torch(lambda x: F.dropout(x, 0.1))


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
        return torch.tanh(y) + x


def test_in_place_ops_are_lowered_out_of_place():
    torch.manual_seed(0)
    model = _InPlace().double().eval()
    x = torch.randn(4, 3, dtype=torch.float64)
    g = from_torch(model)
    _close(g(x.numpy()), model(x))
    J = torch.autograd.functional.jacobian(model, x)
    _close(dj.jacobian(g, x.numpy()), J)


def test_default_placeholders_are_constants():
    class WithMask(nn.Module):
        def forward(self, x, scale=2.0):
            return x * scale

    g = from_torch(WithMask())
    assert g.inputs == ("x",)
    np.testing.assert_allclose(g(np.ones(2)), [2.0, 2.0])


def test_sdpa_with_a_boolean_mask_as_graph_input():
    def attend(q, k, v, mask):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)

    q, k, v = rnd(2, 3, 4), rnd(2, 3, 4), rnd(2, 3, 2)
    g = from_torch(attend)
    _close(g(q.numpy(), k.numpy(), v.numpy(), _bmask.numpy()), attend(q, k, v, _bmask), rtol=1e-12)
    J = torch.autograd.functional.jacobian(lambda q: attend(q, k, v, _bmask), q)
    _close(dj.jacobian(lambda q: g(q, k.numpy(), v.numpy(), _bmask.numpy()), q.numpy()), J)


def test_a_float_mask_input_is_added_and_differentiated():
    """A float attention mask given as a graph input (its dtype unknown while lowering) is added
    to the scores, with its derivative: d/dmask agrees with torch."""

    class Attn(torch.nn.Module):
        def forward(self, q, mask):
            return torch.nn.functional.scaled_dot_product_attention(q, q, q, attn_mask=mask)

    g = from_torch(Attn())
    q = np.random.default_rng(0).standard_normal((2, 3, 4))
    mask = np.random.default_rng(1).standard_normal((3, 3))
    J = dj.jacfwd(g, argnums=0)(q, mask)  # the mask as a constant: fine
    Jt = torch.autograd.functional.jacobian(lambda q: Attn()(q, torch.from_numpy(mask)), torch.from_numpy(q))
    np.testing.assert_allclose(J, Jt.numpy(), rtol=1e-9, atol=1e-12)
    Jm = torch.autograd.functional.jacobian(lambda m: Attn()(torch.from_numpy(q), m), torch.from_numpy(mask))
    np.testing.assert_allclose(dj.jacfwd(g, argnums=1)(q, mask), Jm.numpy(), rtol=1e-9, atol=1e-12)


# --- fixes from review: each of these failed before ---------------------------------------
def _no_hang(fn, seconds=10):
    """Run fn, failing (instead of hanging the suite) if it takes longer than ``seconds``."""
    import signal

    def alarm(*_):
        raise TimeoutError(f"took more than {seconds} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        return fn()
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def test_pieces_passed_whole_to_cat_or_stack_never_hang():
    for fn in (lambda x: torch.stack(x.unbind(1)), lambda x: torch.cat(x.chunk(2)), lambda x: torch.cat(x.split(2))):
        with pytest.raises(dj.UnsupportedOpError, match=r"unpack the pieces"):
            _no_hang(lambda: from_torch(fn))

    # with a static list of sizes the number of pieces is known: they are iterated
    def fn(x):
        return torch.cat(x.split([1, 3], dim=1)[::-1], dim=1) + torch.stack(x.split([2, 2], 1)).sum(0).sum(1)[:, None]

    x = rnd(3, 4)
    g = _no_hang(lambda: from_torch(fn))
    _close(g(x.numpy()), fn(x))
    _close(dj.jacobian(g, x.numpy()), torch.autograd.functional.jacobian(fn, x))
    with pytest.raises(dj.UnsupportedOpError, match="pieces"):
        from_torch(lambda x: x.chunk(2)[1:][0])
    # negative indices count from the end of the pieces torch gives (chunk(3) of 4 rows: 2 pieces)
    fn = lambda x: torch.cat((x.chunk(2)[-1], x.chunk(3)[-1], x.split(3)[-1], x.unbind(0)[-1][None]))
    x4 = rnd(4, 3)
    _close(from_torch(fn)(x4.numpy()), fn(x4))


def test_sdpa_boolean_mask_computed_from_an_input_masks():
    def attend(q, m):
        return F.scaled_dot_product_attention(q, q, q, attn_mask=m.unsqueeze(0))

    def attend_t(q, m):
        return F.scaled_dot_product_attention(q, q, q, attn_mask=m.T)

    q = rnd(2, 3, 4)
    for fn in (attend, attend_t):
        g = from_torch(fn)
        _close(g(q.numpy(), _bmask.numpy()), fn(q, _bmask))
        J = torch.autograd.functional.jacobian(lambda q: fn(q, _bmask), q)
        _close(dj.jacobian(lambda q: g(q, _bmask.numpy()), q.numpy()), J)
    # a float mask computed from an input still adds, and is differentiated
    fn = lambda q, m: F.scaled_dot_product_attention(q, q, q, attn_mask=m * 2.0)
    fm = rnd(3, 3)
    g = from_torch(fn)
    _close(g(q.numpy(), fm.numpy()), fn(q, fm))
    _close(dj.jacobian(g, (q.numpy(), fm.numpy())), torch.autograd.functional.jacobian(fn, (q, fm)))
    assert not hasattr(djfx, "_is_bool")


def test_sdpa_row_masked_entirely_is_zero_as_in_torch():
    m = torch.ones(3, 3, dtype=torch.bool)
    m[1] = False
    fm = torch.zeros(3, 3, dtype=torch.float64)
    fm[2] = -math.inf
    fn = lambda q, m: F.scaled_dot_product_attention(q, q, q, attn_mask=m)
    q = rnd(2, 3, 4)
    g = from_torch(fn)
    for mask in (m, fm):
        out = g(q.numpy(), mask.numpy())
        _close(out, fn(q, mask))
        J = torch.autograd.functional.jacobian(lambda q: fn(q, mask), q)
        _close(dj.jacobian(lambda q: g(q, mask.numpy()), q.numpy()), J)


def test_vector_norm_over_several_dims_follows_torch():
    x = rnd(2, 3, 4)
    z = torch.zeros(2, 3, 4, dtype=torch.float64)
    for ord in (0, 1, 2, 3, 0.5, -1, math.inf, -math.inf):
        for dim in ((0, 2), (0, 1, 2), (-1, 0)):
            for keepdim in (False, True):
                fn = lambda x: torch.linalg.vector_norm(x, ord=ord, dim=dim, keepdim=keepdim)
                g = from_torch(fn)
                for point in (x, z) if ord in (2, math.inf) else (x,):
                    _close(g(point.numpy()), fn(point))
                    t = rnd(2, 3, 4)
                    _, t_torch = torch.func.jvp(fn, (point,), (t,))
                    _, t_dj = dj.jvp(g, (point.numpy(),), (t.numpy(),))
                    _close(t_dj, t_torch, rtol=1e-9)


def test_layer_norm_with_a_shape_from_the_input():
    fn = lambda x: F.layer_norm(x, x.shape[-1:])
    x = rnd(3, 4)
    g = from_torch(fn)
    _close(g(x.numpy()), fn(x))
    _close(dj.jacobian(g, x.numpy()), torch.autograd.functional.jacobian(fn, x))


def test_a_bare_multi_input_layer_lowers():
    torch.manual_seed(0)
    layer = nn.Bilinear(3, 2, 4).double()
    g = from_torch(layer)
    assert g.inputs == ("input1", "input2") and set(g.params) == {"weight", "bias"}
    x1, x2 = rnd(5, 3), rnd(5, 2)
    _close(g(x1.numpy(), x2.numpy()), layer(x1, x2))
    g = from_torch(nn.ConvTranspose1d(2, 3, 3).double())  # a layer with a defaulted argument
    assert g.inputs == ("input",)
    with pytest.raises(dj.UnsupportedOpError, match="training mode"):
        from_torch(nn.BatchNorm1d(3))


def test_max_and_min_with_other_keyword():
    fn = lambda x, y: torch.max(x, other=y) + torch.min(x, other=y) * 2
    x, y = rnd(3, 4), rnd(3, 4)
    g = from_torch(fn)
    _close(g(x.numpy(), y.numpy()), fn(x, y))
    J = torch.autograd.functional.jacobian(fn, (x, y))
    _close(dj.jacobian(g, (x.numpy(), y.numpy())), J)


def test_adaptive_avg_pool_with_none_and_module_errors_name_the_layer():
    x = rnd(2, 3, 5, 4)
    for m in (nn.AdaptiveAvgPool2d((2, None)), nn.AdaptiveAvgPool2d((None, 3))):
        g = from_torch(nn.Sequential(m))
        _close(g(x.numpy()), m(x))
    fn = lambda x: F.adaptive_avg_pool2d(x, (None, 2))
    _close(from_torch(fn)(x.numpy()), fn(x))
    with pytest.raises(dj.UnsupportedOpError) as e:
        from_torch(nn.Sequential(nn.Linear(4, 4), nn.MaxPool1d(2, return_indices=True)))
    msg = str(e.value)
    assert "rule for 1 " not in msg and "torch.nn.modules.pooling.MaxPool1d at fx node" in msg
    assert "return_indices" in msg


class _PadEmbed(nn.Module):
    def __init__(self, padding_idx):
        super().__init__()
        self.emb = nn.Embedding(5, 3, padding_idx=padding_idx)
        self.lin = nn.Linear(3, 2)
        self.table = nn.Parameter(torch.randn(5, 2))

    def forward(self, idx):
        e = self.emb(idx)
        return self.lin(e * e.detach() + torch.detach(e).sin()) + F.embedding(idx, self.table, padding_idx=-1)


@pytest.mark.parametrize("padding_idx", [1, -2])
def test_embedding_padding_row_and_detach_have_torchs_zero_gradient(padding_idx):
    from dualjac.torch import check

    torch.manual_seed(0)
    model = _PadEmbed(padding_idx).double().eval()
    idx = torch.tensor([[0, 1, 2], [3, 4, 1]])
    report = check(model, idx, wrt="params")
    assert report.ok, str(report)
    J = dj.jacfwd(lambda p: from_torch(model)(idx.numpy(), params=p))(from_torch(model).params)
    assert np.all(J["emb.weight"][..., padding_idx % 5, :] == 0) and np.all(J["table"][..., 4, :] == 0)
    assert np.any(J["emb.weight"][..., 0, :] != 0) and np.any(J["table"][..., 0, :] != 0)


def test_a_positional_inplace_flag_is_followed():
    class M(nn.Module):
        def forward(self, x):
            y = F.elu(x, 0.5, True)  # inplace=True by position (fx records it as a keyword): x now holds elu(x)
            return x * 2 + y

    x = torch.randn(3, 4, dtype=torch.float64)
    g = from_torch(M())
    np.testing.assert_allclose(g(x.numpy()), M()(x.clone()).numpy(), rtol=1e-12)
