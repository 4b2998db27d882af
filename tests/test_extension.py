"""The public extension point: a user's rule, registered with NumPy dispatch, is checked by
dualjac.testing.check_jacobian (and a wrong rule is caught by it)."""

from __future__ import annotations

import numpy as np
import pytest

import dualjac as dj
from dualjac import numpy_api
from dualjac.rules import apply, neg_axis
from dualjac.testing import check_jacobian


@pytest.fixture
def clean():
    """Registrations made by a test are undone after it."""
    saved = [(table, dict(table)) for table in (dj.RULES, numpy_api.UFUNCS, numpy_api.FUNCTIONS)]
    yield
    for table, items in saved:
        table.clear()
        table.update(items)


def _copysign_rule(name="copysign_x", factor=1.0):
    # copysign(x, y) = |x| sign(y): d/dx = sign(x) sign(y); y's sign is piecewise constant (d/dy = 0)
    dj.defrule(
        name,
        primal=lambda xp, x, y: xp.copysign(x, y),
        jvp=(lambda xp, ans, dx, x, y: factor * xp.sign(x) * xp.sign(y) * dx, lambda xp, ans, dy, x, y: 0 * dy),
        elementwise=True,
    )


def test_a_registered_ufunc_rule_passes_check_jacobian(clean, rng):
    x, y = rng.uniform(-2, 2, size=(2, 3)), rng.uniform(-2, 2, size=3)
    with pytest.raises(dj.UnsupportedOpError, match=r"numpy\.copysign"):
        dj.jacfwd(np.copysign)(x, y)
    _copysign_rule()
    dj.register_numpy(np.copysign, "copysign_x")
    check_jacobian(np.copysign, x, y)
    check_jacobian(lambda x: np.copysign(x, -1.0) * x, x)  # in plain NumPy code, with broadcasting
    assert dj.hessian(lambda x: np.copysign(x, y).sum())(y).shape == (3, 3)


def test_check_jacobian_catches_a_wrong_user_rule(clean, rng):
    _copysign_rule(factor=1.01)
    dj.register_numpy(np.copysign, "copysign_x")
    with pytest.raises(AssertionError, match="central differences"):
        check_jacobian(np.copysign, rng.uniform(-2, 2, size=3), rng.uniform(-2, 2, size=3))


def test_a_numpy_function_routed_to_a_rule_or_an_adapter(clean, rng):
    x = rng.uniform(-2, 2, size=(3, 4))
    # np.trapezoid(y, dx=h, axis=-1) is linear in y: the same function on every lane
    dj.defrule(
        "trapezoid",
        primal=lambda xp, y, dx=1.0, axis=-1: xp.trapezoid(y, dx=dx, axis=axis),
        jvp=(lambda xp, ans, dy, y, dx=1.0, axis=-1: xp.trapezoid(dy, dx=dx, axis=neg_axis(axis, y.ndim)),),
    )
    dj.register_numpy(np.trapezoid, lambda y, x=None, dx=1.0, axis=-1: apply("trapezoid", y, dx=dx, axis=axis))
    check_jacobian(lambda y: np.trapezoid(y, dx=0.5, axis=0), x)
    dj.register_numpy(np.trapezoid, "trapezoid")  # a rule name: arrays positional, the rest keywords
    check_jacobian(lambda y: np.trapezoid(y, axis=1), x)


def test_a_user_function_is_a_rule_called_with_apply(clean):
    def logcosh(x):
        return np.logaddexp(x, -x) - np.log(2.0)

    tanh_dx = lambda xp, ans, dx, x: xp.tanh(x) * dx  # noqa: E731 (d log cosh x = tanh x dx)
    dj.defrule("logcosh", primal=lambda xp, x: logcosh(x), jvp=(tanh_dx,), elementwise=True)
    x = np.array([-1.0, 0.0, 2.0])
    np.testing.assert_allclose(apply("logcosh", x), logcosh(x))
    np.testing.assert_allclose(dj.jacfwd(lambda x: apply("logcosh", x))(x), np.diag(np.tanh(x)))
    check_jacobian(lambda x: apply("logcosh", x) * x, x)


def test_registration_errors_name_the_fix(clean):
    with pytest.raises(ValueError, match="defrule"):
        dj.register_numpy(np.copysign, "no_such_rule")
    with pytest.raises(TypeError, match="never hands it a Dual"):
        dj.register_numpy(lambda x: x, "sin")
    with pytest.raises(TypeError, match="rule name"):
        dj.register_numpy(np.copysign, lambda x, y: x)


def test_public_names():
    for name in ("defrule", "register_numpy", "stop_gradient", "nn"):
        assert name in dj.__all__ and hasattr(dj, name)
