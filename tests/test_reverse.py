"""Reverse mode (linearize + transpose): every linear primitive and every rule's linearization
satisfies the transposition identity <u, J v> = <J^T u, v>, with J v from forward mode; vjp, jacrev,
grad, hessian and hvp agree with torch.func and float64 central differences; mode="auto" picks as
documented; mixed forward/reverse nesting keeps perturbations apart."""

from __future__ import annotations

import logging

import numpy as np
import pytest

import dualjac as dj
from dualjac.tape import Tape
from dualjac.testing import numerical_jacobian
from dualjac.tree import flatten, unflatten
from rule_specs import all_specs

torch = pytest.importorskip("torch")

SPECS = all_specs()
# Specs whose tangents use an op with no transpose: reverse mode must raise NoTransposeError, naming it.
REVERSE_RAISES = {
    "einsum-trace": "einsum with a repeated index on the tangent (a diagonal)",
    "einsum-trace-implicit": "einsum with a repeated index on the tangent (a diagonal)",
    "einsum-diagonal": "einsum with a repeated index on the tangent (a diagonal)",
    "pad-all-axes": "np.pad reflect_type='odd' (2 x edge - reflection)",
    "pad-linear_ramp-mean": "np.pad modes linear_ramp and mean (not copies of elements)",
    "gradient": "np.gradient on a tangent",
    "gradient-axes": "np.gradient on a tangent",
}


ROUNDS_TO_FLOAT32 = {"astype-float32"}  # computes in float32 inside: the identity holds to float32 precision
# torch.func.vjp is not the reference for these, and why
TORCH_VJP_SKIPS = {
    "setitem-broadcast-tangent": "the torch version writes in place, which torch's backward refuses",
}
SYMMETRIC_INPUT = {"cholesky", "cholesky-symmetric-input"}  # dA is taken symmetric: compare sym(grad)


def _dot(a, b):
    return sum(float(np.sum(np.asarray(x, dtype=np.float64) * np.asarray(y, dtype=np.float64))) for x, y in zip(a, b))


def _is_float(a):
    return isinstance(a, np.ndarray) and a.dtype.kind == "f"


def _identity_check(g, primals, rng, rtol):
    """<u, J v> (J v by forward mode, dj.jvp) against <vjp(u), v> (reverse mode)."""
    out, vjp_fn = dj.vjp(g, *primals)
    vs = tuple(rng.standard_normal(np.shape(p)).astype(p.dtype) for p in primals)
    _, jv = dj.jvp(g, primals, vs)
    o_leaves, o_def = flatten(out)
    us = [
        rng.standard_normal(np.shape(o)) if np.result_type(o).kind == "f" else np.zeros(np.shape(o)) for o in o_leaves
    ]
    us = [u.astype(np.result_type(o)) if np.result_type(o).kind == "f" else u for u, o in zip(us, o_leaves)]
    cts = vjp_fn(unflatten(o_def, us))
    assert [np.shape(c) for c in cts] == [np.shape(p) for p in primals]
    lhs, rhs = _dot(us, flatten(jv)[0]), _dot(cts, vs)
    scale = _dot([np.abs(u) for u in us], [np.abs(j) for j in flatten(jv)[0]]) + 1e-30
    assert abs(lhs - rhs) <= rtol * scale + 1e-12, f"<u, Jv> = {lhs} but <J^T u, v> = {rhs}"
    return out, vjp_fn, us, cts


def _spec_case(spec, shape, dtype, rng):
    args = spec.args_for(rng, shape, dtype)
    diff = spec.diff if spec.diff is not None else tuple(i for i, a in enumerate(args) if _is_float(a))

    def g(*xs):
        call = list(args)
        for i, x in zip(diff, xs):
            call[i] = x
        return spec.fn(*call)

    return args, diff, g


CASES = [pytest.param(s, sh, id=f"{s.name}-{sh}") for s in SPECS for sh in s.shapes]


@pytest.mark.parametrize("spec,shape", CASES)
def test_every_rule_linearization_transposes(spec, shape, rng):
    """The transposition identity for every rule spec and shape, float64 (float32 on the first shape)."""
    args, diff, g = _spec_case(spec, shape, np.float64, rng)
    primals = tuple(args[i] for i in diff)
    if spec.name in REVERSE_RAISES:
        with pytest.raises(dj.NoTransposeError, match="reverse mode"):
            dj.vjp(g, *primals)
        return
    _identity_check(g, primals, rng, 1e-5 if spec.name in ROUNDS_TO_FLOAT32 else 1e-10)
    if spec.float32 and shape == spec.shapes[0]:
        args, diff, g = _spec_case(spec, shape, np.float32, rng)
        _identity_check(g, tuple(args[i] for i in diff), rng, 1e-4)


@pytest.mark.parametrize("spec", [pytest.param(s, id=s.name) for s in SPECS if s.fd and s.name not in REVERSE_RAISES])
def test_every_rule_jacrev_vs_finite_differences(spec, rng):
    """jacrev (one backward pass of cotangent lanes) against float64 central differences."""
    args, diff, g = _spec_case(spec, spec.shapes[0], np.float64, rng)
    primals = tuple(args[i] for i in diff)
    J = flatten(dj.jacrev(g, argnums=tuple(range(len(primals))))(*primals))[0]  # output-major, then input
    for i in range(len(primals)):
        for k, want in enumerate(numerical_jacobian(g, primals, i)):
            got = J[k * len(primals) + i]
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7, err_msg=f"{spec.name}: d out {k} / d arg {i}")


@pytest.mark.parametrize("spec", [pytest.param(s, id=s.name) for s in SPECS if s.torch is not None])
def test_every_rule_vjp_vs_torch(spec, rng):
    """Against torch.func.vjp away from kinks (at a kink torch's backward may pick another subgradient
    than its forward AD; there the identity test above ties reverse mode to dualjac's forward rules)."""
    args, diff, g = _spec_case(spec, spec.shapes[0], np.float64, rng)
    if spec.name in REVERSE_RAISES or not spec.fd:
        pytest.skip("raises NoTransposeError (checked above)" if spec.fd else "a kink: checked by the identity")
    if spec.name in TORCH_VJP_SKIPS:
        pytest.skip(TORCH_VJP_SKIPS[spec.name])
    primals = tuple(args[i] for i in diff)
    out, vjp_fn = dj.vjp(g, *primals)
    o_leaves, o_def = flatten(out)
    us = [rng.standard_normal(np.shape(o)) for o in o_leaves]
    ours = vjp_fn(unflatten(o_def, us))

    def gt(*xs):
        call = [torch.as_tensor(a) if isinstance(a, np.ndarray | np.generic) else a for a in args]
        for i, x in zip(diff, xs):
            call[i] = x
        return spec.torch(*call)

    t_out, t_vjp = torch.func.vjp(gt, *(torch.as_tensor(p) for p in primals))
    t_us = [torch.as_tensor(u) for u in us]
    theirs = t_vjp(t_us[0] if not isinstance(t_out, tuple | list) else type(t_out)(t_us))
    for a, b in zip(ours, theirs):
        b = b.numpy()
        if spec.name in SYMMETRIC_INPUT:
            a, b = a + np.swapaxes(a, -1, -2), b + np.swapaxes(b, -1, -2)
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12, err_msg=spec.name)


# --- every linear primitive, recorded directly on a tape ------------------------------------------
def _prim(shape_in, fn, *, dtype=np.float64):
    return pytest.param(shape_in, fn, dtype, id=f"{getattr(fn, '__name__', 'f')}-{shape_in}")


def _named(name, f):
    f.__name__ = name
    return f


RNG = np.random.default_rng(7)
C34, C4, C3, C43 = (RNG.standard_normal(s) for s in ((3, 4), (4,), (3,), (4, 3)))
A33 = RNG.standard_normal((3, 3)) + 3 * np.eye(3)
PRIMITIVES = [
    _prim((1, 3, 4), _named("multiply", lambda v: v * C34)),
    _prim((1, 3, 1), _named("multiply-broadcast", lambda v: C34 * v)),
    _prim((1, 4), _named("divide", lambda v: v / C34)),
    _prim((1, 3, 4), _named("add-sub-neg", lambda v: -(v + v[..., :1]) - (+v))),
    _prim((1, 3, 4), _named("add-zero-constant", lambda v: v + np.zeros((2, 1, 3, 4)))),
    _prim((1, 3, 4), _named("matmul-right", lambda v: v @ C43)),
    _prim((1, 4, 3), _named("matmul-left", lambda v: C34 @ v)),
    _prim((1, 4), _named("matmul-vec-right", lambda v: v @ C4)),
    _prim((4,), _named("matmul-vec-vec", lambda v: v @ C4)),
    _prim((4,), _named("matmul-vec-mat", lambda v: v @ C43)),
    _prim((1, 2, 4), _named("matmul-mat-vec-left", lambda v: C3 @ C34 @ np.swapaxes(v, -1, -2))),
    _prim((2, 3, 4), _named("matmul-batched", lambda v: np.matmul(v, C43[None]))),
    _prim((1, 3, 4), _named("tensordot", lambda v: np.tensordot(v, C43, axes=([1], [1])))),
    _prim((3, 2), _named("tensordot-left", lambda v: np.tensordot(C34, v, axes=([0], [0])))),
    _prim((1, 3, 4), _named("einsum", lambda v: np.einsum("zij,jk->zik", v, C43))),
    _prim((1, 3, 4), _named("einsum-sum-only", lambda v: np.einsum("zij->z", v))),
    _prim((1, 3, 4), _named("einsum-ellipsis", lambda v: np.einsum("...j,j->...", v, C4))),
    _prim((1, 3, 4), _named("sum", lambda v: np.sum(v, axis=1))),
    _prim((1, 3, 4), _named("sum-keepdims", lambda v: v.sum(axis=(-1, -2), keepdims=True))),
    _prim((1, 3, 4), _named("mean", lambda v: np.mean(v, axis=-1))),
    _prim((1, 3, 4), _named("add-reduce", lambda v: np.add.reduce(v, axis=2))),
    _prim((1, 3, 4), _named("cumsum", lambda v: np.cumsum(v, axis=-1) + np.cumsum(v, axis=1))),
    _prim((1, 3, 4), _named("reshape", lambda v: v.reshape(1, 2, 6).reshape(-1))),
    _prim((1, 3, 4), _named("transpose-moveaxis-swapaxes", lambda v: np.moveaxis(np.swapaxes(v.T, 0, 1), 0, -1))),
    _prim((1, 3, 1), _named("broadcast_to", lambda v: np.broadcast_to(v, (2, 1, 3, 5)))),
    _prim((1, 3, 4), _named("expand-squeeze", lambda v: np.squeeze(np.expand_dims(v, 2), axis=0))),
    _prim((1, 3, 4), _named("getitem-basic", lambda v: v[:, 1:, ::-2])),
    _prim((1, 3, 4), _named("getitem-int-none", lambda v: v[0, None, 2])),
    _prim((1, 3, 4), _named("getitem-advanced-repeats", lambda v: v[:, [0, 2, 0], [1, 1, 3]])),
    _prim((1, 3, 4), _named("getitem-bool", lambda v: v[:, C34 > 0])),
    _prim((1, 3, 4), _named("take", lambda v: np.take(v, [3, 0, 3], axis=-1))),
    _prim((1, 3, 4), _named("take_along_axis", lambda v: np.take_along_axis(v, np.argsort(C34)[None], axis=-1))),
    _prim((1, 3, 4), _named("repeat-tile-roll", lambda v: np.roll(np.tile(np.repeat(v, 2, axis=1), (1, 2)), 3, -1))),
    _prim(
        (1, 3, 3), _named("diagonal-trace", lambda v: np.diagonal(v, 0, 1, 2) + np.trace(v, axis1=1, axis2=2)[:, None])
    ),
    _prim((1, 3, 4), _named("tril-triu", lambda v: np.tril(v, 1) + 2 * np.triu(v, -1))),
    _prim((1, 3, 4), _named("pad", lambda v: np.pad(v, ((0, 0), (1, 2), (2, 0))))),
    _prim((1, 3, 4), _named("pad-edge-reflect", lambda v: np.pad(np.pad(v, 1, mode="edge"), 2, mode="reflect"))),
    _prim((1, 3, 4), _named("concatenate-stack", lambda v: np.concatenate([v, 2 * v, np.zeros((1, 3, 1))], axis=-1))),
    _prim((1, 3, 4), _named("stack", lambda v: np.stack([v, np.zeros((1, 3, 4)), v[:, ::-1]], axis=1))),
    _prim((1, 3, 4), _named("where", lambda v: np.where(C34 > 0, v, 0.0) + np.where(C34 > 0, 0.0, 3 * v))),
    _prim((1, 3, 4), _named("where-both", lambda v: np.where(C34 > 0, v, -v))),
    _prim((1, 3, 2), _named("solve", lambda v: np.linalg.solve(A33, v))),
    _prim((3,), _named("solve-vector", lambda v: np.linalg.solve(A33, v))),
    _prim((1, 3, 4), _named("dot", lambda v: np.dot(v, C4) + np.dot(v, 2.0).sum(-1))),
    _prim((1, 3, 4), _named("astype", lambda v: v.astype(np.float32).astype(np.float64)), dtype=np.float64),
    _prim((1, 3, 4), _named("setitem", lambda v: _setitem(v))),
    _prim((1, 2, 1, 6, 5), _named("conv", lambda v: _conv(v))),
    _prim((1, 2, 3, 4, 3), _named("conv_transpose", lambda v: _conv_transpose(v))),
]
W_CONV = RNG.standard_normal((4, 1, 3, 2))
W_CONVT = RNG.standard_normal((3, 2, 3, 2))


def _setitem(v):
    w = v.copy()
    w[:, 1, 1:3] = 2 * v[:, 0, :2]
    w[:, 2] = 0
    return w


def _conv(v):  # the symbolic conv node is recorded by apply's hook: reach it through the rule
    from dualjac.rules import SYMBOLIC

    x = np.zeros(v.shape[1:])
    ans = dj.rules.apply("conv", x, W_CONV, None, stride=2, padding=1)
    return SYMBOLIC["conv"](np, ans, [v, None, None], x, W_CONV, None, stride=2, padding=1)


def _conv_transpose(v):
    from dualjac.rules import SYMBOLIC

    x = np.zeros(v.shape[1:])
    p = dict(stride=2, padding=1, output_padding=1, groups=1, dilation=1)
    ans = dj.rules.apply("conv_transpose", x, W_CONVT, None, **p)
    return SYMBOLIC["conv_transpose"](np, ans, [v, None, None], x, W_CONVT, None, **p)


@pytest.mark.parametrize("shape,fn,dtype", PRIMITIVES)
def test_every_linear_primitive_transposes(shape, fn, dtype, rng):
    """Record ``fn`` on a tape; replaying it must equal NumPy running ``fn`` (the reference), and
    its transpose must satisfy <u, L v> = <L^T u, v> for K = 3 cotangent lanes at once."""
    tape = Tape()
    x = tape.input(shape, dtype)
    y = fn(x)
    v = rng.standard_normal(shape).astype(dtype)
    (lv,) = tape.forward({x.id: v}, [y.id])
    if fn.__name__ not in ("conv", "conv_transpose"):
        np.testing.assert_allclose(lv, fn(v), rtol=1e-12, atol=1e-12)
    assert lv.shape == y.shape
    u = rng.standard_normal((3,) + y.shape)
    (ct,) = tape.backward({y.id: u}, [x.id])
    assert ct.shape == (3,) + tuple(shape)
    rtol = 1e-6 if fn.__name__ == "astype" else 1e-10  # float32 rounding on the way there and back
    for k in range(3):
        np.testing.assert_allclose(np.sum(u[k] * lv), np.sum(ct[k] * v), rtol=rtol, atol=1e-10)


def test_a_non_linear_use_of_a_tangent_is_named(monkeypatch):
    rule = dj.RULES["sin"]
    monkeypatch.setitem(dj.RULES, "sin", rule._replace(form="pointwise", per_arg=(lambda xp, ans, dx, x: dx * dx,)))
    with pytest.raises(dj.NonLinearError, match="product of two tangents.*mode='forward'"):
        dj.grad(lambda x: np.sin(x).sum())(np.ones(3))
    # forward mode runs the same (wrong) rule without complaint: only reverse mode needs linearity
    dj.jacfwd(lambda x: np.sin(x))(np.ones(3))


def test_no_transpose_error_names_the_op_and_auto_falls_back_to_forward(caplog):
    f = lambda x: np.einsum("ii->i", x.reshape(9, 9)).sum() * np.ones(2)  # noqa: E731
    x = np.arange(81.0)
    with pytest.raises(dj.NoTransposeError, match="einsum.*mode='forward'"):
        dj.jacobian(f, x, mode="reverse")
    with caplog.at_level(logging.DEBUG, logger="dualjac"):
        J = dj.jacobian(f, x)  # auto: wide input, narrow output -> tries reverse, falls back
    np.testing.assert_allclose(J, dj.jacobian(f, x, mode="forward"))
    assert "forward" in caplog.text


def test_writing_a_tangent_into_a_plain_array_raises_a_named_error():
    def f(x):
        out = np.zeros(3)
        out[:] = x  # ndarray.__setitem__ cannot hold a tangent
        return out

    with pytest.raises(dj.TangentLossError, match="would be lost"):
        dj.grad(lambda x: f(x).sum())(np.ones(3))


# --- the transforms against torch.func -------------------------------------------------------
def _mlp(rng):
    W1, b1, W2 = rng.standard_normal((5, 7)), rng.standard_normal(7), rng.standard_normal((7, 3))
    f = lambda x, s: (np.tanh(x @ W1 + b1) @ W2) * s  # noqa: E731
    Wt = [torch.as_tensor(a) for a in (W1, b1, W2)]
    ft = lambda x, s: (torch.tanh(x @ Wt[0] + Wt[1]) @ Wt[2]) * s  # noqa: E731
    return f, ft


def test_vjp_jacrev_grad_match_torch_func(rng):
    f, ft = _mlp(rng)
    x, s = rng.standard_normal((4, 5)), rng.standard_normal(3)
    xt, st = torch.as_tensor(x), torch.as_tensor(s)
    u = rng.standard_normal((4, 3))
    out, vjp_fn = dj.vjp(f, x, s)
    t_out, t_vjp = torch.func.vjp(ft, xt, st)
    np.testing.assert_allclose(out, t_out.numpy(), rtol=1e-12)
    for a, b in zip(vjp_fn(u), t_vjp(torch.as_tensor(u))):
        np.testing.assert_allclose(a, b.numpy(), rtol=1e-10, atol=1e-12)
    for argnums in (0, 1, (0, 1), (1, 0)):
        ours = dj.jacrev(f, argnums=argnums)(x, s)
        theirs = torch.func.jacrev(ft, argnums=argnums)(xt, st)
        for a, b in zip(flatten(ours)[0], flatten(theirs)[0]):
            np.testing.assert_allclose(a, b.numpy(), rtol=1e-10, atol=1e-12)
    loss = lambda x, s: np.sum(f(x, s) ** 2)  # noqa: E731
    loss_t = lambda x, s: torch.sum(ft(x, s) ** 2)  # noqa: E731
    for argnums in (0, (0, 1)):
        ours = dj.grad(loss, argnums=argnums)(x, s)
        theirs = torch.func.grad(loss_t, argnums=argnums)(xt, st)
        for a, b in zip(flatten(ours)[0], flatten(theirs)[0]):
            np.testing.assert_allclose(a, b.numpy(), rtol=1e-10)


def test_pytrees_and_has_aux_follow_torch_func(rng):
    W = rng.standard_normal((3, 2))
    Wt = torch.as_tensor(W)
    f = lambda p: ({"y": np.sin(p["a"] @ W), "z": p["b"] * 2.0}, np.sum(p["b"]))  # noqa: E731
    ft = lambda p: ({"y": torch.sin(p["a"] @ Wt), "z": p["b"] * 2.0}, torch.sum(p["b"]))  # noqa: E731
    p = {"a": rng.standard_normal(3), "b": rng.standard_normal(2)}
    pt = {k: torch.as_tensor(v) for k, v in p.items()}
    J, aux = dj.jacrev(f, has_aux=True)(p)
    Jt, auxt = torch.func.jacrev(ft, has_aux=True)(pt)
    assert float(aux) == pytest.approx(float(auxt))
    for key in ("y", "z"):
        for k in ("a", "b"):
            np.testing.assert_allclose(J[key][k], Jt[key][k].numpy(), rtol=1e-12, atol=1e-14)
    g, aux = dj.grad(lambda p: (np.sum(f(p)[0]["y"]), 7.0), has_aux=True)(p)
    gt = torch.func.grad(lambda p: torch.sum(ft(p)[0]["y"]))(pt)
    assert aux == 7.0 and list(g) == ["a", "b"]
    np.testing.assert_allclose(g["a"], gt["a"].numpy(), rtol=1e-12)
    np.testing.assert_allclose(g["b"], 0.0)


def test_linearize_replays_the_jvp_like_torch_func_jvp(rng):
    f, ft = _mlp(rng)
    x, s, v = rng.standard_normal((4, 5)), rng.standard_normal(3), rng.standard_normal((4, 5))
    out, f_jvp = dj.linearize(f, x, s)
    _, t_jv = torch.func.jvp(ft, (torch.as_tensor(x), torch.as_tensor(s)), (torch.as_tensor(v), torch.zeros(3)))
    np.testing.assert_allclose(f_jvp(v, np.zeros(3)), t_jv.numpy(), rtol=1e-10)
    np.testing.assert_allclose(f_jvp(2 * v, np.zeros(3)), 2 * t_jv.numpy(), rtol=1e-10)  # linear, reused


def test_hessian_forward_over_reverse_and_hvp_match_torch(rng):
    A = rng.standard_normal((70, 70))
    f = lambda x: np.sum(np.sin(x @ A) * x) + np.sum(x**3)  # noqa: E731
    At = torch.as_tensor(A)
    ft = lambda x: torch.sum(torch.sin(x @ At) * x) + torch.sum(x**3)  # noqa: E731
    x = rng.standard_normal(70)
    H_t = torch.func.hessian(ft)(torch.as_tensor(x)).numpy()
    np.testing.assert_allclose(dj.hessian(f, mode="reverse")(x), H_t, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(dj.hessian(f)(x), H_t, rtol=1e-10, atol=1e-10)  # auto: 70 inputs -> reverse inner
    v = rng.standard_normal(70)
    out, hv = dj.hvp(f, x, v)
    t_out, t_hv = torch.autograd.functional.hvp(ft, torch.as_tensor(x), torch.as_tensor(v))
    np.testing.assert_allclose(out, t_out.numpy(), rtol=1e-12)
    np.testing.assert_allclose(hv, t_hv.numpy(), rtol=1e-10, atol=1e-10)
    out, hv = dj.hvp(lambda a, b: np.sum(a * b * b), (x[:3], x[3:6]), (v[:3], v[3:6]))
    np.testing.assert_allclose(hv[0], 2 * x[3:6] * v[3:6], rtol=1e-12)


def test_grad_rejects_non_scalar_outputs_and_modes_are_checked():
    with pytest.raises(ValueError, match="one scalar.*jacrev"):
        dj.grad(lambda x: x * 2)(np.ones(3))
    with pytest.raises(ValueError, match="mode must be one of"):
        dj.jacobian(np.sin, np.ones(3), mode="backward")


@pytest.mark.parametrize("chunk_size", [1, 2, 5, 6, 7, 4])
def test_cotangent_lane_chunks_give_the_same_jacobian(chunk_size, rng):
    W = rng.standard_normal((80, 6))
    f = lambda x: (np.tanh(x @ W), np.sum(x))  # noqa: E731  6 + 1 outputs
    x = rng.standard_normal(80)
    seen = []
    dj.config.progress = lambda done, total: seen.append((done, total))
    try:
        J = dj.jacrev(f, chunk_size=chunk_size)(x)
    finally:
        dj.config.progress = None
    ref = numerical_jacobian(f, (x,), 0)
    np.testing.assert_allclose(J[0], ref[0], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(J[1], ref[1], rtol=1e-6, atol=1e-7)
    assert (seen[-1] == (7, 7)) if chunk_size < 7 else not seen


def test_the_budget_sets_the_cotangent_lanes(rng):
    f = lambda x: np.tanh(x[:50] * 2)  # noqa: E731
    x = rng.standard_normal(100)
    old = dj.config.tangent_bytes
    passes = []
    dj.config.tangent_bytes, dj.config.progress = 100 * 8 * 10, lambda d, t: passes.append(d)
    try:
        J = dj.jacrev(f)(x)
    finally:
        dj.config.tangent_bytes, dj.config.progress = old, None
    assert len(passes) == 5  # 10 lanes of the widest node (100 elements) per pass, 50 outputs
    np.testing.assert_allclose(J, numerical_jacobian(f, (x,), 0)[0], rtol=1e-6, atol=1e-7)


# --- mode="auto" -------------------------------------------------------------------------------
def test_auto_picks_forward_for_narrow_inputs_and_reverse_for_wide_ones(caplog, rng):
    W = rng.standard_normal((16, 16))
    with caplog.at_level(logging.DEBUG, logger="dualjac"):
        dj.batch_jacobian(lambda x: np.tanh(x @ W), rng.standard_normal((8, 16)))
    assert "forward (16 input elements" in caplog.text
    caplog.clear()
    V = rng.standard_normal((300, 3))
    x = rng.standard_normal((4, 300))
    with caplog.at_level(logging.DEBUG, logger="dualjac"):
        J = dj.batch_jacobian(lambda x: np.tanh(x @ V), x)
    assert "reverse (3 outputs, 300 inputs)" in caplog.text
    np.testing.assert_allclose(J, dj.batch_jacobian(lambda x: np.tanh(x @ V), x, mode="forward"), rtol=1e-12)
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="dualjac"):
        dj.jacobian(lambda x: np.tanh(x @ rng.standard_normal((100, 100))), rng.standard_normal(100))
    assert "forward (100 outputs > 100 inputs" in caplog.text


def test_batch_jacobian_reverse_checks_the_batch_axis(rng):
    with pytest.raises(ValueError, match="keep the batch axis"):
        dj.batch_jacobian(lambda x: x.sum(axis=0), rng.standard_normal((3, 100)), mode="reverse")


def test_cnn_graph_from_torch_per_sample_reverse_matches_torch(rng):
    pytest.importorskip("torch.fx")
    from dualjac.torch import from_torch

    torch.manual_seed(0)
    nn = torch.nn
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 6, 3, stride=2), nn.Tanh(),
        nn.AvgPool2d(2), nn.Flatten(), nn.Linear(6, 5),
    ).double().eval()  # fmt: skip
    x = rng.standard_normal((3, 1, 12, 12))
    g = from_torch(model, torch.as_tensor(x))
    J = dj.batch_jacobian(g, x)  # auto: 144 inputs per sample, 5 outputs -> reverse
    item = lambda s: model(s[None])[0]  # noqa: E731
    Jt = torch.func.vmap(torch.func.jacrev(item))(torch.as_tensor(x)).detach().numpy()
    np.testing.assert_allclose(J, Jt, rtol=1e-10, atol=1e-12)
    Jp = dj.jacrev(lambda p: g(x[:1], params=p))(g.params)  # reverse w.r.t. the parameters, too
    params = {k: v.detach() for k, v in model.named_parameters()}
    Jpt = torch.func.jacrev(lambda p: torch.func.functional_call(model, p, (torch.as_tensor(x[:1]),)))(params)
    for k in params:
        np.testing.assert_allclose(Jp[k], Jpt[k].numpy(), rtol=1e-10, atol=1e-12, err_msg=k)


# --- nesting across forward and reverse ----------------------------------------------------------
def test_perturbation_confusion_mixed_nesting():
    # D(x -> x * D(y -> x + y)(1))(3) == 1, with every mix of forward and reverse
    for outer in (dj.jacfwd, dj.grad):
        for inner in (dj.jacfwd, dj.grad):
            d = outer(lambda x: x * inner(lambda y: x + y)(np.array(1.0)))(np.array(3.0))
            assert float(d) == 1.0, (outer.__name__, inner.__name__)


def test_reverse_over_forward_and_forward_over_reverse_second_derivatives(rng):
    f = lambda x: np.sum(np.sin(x) * x[::-1])  # noqa: E731
    x = rng.standard_normal(4)
    H = dj.hessian(f, mode="forward")(x)
    np.testing.assert_allclose(dj.jacfwd(dj.grad(f))(x), H, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dj.jacrev(dj.jacfwd(f))(x), H, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dj.jacrev(dj.grad(f))(x), H, rtol=1e-12, atol=1e-14)
    xt = torch.as_tensor(x)
    Ht = torch.func.hessian(lambda x: torch.sum(torch.sin(x) * torch.flip(x, (0,))))(xt)
    np.testing.assert_allclose(H, Ht.numpy(), rtol=1e-12, atol=1e-14)


def test_a_wrong_transpose_turns_the_identity_red(monkeypatch, rng):
    """The identity check can fail: cumsum transposed as a cumsum (not the reversed one) is caught."""
    import dualjac.tape as lz

    def wrong_cumsum(x, axis=None, dtype=None, out=None):
        return lz.record([x], lambda v: np.cumsum(v, axis=axis), lambda ct: (np.cumsum(ct, axis=axis),),
                         x.shape, x.dtype, "cumsum")  # fmt: skip

    monkeypatch.setitem(lz.FUNCTIONS, np.cumsum, wrong_cumsum)
    with pytest.raises(AssertionError):
        test_every_linear_primitive_transposes((1, 3, 4), lambda v: np.cumsum(v, axis=-1), np.float64, rng)
    with pytest.raises(AssertionError, match="<u, Jv>"):
        _identity_check(lambda x: np.cumsum(x * x, axis=-1), (rng.standard_normal(5),), rng, 1e-10)


def test_reverse_mode_on_a_non_numpy_namespace_says_so_and_auto_uses_forward(rng):
    """Reverse mode runs on NumPy arrays only (its transposes are not checked on CuPy): a CuPy-like
    array gets a named error, and mode="auto" takes forward mode there."""
    from test_backend import StrictArray, strict

    from dualjac import backend

    backend.register_namespace(StrictArray, strict)
    try:
        V = StrictArray(rng.standard_normal((100, 2)))
        x = StrictArray(rng.standard_normal((3, 100)))
        f = lambda x: np.tanh(x @ V)  # noqa: E731
        with pytest.raises(dj.NoTransposeError, match="NumPy arrays"):
            dj.batch_jacobian(f, x, mode="reverse")
        J = dj.batch_jacobian(f, x)
        want = dj.batch_jacobian(lambda x: np.tanh(x @ V.a), x.a, mode="forward")
        np.testing.assert_allclose(J.a, want, rtol=1e-12)
    finally:
        backend._BY_TYPE.pop(StrictArray, None)


def test_big_arrays_bypass_the_workspace_with_symbolic_tangents(rng):
    """Elementwise ops on arrays over buffers.MIN_BYTES write `factor * dx` into a workspace in
    forward mode; with symbolic tangents it must fall back to the plain product (and forward-over-
    reverse, whose constants are Duals, too)."""
    x = rng.uniform(0.5, 1.5, size=300_000)  # 2.4 MB
    f = lambda x: np.sum(np.sin(x) * np.log(x) / x)  # noqa: E731
    with dj.Workspace():
        g = dj.grad(f)(x)
    want = (np.cos(x) * np.log(x) + np.sin(x) / x) / x - np.sin(x) * np.log(x) / x**2
    np.testing.assert_allclose(g, want, rtol=1e-12)
    v = rng.standard_normal(x.size)
    with dj.Workspace():
        _, hv = dj.hvp(lambda x: np.sum(np.sin(x) * x), x, v)
    np.testing.assert_allclose(hv, (2 * np.cos(x) - x * np.sin(x)) * v, rtol=1e-10, atol=1e-12)



def _zoo():
    import os
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "torch"))
    import zoo

    return {c.name: c for c in zoo.zoo()}, zoo.with_floats


ZOO, with_floats = _zoo()


@pytest.mark.parametrize("name", list(ZOO))
def test_every_zoo_model_in_reverse_mode_matches_torch(name):
    """Graphs from from_torch evaluate through apply, so reverse mode covers them: every zoo model's
    Jacobian w.r.t. its floating inputs, mode="reverse", against torch.autograd.functional.jacobian."""
    from dualjac.torch import from_torch

    model, inputs = ZOO[name].model, ZOO[name].inputs
    g = from_torch(model, *inputs)
    xs = tuple(x.numpy() for x in inputs)
    diff = [i for i, x in enumerate(inputs) if x.is_floating_point()]

    merged = lambda call, all_inputs: with_floats(call, all_inputs, diff)  # noqa: E731

    J_t = torch.autograd.functional.jacobian(merged(model, inputs), tuple(inputs[i] for i in diff), vectorize=True)
    J = dj.jacobian(merged(g, xs), tuple(xs[i] for i in diff), mode="reverse")
    rtol = {"mlp_hard": 1e-7, "casts": 1e-6}.get(name, 1e-9)  # torch's float32 constants (as test_fx)
    ours, theirs = flatten(J)[0], flatten(J_t)[0]
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b.detach().numpy(), rtol=rtol, atol=1e-12, err_msg=name)


def _hessian_cases():
    import test_rules

    skip = set(test_rules.HESSIAN_SKIPS) | set(test_rules.HESSIAN_RAISES) | set(REVERSE_RAISES)
    return [pytest.param(s, id=s.name) for s in SPECS if s.fd and s.name not in skip], test_rules


HESSIAN_CASES, _TR = _hessian_cases()


@pytest.mark.parametrize("spec", HESSIAN_CASES)
def test_every_rule_forward_over_reverse_hessian(spec):
    """Forward-over-reverse (``hessian(mode="reverse")``: tape constants and cotangents are Duals of
    the outer transform) against forward-over-forward, which test_rules checks against differences."""
    rng = np.random.default_rng(1)
    args = spec.args_for(rng, spec.shapes[0], np.float64)
    floats = [i for i, a in enumerate(args) if _is_float(a)]
    i = spec.diff[0] if spec.diff is not None else floats[0]
    weights = [rng.standard_normal(np.shape(o)) for o in _TR._float_leaves(spec.fn(*args))]

    def g(x):
        call = list(args)
        call[i] = x
        return sum(np.sum(w * leaf) for w, leaf in zip(weights, _TR._float_leaves(spec.fn(*call)))) + 0 * np.sum(x)

    want = dj.hessian(g, mode="forward")(args[i])
    np.testing.assert_allclose(dj.hessian(g, mode="reverse")(args[i]), want, rtol=1e-8, atol=1e-10)


def test_a_tape_past_its_budget_is_a_named_error():
    W = np.random.default_rng(0).standard_normal((200, 200))
    f = lambda x: np.tanh(np.tanh(x @ W) @ W).sum()  # noqa: E731
    old = dj.config.tape_bytes
    try:
        dj.config.tape_bytes = 64 << 10  # each (50, 200) node is 78 KiB
        with pytest.raises(dj.TapeTooLargeError, match="mode='forward'"):
            dj.grad(f)(np.ones((50, 200)))
    finally:
        dj.config.tape_bytes = old
    np.testing.assert_allclose(dj.grad(f)(np.ones((2, 200))), dj.jacfwd(f)(np.ones((2, 200))), rtol=1e-12)


def test_auto_falls_back_to_forward_when_the_tape_would_be_too_large():
    W = np.random.default_rng(1).standard_normal((100, 3))
    f = lambda x: np.tanh(x @ W)  # noqa: E731  100 inputs, 3 outputs: auto would pick reverse
    x = np.random.default_rng(2).standard_normal((1, 100))
    want = dj.jacobian(f, x, mode="forward")
    old = dj.config.tape_bytes
    try:
        dj.config.tape_bytes = 16
        np.testing.assert_allclose(dj.jacobian(f, x), want, rtol=1e-13)
        with pytest.raises(dj.TapeTooLargeError):
            dj.jacobian(f, x, mode="reverse")
    finally:
        dj.config.tape_bytes = old


# --- found by a hostile pass over reverse mode (2026-12-08) ----------------------------------------
def test_arrays_f_writes_into_after_use_do_not_change_the_tape():
    """NumPy lets f reuse a work buffer or a mask in place; the tape runs after f returned, so it must
    keep the values each op saw (finite differences and forward mode are the references)."""

    def f(x):
        A = np.eye(3)
        total = 0.0
        for _ in range(3):
            A *= 2.0  # one buffer, rescaled in place after each use
            total = total + np.sum(A @ x)
        return total

    def g(x):
        mask = x > 1.5
        y = np.where(mask, x, 0.0)
        mask[...] = True  # the mask rewritten after np.where used it
        return np.sum(y * x) + np.sum(np.where(mask, 0.0, x))

    x = np.array([1.0, 2.0, 3.0])
    for fn, want in ((f, [14.0, 14.0, 14.0]), (g, [0.0, 4.0, 6.0])):
        np.testing.assert_allclose(_fd_grad(fn, x), want, rtol=1e-6)
        np.testing.assert_allclose(dj.grad(fn)(x), want, rtol=1e-14)
        np.testing.assert_allclose(dj.linearize(fn, x)[1](np.ones(3)), sum(want), rtol=1e-14)
    want = np.cos(x) * x + np.sin(x)  # d(x sin x)/dx
    x_again = x.copy()
    out2, vjp_fn2 = dj.vjp(lambda x: np.sin(x) * x, x_again)
    x_again *= 10  # the caller edits its primal after vjp
    np.testing.assert_allclose(vjp_fn2(np.ones(3))[0], want, rtol=1e-15)


def _fd_grad(f, x, h=1e-6):
    return np.array([(f(x + h * e) - f(x - h * e)) / (2 * h) for e in np.eye(x.size)])


def test_gradients_are_the_callers_own_arrays():
    """grad of a sum was a read-only broadcast; an add gave both arguments one array; a vjp result
    could be the caller's cotangent itself."""
    g = dj.grad(lambda x: np.sum(x))(np.arange(3.0))
    g *= 0.5  # writable
    np.testing.assert_array_equal(g, [0.5, 0.5, 0.5])
    a, b = np.array([0.1, 0.2, 0.3]), np.array([1.0, -1.0, 2.0])
    gx, gy = dj.grad(lambda x, y: np.sum(np.sin(x + y)), argnums=(0, 1))(a, b)
    gx *= 0
    np.testing.assert_allclose(gy, np.cos(a + b), rtol=1e-15)
    ct = np.ones(3)
    (r,) = dj.vjp(lambda x: x + 0.0, a)[1](ct)
    r *= 5
    np.testing.assert_array_equal(ct, np.ones(3))
    (t,) = [dj.linearize(lambda x: x, a)[1](ct)]
    t *= 2
    np.testing.assert_array_equal(ct, np.ones(3))


def test_second_order_through_constant_padding_and_convolve():
    """Reverse over reverse: the padding's placeholder positions made a 'repeated index' assignment."""
    x = np.array([0.3, -0.5, 0.8])
    F = torch.nn.functional
    padded = (lambda z: np.sum(np.cos(np.pad(z, (2, 1)))), lambda z: torch.sum(torch.cos(F.pad(z, (2, 1)))))
    convolved = (
        lambda z: np.sum(np.convolve(z, np.sin(z)) ** 2),
        lambda z: torch.sum(F.conv1d(z.view(1, 1, -1), torch.sin(z).flip(0).view(1, 1, -1), padding=2) ** 2),
    )
    for f, tf in (padded, convolved):
        want = torch.func.hessian(tf)(torch.tensor(x)).numpy()
        np.testing.assert_allclose(dj.jacrev(dj.grad(f))(x), want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("mode", ["forward", "reverse"])
def test_hessian_of_x_to_the_x(mode):
    x = np.array([0.5, 1.5])
    want = torch.func.hessian(lambda t: torch.sum(t**t))(torch.tensor(x)).numpy()
    np.testing.assert_allclose(dj.hessian(lambda x: np.sum(x**x), mode=mode)(x), want, rtol=1e-13)
