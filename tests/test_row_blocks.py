"""batch_jacobian in blocks of rows (config.block_bytes): a cache-sized block at a time once a first
call has shown how wide f's values get. Checked against torch.func and float64 finite differences,
and against functions that mix rows, which blocks would hide if the check did not look at the
whole batch."""

from __future__ import annotations

import numpy as np
import pytest

import dualjac as dj

torch = pytest.importorskip("torch")

from batch_helpers import Spy, mlp, torch_per_sample  # noqa: E402


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of a few rows for the test sizes here (the default is cache-sized, ~4 MiB)."""
    monkeypatch.setattr(dj.config, "block_bytes", 16 << 10)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_blocked_mlp_matches_torch_and_the_whole_batch(rng, dtype, small_blocks):
    f = mlp(rng, dtype)
    x = rng.standard_normal((100, 6)).astype(dtype)
    spy = Spy(f)
    whole = dj.batch_jacobian(spy, x)  # the first call runs whole and learns the width
    assert spy.rows[0] == 100
    spy.rows.clear()
    blocked = dj.batch_jacobian(spy, x)
    assert len([r for r in spy.rows if r < 100]) > 2  # blocks, then the whole-batch check
    assert blocked.dtype == dtype and blocked.shape == (100, 5, 6) and blocked.flags.writeable
    ref = torch_per_sample(f, x)
    rtol = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(blocked, ref, rtol=rtol, atol=rtol * 1e-2)
    np.testing.assert_allclose(blocked, whole, rtol=rtol, atol=rtol * 1e-2)


def test_blocked_matches_finite_differences_on_a_strided_batch(rng, small_blocks):
    f = mlp(rng, np.float64)
    x = rng.standard_normal((160, 14))[::2, ::2]  # (80, 7) strided view
    x = np.ascontiguousarray(x)[:, :6]  # (80, 6), not contiguous either
    assert not x.flags.c_contiguous
    dj.batch_jacobian(f, x)
    J = dj.batch_jacobian(f, x)
    eps = 1e-6
    for k in range(6):
        e = np.zeros(6)
        e[k] = eps
        fd = (f(x + e) - f(x - e)) / (2 * eps)
        np.testing.assert_allclose(J[:, :, k], fd, rtol=1e-7, atol=1e-9)


def test_blocked_pytree_outputs_and_scalar_items(rng, small_blocks):
    w = rng.standard_normal(64)
    W = rng.standard_normal((64, 3))
    f = lambda x: {"h": np.tanh(x[:, None] * w) @ W, "s": np.sin(x)}  # noqa: E731  x: (B,), item ()
    x = rng.standard_normal(200)
    dj.batch_jacobian(f, x)
    J = dj.batch_jacobian(f, x)
    assert J["h"].shape == (200, 3) and J["s"].shape == (200,)
    np.testing.assert_allclose(J["h"], ((1 - np.tanh(x[:, None] * w) ** 2) * w) @ W, rtol=1e-12)
    np.testing.assert_allclose(J["s"], np.cos(x), rtol=1e-14)


@pytest.mark.parametrize(
    "mix",
    [
        lambda h: h - h.mean(0),  # batch statistics
        lambda h: h[::-1],  # another row's value
        lambda h: h + 1e-3 * np.roll(h, 1, axis=0),  # a small neighbour
    ],
    ids=["centered", "reversed", "rolled"],
)
def test_row_mixing_is_caught_when_blocks_would_hide_it(rng, mix, small_blocks):
    g = mlp(rng, np.float64)
    f = lambda x: mix(g(x))  # noqa: E731
    x = rng.standard_normal((100, 6))
    with pytest.raises(dj.RowMixingError):
        dj.batch_jacobian(f, x)
    with pytest.raises(dj.RowMixingError):
        dj.batch_jacobian(f, x)


def test_a_mask_from_a_batch_statistic_gives_the_whole_batch_answer(rng, small_blocks):
    """Mixing only through values (no tangent crosses rows): the blocks' masks would differ from the
    whole batch's, so blocks are given up for the whole batch's answer, and not tried again."""
    g = mlp(rng, np.float64)
    f = lambda x: g(x) * (x[:, :1].mean() > 0)  # noqa: E731
    x = rng.standard_normal((100, 6))
    x[:50] += 1.0
    x[50:] -= 2.0  # the first blocks' mean is positive, the whole batch's negative
    spy = Spy(f)
    whole = dj.batch_jacobian(spy, x)
    again = dj.batch_jacobian(spy, x)
    np.testing.assert_array_equal(again, whole)
    assert not whole.any()  # the whole batch's mask
    spy.rows.clear()
    dj.batch_jacobian(spy, x)
    assert all(r == 100 for r in spy.rows)  # blocks are not tried again


def test_a_function_that_needs_the_whole_batch_runs_whole(rng, small_blocks):
    g = mlp(rng, np.float64)
    f = lambda x: g(x).reshape(100, 5)  # noqa: E731  the batch size written in
    x = rng.standard_normal((100, 6))
    whole = dj.batch_jacobian(f, x)
    np.testing.assert_allclose(dj.batch_jacobian(f, x), whole, rtol=1e-14)
    np.testing.assert_allclose(whole, torch_per_sample(g, x), rtol=1e-12)


def test_check_rows_false_blocks_without_the_check(rng, small_blocks):
    f = mlp(rng, np.float64)
    x = rng.standard_normal((100, 6))
    spy = Spy(f)
    whole = dj.batch_jacobian(spy, x, check_rows=False)
    spy.rows.clear()
    J = dj.batch_jacobian(spy, x, check_rows=False)
    assert max(spy.rows) < 100  # blocks only, no whole-batch pass
    np.testing.assert_allclose(J, whole, rtol=1e-13)


def test_blocks_off_and_tiny_batches(rng, monkeypatch):
    f = mlp(rng, np.float64)
    x = rng.standard_normal((100, 6))
    monkeypatch.setattr(dj.config, "block_bytes", 0)
    spy = Spy(f)
    dj.batch_jacobian(spy, x)
    dj.batch_jacobian(spy, x)
    assert all(r == 100 for r in spy.rows)
    with pytest.raises(ValueError, match="batch"):
        dj.batch_jacobian(f, np.array(1.0))  # 0-d: no batch axis
    J = dj.batch_jacobian(lambda x: np.sin(x) * 2.0, np.array([0.5]))
    np.testing.assert_allclose(J, [2 * np.cos(0.5)], rtol=1e-15)


def test_nan_rows_keep_their_blocks(rng, small_blocks):
    """NaN values in the same places of the blocks and the whole batch are agreement, not mixing."""
    W = rng.standard_normal((6, 64))
    W2 = rng.standard_normal((64, 3))
    f = lambda x: np.log(np.tanh(x @ W) @ W2)  # noqa: E731  negative rows: NaN
    x = rng.standard_normal((100, 6))
    spy = Spy(f)
    with np.errstate(invalid="ignore"):
        whole = dj.batch_jacobian(spy, x)
        spy.rows.clear()
        J = dj.batch_jacobian(spy, x)
    with np.errstate(invalid="ignore"):
        assert np.isnan(f(x)).any()  # NaN values (the derivative 1/v is finite)
    assert spy.rows.count(100) == 1  # blocks and the check, no fallback
    np.testing.assert_allclose(J, whole, rtol=1e-12)
    h = np.tanh(x @ W)
    closed = (1 - h**2)[:, :, None] * W.T[None]  # d tanh(xW) / dx: (B, 64, 6)
    ref = np.einsum("bo,ho,bhi->boi", 1 / (h @ W2), W2, closed)
    np.testing.assert_allclose(J, ref, rtol=1e-10, atol=1e-12)
