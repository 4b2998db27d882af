"""No untested rule can exist: every RULES entry, every ufunc in UFUNCS and every
function in FUNCTIONS must be reached by at least one spec of tests/specs/."""

from __future__ import annotations

import numpy as np
import pytest

import dualjac as dj
from dualjac import numpy_api
from dualjac.rules.special import NEEDS_SCIPY
from rule_specs import all_specs
from specs import special as special_specs


@pytest.fixture(scope="module")
def reached():
    """Run every spec once, recording the rules, ufuncs and NumPy functions it reaches."""
    rules, ufuncs, funcs = set(), set(), set()
    saved_rules = dict(dj.RULES)
    saved_ufunc, saved_function = numpy_api.array_ufunc, numpy_api.array_function

    def recording(name, primal):
        def f(*a, **k):
            rules.add(name)
            return primal(*a, **k)

        return f

    for name, rule in saved_rules.items():
        dj.RULES[name] = rule._replace(primal=recording(name, rule.primal))

    def array_ufunc(ufunc, method, inputs, kwargs):
        ufuncs.add(ufunc)
        return saved_ufunc(ufunc, method, inputs, kwargs)

    def array_function(func, types, args, kwargs):
        funcs.add(func)
        return saved_function(func, types, args, kwargs)

    numpy_api.array_ufunc, numpy_api.array_function = array_ufunc, array_function
    try:
        rng = np.random.default_rng(0)
        for spec in all_specs():
            for shape in spec.shapes:
                args = spec.args_for(rng, shape, np.float64)
                dj.jacfwd(spec.fn, argnums=spec.diff if spec.diff is not None else tuple(
                    i for i, a in enumerate(args) if isinstance(a, np.ndarray) and a.dtype.kind == "f"
                ))(*args)
    finally:
        dj.RULES.clear()
        dj.RULES.update(saved_rules)
        numpy_api.array_ufunc, numpy_api.array_function = saved_ufunc, saved_function
    return rules, ufuncs, funcs


def test_every_rule_has_a_spec(reached):
    missing = set(dj.RULES) - reached[0]
    if special_specs.sp is None:  # their specs need SciPy (tests/specs/special.py)
        missing -= set(NEEDS_SCIPY)
    missing = sorted(missing)
    assert not missing, f"rules with no spec in tests/specs/: {missing}"


def test_every_ufunc_reaches_its_rule(reached):
    missing = sorted(u.__name__ for u in numpy_api.UFUNCS if u not in reached[1])
    assert not missing, f"ufuncs in numpy_api.UFUNCS that no spec calls: {missing}"


def test_every_numpy_function_reaches_its_rule(reached):
    missing = sorted(f.__name__ for f in numpy_api.FUNCTIONS if f not in reached[2])
    assert not missing, f"NumPy functions in numpy_api.FUNCTIONS that no spec calls: {missing}"


def _spec_cases():
    for spec in all_specs():
        for shape in spec.shapes:
            yield pytest.param(spec, shape, id=f"{spec.name}-{shape}")


@pytest.mark.parametrize("spec, shape", list(_spec_cases()))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_primal_is_numpys_own(spec, shape, dtype):
    """Every function dualjac accepts computes NumPy's value and dtype on the same inputs (array-likes
    and dtype= arguments: tests/test_reliability.py)."""
    if dtype == np.float32 and not spec.float32:
        pytest.skip("float64 only")
    args = spec.args_for(np.random.default_rng(0), shape, dtype)
    diff = spec.diff if spec.diff is not None else tuple(
        i for i, a in enumerate(args) if isinstance(a, np.ndarray) and a.dtype.kind == "f"
    )
    want = spec.fn(*args)
    primals = tuple(args[i] for i in diff)

    def call(*xs):
        full = list(args)
        for i, x in zip(diff, xs):
            full[i] = x
        return spec.fn(*full)

    got, _ = dj.jvp(call, primals, tuple(np.ones_like(p) for p in primals))
    for g, w in zip(_flat(got), _flat(want)):
        g, w = np.asarray(g), np.asarray(w)
        assert g.shape == w.shape and g.dtype == w.dtype, (g.shape, w.shape, g.dtype, w.dtype)
        np.testing.assert_allclose(g, w, rtol=1e-6 if dtype == np.float32 else 1e-13, atol=1e-300)


def _flat(t):
    return [v for e in t for v in _flat(e)] if isinstance(t, (tuple, list)) else [t]
