"""Specs for NumPy functions that only inspect a Dual (integer/boolean/shape results) or
build constants shaped like it: they must work on Duals and carry no derivative."""

from __future__ import annotations

import numpy as np

from rule_specs import Spec


def _inspect(x):
    n = np.ndim(x) + np.size(x) + len(np.shape(x)) + np.count_nonzero(x)
    flags = np.all(x > -9) & np.any(x < 9) & np.isclose(x, x).all() & np.allclose(x, x) & np.array_equal(x, x)
    ints = np.argmax(x) + np.argmin(x) + np.argsort(x, axis=None)[0] + len(np.nonzero(x > 0))
    assert np.result_type(x) == x.dtype and np.isrealobj(x) and not np.iscomplexobj(x)
    consts = np.zeros_like(x) + np.ones_like(x) + np.full_like(x, 2.0) + 0 * np.empty_like(x).size
    return x * (n + flags + ints) + consts + x.argmax() + x.argmin() + x.all() + x.any() + x.nonzero()[0].size


SPECS = [Spec("inspection", _inspect, [(3,), (2, 3)])]
