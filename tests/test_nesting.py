"""Nested transforms: levels keep perturbations apart (no perturbation confusion)."""

from __future__ import annotations

import numpy as np

import dualjac as dj


def test_perturbation_confusion_forwarddiff_case():
    # D(x -> x * D(y -> x + y)(1))(3) == 1: the inner derivative is 1, whatever x is.
    assert dj.jacfwd(lambda x: x * dj.jacfwd(lambda y: x + y)(1.0))(3.0) == 1.0


def test_perturbation_confusion_with_jvp():
    inner = lambda x: dj.jvp(lambda y: x * y, (np.array(2.0),), (np.array(1.0),))[1]  # = x
    out, t = dj.jvp(lambda x: x * inner(x), (np.array(3.0),), (np.array(1.0),))  # d(x^2) = 2x
    assert float(out) == 9.0 and float(t) == 6.0


def test_third_derivative_by_triple_nesting():
    f = lambda x: np.sin(x) * x
    d3 = dj.jacfwd(dj.jacfwd(dj.jacfwd(f)))(0.7)
    x = 0.7
    assert np.isclose(d3, -3 * np.sin(x) - x * np.cos(x), rtol=1e-12)


def test_hessian_of_multi_input_function_by_argnums():
    f = lambda x, y: (x**2 * y).sum()
    x, y = np.array([1.0, 2.0]), np.array([3.0, 4.0])
    H = dj.hessian(f, argnums=(0, 1))(x, y)
    np.testing.assert_allclose(H[0][0], np.diag(2 * y))
    np.testing.assert_allclose(H[0][1], np.diag(2 * x))
    np.testing.assert_allclose(H[1][1], np.zeros((2, 2)))
