"""Workspaces (dualjac/buffers.py): the results never change, a kept array that anything still
references (a returned Jacobian, a live tangent) is never handed out again, and nothing is kept
outside a workspace."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest

import dualjac as dj
from dualjac import buffers
from dualjac.tree import flatten
from rule_specs import all_specs

SPECS = [s for s in all_specs() if s.fd]


@pytest.fixture
def every_array_pooled(monkeypatch):
    """A workspace taking every lane array, however small, so the spec table's tiny shapes take its
    path (factor * tangent products, out= products and GEMMs)."""
    monkeypatch.setattr(buffers, "MIN_BYTES", 0)
    with dj.Workspace() as ws:
        yield ws


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_pooled_path_gives_the_same_jacobians(spec, rng, every_array_pooled):
    args = spec.args_for(rng, spec.shapes[-1], np.float64)
    diff = spec.diff if spec.diff is not None else tuple(
        i for i, a in enumerate(args) if isinstance(a, np.ndarray) and a.dtype.kind == "f"
    )
    pooled = dj.jacfwd(spec.fn, argnums=diff)(*args)
    pooled_again = dj.jacfwd(spec.fn, argnums=diff)(*args)  # the second call reuses the buffers
    with dj.Workspace(max_bytes=0):  # takes nothing: every array is fresh
        plain = dj.jacfwd(spec.fn, argnums=diff)(*args)
    for p, q, r in zip(flatten(pooled)[0], flatten(pooled_again)[0], flatten(plain)[0]):
        np.testing.assert_allclose(p, r, rtol=1e-13, atol=1e-15)
        np.testing.assert_array_equal(p, q)


def test_a_returned_jacobian_is_never_overwritten(rng):
    W = rng.standard_normal((16, 256))
    f = lambda x: np.tanh(x @ W) @ W.T  # (1024, 16) -> lanes (16, 1024, 256): 32 MiB, pooled
    x1, x2 = rng.standard_normal((2, 1024, 16))
    ws = dj.Workspace()
    with ws:
        J1 = dj.batch_jacobian(f, x1)
        kept = J1.copy()
        for _ in range(3):
            with ws:  # entered again: the same memory
                dj.batch_jacobian(f, x2)
    np.testing.assert_array_equal(J1, kept)
    assert 0 < ws.held <= ws.max_bytes


def test_a_workspace_respects_its_budget_and_nothing_is_kept_outside_one(rng, monkeypatch):
    W = rng.standard_normal((16, 256))
    f = lambda x: np.tanh(x @ W)
    x = rng.standard_normal((1024, 16))
    want = (1 - np.tanh(x[0] @ W) ** 2)[:, None] * W.T
    ws = dj.Workspace(max_bytes=40 << 20)  # room for one 32 MiB lane array
    with ws:
        np.testing.assert_allclose(dj.batch_jacobian(f, x)[0], want)
    assert 0 < ws.held <= 40 << 20
    made, init = [], buffers.Workspace.__init__
    record = lambda self, *a, **k: (made.append(weakref.ref(self)), init(self, *a, **k))[1]  # noqa: E731
    monkeypatch.setattr(buffers.Workspace, "__init__", record)
    J = dj.batch_jacobian(f, x)  # outside a workspace: batch_jacobian's own, dropped with the call
    np.testing.assert_allclose(J[0], want)
    gc.collect()
    assert len(made) == 1 and made[0]() is None and buffers.current() is None


def test_threads_sharing_the_pool_get_their_own_buffers(rng):
    from concurrent.futures import ThreadPoolExecutor

    W = rng.standard_normal((16, 256))
    f = lambda x: np.tanh(np.tanh(x @ W) * 2.0) @ W.T
    xs = rng.standard_normal((8, 1024, 16))
    want = [dj.batch_jacobian(f, x) for x in xs]
    ws = dj.Workspace()

    def run(x):
        with ws:
            return dj.batch_jacobian(f, x)

    with ThreadPoolExecutor(4) as ex:
        got = list(ex.map(run, xs))
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def test_division_by_a_python_zero_is_numpys_inf(rng, every_array_pooled):
    W = rng.standard_normal((4, 5))
    with np.errstate(divide="ignore"):
        J = dj.jacfwd(lambda x: (x @ W) / 0)(np.ones(4))  # a Python 1.0 / 0 would raise
    assert np.isinf(J).all()


def test_division_keeps_float32_range(rng, every_array_pooled):
    """d(1/y) = -ans * dy / y stays finite in float32 where the factor -ans / y overflows."""
    W = np.abs(rng.standard_normal((4, 8))).astype(np.float32)
    f = lambda x: 1.0 / (np.float32(1e-21) * (x @ W) + np.float32(1e-20))
    x = np.ones(4, np.float32)
    with np.errstate(over="ignore"):
        pooled = dj.jacfwd(f)(x)
        with dj.Workspace(max_bytes=0):
            np.testing.assert_array_equal(pooled, dj.jacfwd(f)(x))
    assert np.isfinite(pooled).all()
