"""No untested rule can exist: every RULES entry, every ufunc in UFUNCS and every
function in FUNCTIONS must be reached by at least one spec of tests/specs/."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import dualjac as dj
from dualjac import numpy_api
from dualjac.rules.special import NEEDS_SCIPY
from rule_specs import all_specs


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
    if importlib.util.find_spec("scipy") is None:  # their specs need SciPy (tests/specs/special.py)
        missing -= set(NEEDS_SCIPY)
    missing = sorted(missing)
    assert not missing, f"rules with no spec in tests/specs/: {missing}"


def test_every_ufunc_reaches_its_rule(reached):
    missing = sorted(u.__name__ for u in numpy_api.UFUNCS if u not in reached[1])
    assert not missing, f"ufuncs in numpy_api.UFUNCS that no spec calls: {missing}"


def test_every_numpy_function_reaches_its_rule(reached):
    missing = sorted(f.__name__ for f in numpy_api.FUNCTIONS if f not in reached[2])
    assert not missing, f"NumPy functions in numpy_api.FUNCTIONS that no spec calls: {missing}"
