"""The CuPy code path, exercised without a GPU.

``StrictArray`` behaves like a CuPy array where it matters: it refuses implicit
conversion to NumPy (``__array__`` raises, as CuPy's does), refuses to mix with
NumPy arrays in an operation, and NumPy functions applied to it dispatch back to
its own namespace. Registered with ``dualjac.backend``, the spec table runs with
every input a ``StrictArray``: a rule that called NumPy on values directly, or
built a NumPy array and mixed it in, fails here as it would on a GPU.
"""

from __future__ import annotations

import numpy as np
import pytest
from numpy.lib.mixins import NDArrayOperatorsMixin

import dualjac as dj
from dualjac import backend
from rule_specs import all_specs


def _unwrap(x):
    if isinstance(x, StrictArray):
        return x.a
    if isinstance(x, np.ndarray) and x.ndim > 0:
        raise TypeError("StrictArray: implicit mixing with a NumPy array (CuPy refuses this)")
    if isinstance(x, (list, tuple)):
        return type(x)(_unwrap(v) for v in x)
    return x


def _wrap(x):
    if isinstance(x, np.ndarray | np.generic) and not isinstance(x, np.bool_ | bool) or (
        isinstance(x, np.ndarray)
    ):
        return StrictArray(np.asarray(x))
    if isinstance(x, (list, tuple)):
        return type(x)(_wrap(v) for v in x) if not hasattr(x, "_fields") else type(x)(*map(_wrap, x))
    return x


class StrictArray(NDArrayOperatorsMixin):
    def __init__(self, a):
        self.a = a

    def __array__(self, dtype=None, copy=None):
        raise TypeError("StrictArray: implicit conversion to a NumPy array is not allowed")

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if any(type(x) is dj.Dual for x in inputs):
            return NotImplemented
        return _wrap(getattr(ufunc, method)(*map(_unwrap, inputs), **kwargs))

    def __array_function__(self, func, types, args, kwargs):
        if any(t is dj.Dual for t in types):
            return NotImplemented
        return _wrap(func(*_unwrap(args), **{k: _unwrap(v) for k, v in kwargs.items()}))

    def __getitem__(self, key):
        return _wrap(self.a[_unwrap(key) if isinstance(key, StrictArray) else key])

    def __setitem__(self, key, value):
        self.a[key] = _unwrap(value) if isinstance(value, StrictArray) else value

    def __getattr__(self, name):
        attr = getattr(self.a, name)
        if callable(attr):
            return lambda *a, **k: _wrap(attr(*_unwrap(a), **{n: _unwrap(v) for n, v in k.items()}))
        return _wrap(attr) if isinstance(attr, np.ndarray) else attr

    def __len__(self):
        return len(self.a)

    def __float__(self):
        return float(self.a)

    def __bool__(self):
        return bool(self.a)


class _Namespace:
    """numpy, but taking and returning StrictArrays (what `cupy` is to dualjac)."""

    def __init__(self, mod):
        self._mod = mod

    def __getattr__(self, name):
        attr = getattr(self._mod, name)
        if isinstance(attr, type(np)):
            return _Namespace(attr)
        if callable(attr) and not isinstance(attr, type):
            return lambda *a, **k: _wrap(attr(*_unwrap(a), **{n: _unwrap(v) for n, v in k.items()}))
        return attr


strict = _Namespace(np)


@pytest.fixture(autouse=True)
def _registered():
    backend.register_namespace(StrictArray, strict)
    yield
    backend._BY_TYPE.pop(StrictArray, None)


SPECS = [s for s in all_specs() if not s.name.startswith(("power-at-zero",))]


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_rules_run_in_a_strict_namespace(spec, rng):
    shape = spec.shapes[0]
    args = spec.args_for(rng, shape, np.float64)
    diff = spec.diff if spec.diff is not None else tuple(
        i for i, a in enumerate(args) if isinstance(a, np.ndarray) and a.dtype.kind == "f"
    )
    want = dj.jacfwd(spec.fn, argnums=diff)(*args)
    strict_args = tuple(StrictArray(a) if i in diff else a for i, a in enumerate(args))
    got = dj.jacfwd(spec.fn, argnums=diff)(*strict_args)
    for g, w in zip(_leaves(got), _leaves(want)):
        assert isinstance(g, StrictArray), f"result left the strict namespace: {type(g)}"
        np.testing.assert_allclose(g.a, w, rtol=1e-12, atol=1e-14)


def _leaves(t):
    out = []
    for x in t if isinstance(t, tuple | list) else [t]:
        out.extend(_leaves(x) if isinstance(x, tuple | list) else [x])
    return out


def test_batch_jacobian_in_a_strict_namespace(rng):
    W = StrictArray(rng.standard_normal((3, 2)))
    x = rng.standard_normal((4, 3))
    f = lambda x: np.tanh(x @ W) * 2.0
    got = dj.batch_jacobian(f, StrictArray(x))
    want = dj.batch_jacobian(lambda x: np.tanh(x @ W.a) * 2.0, x)
    assert isinstance(got, StrictArray)
    np.testing.assert_allclose(got.a, want, rtol=1e-13)


def test_array_namespace_picks_the_array_library():
    assert backend.array_namespace(np.ones(2), 1.0) is np
    assert backend.array_namespace(StrictArray(np.ones(2)), np.float64(1.0)) is strict
    d = dj.Dual(np.ones(2), np.ones((1, 2)))
    assert backend.array_namespace(d, StrictArray(np.ones(2))) is np  # a Dual dispatches via numpy
