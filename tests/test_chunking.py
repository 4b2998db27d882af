"""Chunking: the result does not depend on how many lanes a pass carries."""

from __future__ import annotations

import numpy as np
import pytest

import dualjac as dj

N = 7


def _f(x):
    W = np.linspace(-1, 1, N * 5).reshape(N, 5)
    return np.tanh(np.sin(x) @ W) * x[..., :5]


@pytest.mark.parametrize("chunk", [1, 2, 3, N - 1, N, N + 1, 100])
def test_jacfwd_identical_for_every_chunk_size(chunk, rng):
    x = rng.standard_normal(N)
    full = dj.jacfwd(_f)(x)
    np.testing.assert_allclose(dj.jacfwd(_f, chunk_size=chunk)(x), full, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("chunk", [1, 2, 3, N - 1, N, N + 1])
def test_batch_jacobian_identical_for_every_chunk_size(chunk, rng):
    x = rng.standard_normal((4, N))
    full = dj.batch_jacobian(_f, x)
    np.testing.assert_allclose(dj.batch_jacobian(_f, x, chunk_size=chunk), full, rtol=1e-14, atol=1e-15)


def test_elementwise_chunks_are_bitwise_identical(rng):
    x = rng.standard_normal(10)
    f = lambda x: np.exp(np.sin(x)) * x
    assert np.array_equal(dj.jacfwd(f, chunk_size=3)(x), dj.jacfwd(f)(x))


def test_multiple_inputs_split_across_chunks(rng):
    a, b = rng.standard_normal(3), rng.standard_normal((2, 2))
    f = lambda a, b: np.sin(b @ a[:2]) * a[2]
    full = dj.jacfwd(f, argnums=(0, 1))(a, b)
    for chunk in (1, 2, 5, 6):
        got = dj.jacfwd(f, argnums=(0, 1), chunk_size=chunk)(a, b)
        for g, w in zip(got, full):
            np.testing.assert_allclose(g, w, rtol=1e-14)


def test_default_chunk_respects_the_memory_budget(rng, monkeypatch):
    """With a tiny budget the default splits into several passes, same answer."""
    x = rng.standard_normal((3, N))
    full = dj.batch_jacobian(_f, x)
    lanes = []
    real = dj.Dual.__init__

    def spy(self, primal, tangent, level=1):
        lanes.append(tangent.shape[0])
        real(self, primal, tangent, level)

    monkeypatch.setattr(dj.config, "tangent_bytes", 3 * 5 * 8 * 2)  # two lanes of the widest value
    monkeypatch.setattr(dj.Dual, "__init__", spy)
    got = dj.batch_jacobian(_f, x)
    np.testing.assert_allclose(got, full, rtol=1e-14)
    assert max(lanes) <= 3 and len(set(lanes)) >= 1 and min(lanes) >= 1
    assert sum(1 for n in lanes if n > 0) > N  # several passes happened


def test_a_wider_intermediate_does_not_overflow_the_budget(monkeypatch, rng):
    """The input has 64 elements, an intermediate 4x as many. Sized from the input alone, the
    first pass would take 32 lanes (4x the budget); the default chunking probes first instead."""
    x = rng.standard_normal(64)
    f = lambda x: np.tanh(np.concatenate([x, 2 * x, 3 * x, 4 * x])).sum()
    full = dj.jacfwd(f, chunk_size=64)(x)
    budget = 8 * 256 * 8  # eight lanes of the widest value
    sizes = []
    real = dj.Dual.__init__

    def spy(self, primal, tangent, level=1):
        sizes.append(tangent.shape[0] * int(np.prod(primal.shape)) * 8)
        real(self, primal, tangent, level)

    monkeypatch.setattr(dj.config, "tangent_bytes", budget)
    monkeypatch.setattr(dj.Dual, "__init__", spy)
    np.testing.assert_allclose(dj.jacfwd(f)(x), full, rtol=1e-13)
    assert max(sizes) <= budget


@pytest.mark.parametrize("bad", [0, -1, 2.5])
def test_bad_chunk_size_is_rejected(bad):
    with pytest.raises(ValueError, match="chunk_size"):
        dj.jacfwd(_f, chunk_size=bad)(np.ones(N))


def test_a_pass_whose_output_ignores_its_lanes_gives_zero_columns():
    """Data-dependent code: the second of three one-lane passes returns a constant (the same value)."""
    calls = []

    def f(x):
        calls.append(1)
        return np.full(3, 2.0) if len(calls) == 2 else 2 * x

    J = dj.jacfwd(f, chunk_size=1)(np.ones(3))
    np.testing.assert_array_equal(J, np.diag([2.0, 0.0, 2.0]))


def test_long_runs_show_a_tqdm_bar_when_no_progress_hook_is_set(monkeypatch):
    import sys
    import types

    from dualjac import settings as config_module

    bars = []

    class FakeBar:
        def __init__(self, total, **kw):
            self.total, self.n, self.closed = total, 0, False
            bars.append(self)

        def update(self, k):
            self.n += k

        def close(self):
            self.closed = True

    monkeypatch.setitem(sys.modules, "tqdm.auto", types.SimpleNamespace(tqdm=FakeBar))
    clock = iter(range(0, 1000, 2))  # every pass "takes" 2 s
    monkeypatch.setattr(config_module.time, "perf_counter", lambda: next(clock))
    dj.jacfwd(_f, chunk_size=3)(np.ones(N))
    assert len(bars) == 1 and bars[0].n == N and bars[0].closed
