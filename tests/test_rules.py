"""Every rule, checked generically: full Jacobians against float64 central differences,
JVPs against torch.func.jvp, over shapes x {float32, float64} x {contiguous, strided}."""

from __future__ import annotations

import numpy as np
import pytest

import dualjac as dj
from dualjac.testing import check_jacobian
from rule_specs import all_specs

SPECS = all_specs()
CASES = [pytest.param(s, shape, id=f"{s.name}-{shape}") for s in SPECS for shape in s.shapes]


def _strided(a):
    """The same values as a non-contiguous view (every other element of a larger buffer)."""
    if not isinstance(a, np.ndarray) or a.ndim == 0 or a.dtype.kind != "f":
        return a
    big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), dtype=a.dtype)
    big[..., ::2] = a
    view = big[..., ::2]
    assert not view.flags.c_contiguous or a.shape[-1] <= 1
    return view


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("spec,shape", CASES)
def test_jacobian_vs_finite_differences(spec, shape, dtype, rng):
    if dtype == np.float32 and not spec.float32:
        pytest.skip("rule checked in float64 only")
    if not spec.fd:
        pytest.skip("a kink: checked against torch.func.jvp instead")
    args = spec.args_for(rng, shape, dtype)
    check_jacobian(spec.fn, *args, argnums=spec.diff)


@pytest.mark.parametrize("spec,shape", CASES)
def test_jacobian_noncontiguous(spec, shape, rng):
    if not (spec.noncontig and spec.fd):
        pytest.skip("not applicable")
    args = tuple(_strided(a) for a in spec.args_for(rng, shape, np.float64))
    check_jacobian(spec.fn, *args, argnums=spec.diff)


@pytest.mark.parametrize("spec,shape", [c for c in CASES if c.values[0].torch is not None])
def test_jvp_vs_torch(spec, shape, rng):
    torch = pytest.importorskip("torch")
    args = spec.args_for(rng, shape, np.float64)
    diff = spec.diff if spec.diff is not None else tuple(
        i for i, a in enumerate(args) if isinstance(a, np.ndarray) and a.dtype.kind == "f"
    )
    tangents = {i: rng.standard_normal(np.shape(args[i])) for i in diff}

    def only_diff(fn, to):
        def g(*xs):
            call = list(args if to is None else map(to, args))
            for i, x in zip(diff, xs):
                call[i] = x
            return fn(*call)

        return g

    out, t = dj.jvp(only_diff(spec.fn, None), tuple(args[i] for i in diff), tuple(tangents[i] for i in diff))
    as_t = lambda a: torch.as_tensor(a) if isinstance(a, np.ndarray | np.generic) else a
    t_out, t_t = torch.func.jvp(
        only_diff(spec.torch, as_t),
        tuple(torch.as_tensor(args[i]) for i in diff),
        tuple(torch.as_tensor(tangents[i]) for i in diff),
    )
    outs, touts = _leaves(out), _leaves(t_out)
    for got, want in zip(_leaves(t), _leaves(t_t)):
        np.testing.assert_allclose(np.asarray(got, dtype=np.float64), want.numpy(), rtol=1e-9, atol=1e-12)
    for got, want in zip(outs, touts):
        np.testing.assert_allclose(np.asarray(got, dtype=np.float64), want.numpy(), rtol=1e-9, atol=1e-12)


def _leaves(x):
    return list(x) if isinstance(x, tuple | list) else [x]


def test_a_broken_rule_turns_the_check_red(monkeypatch, rng):
    """The check can fail: a rule off by 1% must be caught."""
    rule = dj.RULES["sin"]
    broken = rule._replace(per_arg=(lambda xp, ans, x: 1.01 * xp.cos(x),))
    monkeypatch.setitem(dj.RULES, "sin", broken)
    with pytest.raises(AssertionError, match="central differences"):
        check_jacobian(np.sin, rng.uniform(-1, 1, size=3))


# --- second derivatives: every rule under nested transforms ---------------------------------
# Specs whose Hessian cannot be checked this way, and why. Anything else must pass.
HESSIAN_SKIPS = {
    # d det = tr(adj(A) dA) takes adj(A) from an SVD; nested, it is det(A) A^{-1}, which needs an invertible A
    "det-singular": "second derivatives of det need an invertible matrix (adj(A) = det(A) A^-1 when nested)",
    # inputs at a point where f is not twice differentiable (|x|-like): the first derivative there is
    # torch's convention (0) and central differences agree by symmetry, but the second does not exist
    "std-constant": "std at zero variance is |x|-like: no second derivative",
    "norm-at-zero": "a norm at a zero vector is |x|-like: no second derivative",
}
# these call norm(ord=2|-2|'nuc'), which differentiates through an SVD: nested, they raise a clear error
HESSIAN_RAISES = {"norm-matrix-ords", "norm-matrix-axes"}

HESSIAN_CASES = [pytest.param(s, s.shapes[0], id=s.name) for s in SPECS if s.fd]


def _float_leaves(out):
    leaves = list(out) if isinstance(out, tuple | list) else [out]
    return [x for x in leaves if np.dtype(np.result_type(x)).kind == "f"]


@pytest.mark.parametrize("spec,shape", HESSIAN_CASES)
def test_hessian_vs_differenced_jacobian(spec, shape):
    """Forward-over-forward: ``dj.hessian`` of ``sum(w * f(...))`` (fixed random weights ``w``)
    with respect to one differentiated argument, against central differences of dualjac's own
    first derivative (``jacfwd``). Every rule must accept a lower-level Dual as its primal."""
    if spec.name in HESSIAN_SKIPS:
        pytest.skip(HESSIAN_SKIPS[spec.name])
    rng = np.random.default_rng(1)
    args = spec.args_for(rng, shape, np.float64)
    floats = [i for i, a in enumerate(args) if isinstance(a, np.ndarray) and a.dtype.kind == "f"]
    i = spec.diff[0] if spec.diff is not None else floats[0]
    outs = _float_leaves(spec.fn(*args))
    weights = [rng.standard_normal(np.shape(o)) for o in outs]

    def g(x):
        call = list(args)
        call[i] = x
        leaves = _float_leaves(spec.fn(*call))
        return sum(np.sum(w * leaf) for w, leaf in zip(weights, leaves)) + 0 * np.sum(x)

    x = args[i]
    if spec.name in HESSIAN_RAISES:
        with pytest.raises(dj.UnsupportedOpError, match="second derivatives of norm"):
            dj.hessian(g)(x)
        return
    hess = np.asarray(dj.hessian(g)(x)).reshape(x.size, x.size)
    fd = _differenced_gradient(g, x)
    scale = max(1.0, float(np.max(np.abs(fd))))
    np.testing.assert_allclose(hess, fd, rtol=1e-5, atol=1e-5 * scale, err_msg=f"{spec.name}: hessian")


def _differenced_gradient(g, x):
    """Central differences of dualjac's own gradient of scalar ``g``: ``(x.size, x.size)``."""
    grad = dj.jacfwd(g)
    h = 1e-6 * max(1.0, float(np.max(np.abs(x))))
    cols = []
    for e in np.eye(x.size):
        step = h * e.reshape(x.shape)
        cols.append((np.asarray(grad(x + step)) - np.asarray(grad(x - step))).reshape(-1) / (2 * h))
    return np.stack(cols, axis=-1)


@pytest.mark.parametrize("ord", [None, "fro", 1, -1, np.inf, -np.inf])
def test_hessian_of_matrix_norms_without_svd(ord, rng):
    """The matrix norms that need no SVD differentiate twice (those with an SVD raise, above)."""
    x = rng.uniform(-2, 2, size=(3, 4))
    hess = dj.hessian(lambda a: np.linalg.norm(a, ord))(x).reshape(x.size, x.size)
    np.testing.assert_allclose(hess, _differenced_gradient(lambda a: np.linalg.norm(a, ord), x), rtol=1e-5, atol=1e-5)
