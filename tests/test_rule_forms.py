"""The declared forms of the rules table are true of the rules: a ``linear=`` rule's tangent map is
the op itself (less its constant part, ``op(0)``: ``pad`` with ``constant_values``), a ``bilinear=``
rule's two maps are the op with one argument carrying lanes. Checked on
the arguments every spec of tests/specs/ hands the rules (recorded while the specs run), against the
op's own primal: a rule declared in the wrong form, or a lane map that differs from its op, fails."""

from __future__ import annotations

import numpy as np
import pytest

import dualjac as dj
from rule_specs import all_specs

FORMS = ("linear", "bilinear")


@pytest.fixture(scope="module")
def calls():
    """Up to three plain-array calls of each linear and bilinear rule's primal, from the specs."""
    seen: dict[str, list] = {}
    saved = dict(dj.RULES)

    def recording(name, primal):
        def f(xp, *a, **k):
            if all(isinstance(v, (np.ndarray, int, float, tuple, list, type(None))) for v in a):
                if len(seen.setdefault(name, [])) < 3:
                    seen[name].append((a, k))
            return primal(xp, *a, **k)

        return f

    for name, rule in saved.items():
        if rule.form in FORMS:
            dj.RULES[name] = rule._replace(primal=recording(name, rule.primal))
    try:
        rng = np.random.default_rng(0)
        for spec in all_specs():
            args = spec.args_for(rng, spec.shapes[-1], np.float64)
            diff = spec.diff if spec.diff is not None else tuple(
                i for i, a in enumerate(args) if isinstance(a, np.ndarray) and a.dtype.kind == "f"
            )
            dj.jacfwd(spec.fn, argnums=diff)(*args)
    finally:
        dj.RULES.clear()
        dj.RULES.update(saved)
    return seen


def test_every_linear_and_bilinear_rule_was_called(calls):
    missing = sorted(n for n, r in dj.RULES.items() if r.form in FORMS and n not in calls)
    assert not missing, f"no spec called these rules with plain arrays: {missing}"


@pytest.mark.parametrize("name", sorted(n for n, r in dj.RULES.items() if r.form in FORMS))
def test_the_lane_maps_are_the_op(name, calls):
    rule = dj.RULES[name]
    for args, params in calls.get(name, []):
        ans = rule.primal(np, *args, **params)
        for i in range(2 if rule.form == "bilinear" else 1):
            a = np.asarray(args[i])
            if a.dtype.kind != "f":
                continue
            op = lambda v: rule.primal(np, *args[:i], v, *args[i + 1 :], **params)  # noqa: E731
            base = op(np.zeros_like(a))  # the constant part (0 for a linear op)
            b = np.random.default_rng(2).standard_normal(a.shape)
            got = np.asarray(rule.per_arg[i](np, ans, np.stack([a, b]), *args, **params))  # two lanes
            for lane, v in zip(got, (a, b)):
                np.testing.assert_allclose(lane, op(v) - base, rtol=1e-12, atol=1e-12, err_msg=f"{name} arg {i}")


def test_a_lane_map_that_is_not_the_op_is_caught(calls, monkeypatch):
    rule = dj.RULES["transpose"]
    monkeypatch.setitem(dj.RULES, "transpose", rule._replace(per_arg=(lambda xp, ans, dx, x, axes=None: dx,)))
    with pytest.raises(AssertionError):
        test_the_lane_maps_are_the_op("transpose", calls)


def test_no_rule_is_called_with_a_made_up_tangent(monkeypatch):
    """Factors are evaluated without a tangent; the per-argument rules only ever see real lanes."""
    seen = []
    rule = dj.RULES["maximum"]  # a selection: a per-argument rule on the tangent itself

    def spying(f):
        return lambda xp, ans, d, *a, **k: seen.append(d) or f(xp, ans, d, *a, **k)

    spy = tuple(spying(f) for f in rule.per_arg)
    monkeypatch.setitem(dj.RULES, "maximum", rule._replace(per_arg=spy))
    x = np.random.default_rng(1).standard_normal((512, 300))  # big: once took a pooled path with dx = 1.0
    dj.batch_jacobian(lambda x: np.maximum(np.sin(x) @ np.ones((300, 4)), 0.0), x, mode="forward")
    assert seen and all(isinstance(d, np.ndarray) and d.ndim >= 2 for d in seen)
