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
    broken = rule._replace(jvp=(lambda xp, ans, dx, x: 1.01 * xp.cos(x) * dx,))
    monkeypatch.setitem(dj.RULES, "sin", broken)
    with pytest.raises(AssertionError, match="central differences"):
        check_jacobian(np.sin, rng.uniform(-1, 1, size=3))
