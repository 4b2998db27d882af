"""batch_jacobian's row check (one single-lane pass over the whole batch) on batches large enough
for row blocks, against functions that mix rows (everywhere, in a few rows picked by the data, only on a
large batch, next to outputs or rows of far larger size), and ``x @ W`` on the seed itself, whose lanes
stay a broadcast of W's rows. Checked against torch.func, closed forms and functions that mix rows."""

from __future__ import annotations

import numpy as np
import pytest

import dualjac as dj

torch = pytest.importorskip("torch")

from batch_helpers import Spy, mlp, torch_per_sample  # noqa: E402

B = 600


@pytest.fixture(params=[0, 16 << 10], ids=["whole", "blocks"])
def blocks(request, monkeypatch):
    monkeypatch.setattr(dj.config, "block_bytes", request.param)
    return request.param


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_check_runs_over_the_whole_batch(rng, dtype, blocks):
    f = mlp(rng, dtype, width=32)
    x = rng.standard_normal((B, 6)).astype(dtype)
    spy = Spy(f)
    dj.batch_jacobian(spy, x)
    assert spy.rows == [B, B]  # the Jacobian's pass, then the check's
    spy.rows.clear()
    J = dj.batch_jacobian(spy, x)
    assert spy.rows[-1] == B and (len(spy.rows) > 2 if blocks else spy.rows == [B, B])  # blocks, then the check
    rtol = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(J, torch_per_sample(f, x), rtol=rtol, atol=rtol * 1e-2)


MIXERS = [
    lambda h: h - h.mean(0),  # batch statistics
    lambda h: (h - h.mean(0)) / h.std(0),  # batch norm
    lambda h: h[::-1],  # another row's value
    lambda h: h + 1e-3 * np.roll(h, 1, axis=0),  # a small neighbour
    lambda h: np.tanh(h) * np.tanh(h).sum(),  # a sum over rows
]


@pytest.mark.parametrize("mix", MIXERS, ids=["centered", "batchnorm", "reversed", "rolled", "sum"])
def test_row_mixing_of_a_large_batch_raises(rng, mix, blocks):
    g = mlp(rng, np.float64, width=32)
    f = lambda x: mix(g(x))  # noqa: E731
    x = rng.standard_normal((B, 6))
    for _ in range(2):  # the first call whole, the second in blocks where they are on
        with pytest.raises(dj.RowMixingError):
            dj.batch_jacobian(f, x)


@pytest.fixture
def rolled_tangents():
    """An op whose value is its argument but whose (wrong) tangent takes the previous row's: mixing
    that shows in tangents alone, so the sample's values agree and its tangents must not."""
    dj.defrule("roll_tangent_", primal=lambda xp, x: x * 1.0, jvp=(lambda xp, ans, t, x: xp.roll(t, 1, axis=1),))
    yield lambda x: dj.rules.apply("roll_tangent_", x)
    dj.RULES.pop("roll_tangent_")


@pytest.mark.parametrize("n", [8, B])
def test_mixing_in_tangents_alone_raises(rng, rolled_tangents, n):
    g = mlp(rng, np.float64, width=32)
    x = rng.standard_normal((n, 6))
    with pytest.raises(dj.RowMixingError):
        dj.batch_jacobian(lambda x: rolled_tangents(g(x)), x)


def test_a_mask_from_a_batch_statistic_of_a_large_batch(rng, blocks):
    """The sample's mask differs from the whole batch's (its values disagree): the pass over the whole
    batch decides, and finds no mixing in the tangents (the mask is constant)."""
    g = mlp(rng, np.float64, width=32)
    f = lambda x: g(x) * (x[:, :1].mean() > 0)  # noqa: E731
    x = rng.standard_normal((B, 6))
    x[:, 0] = -2.0
    x[4::9, 0] = 10.0  # the sample's rows (every 9th from the 4th): its mean is positive, the batch's negative
    assert x[:, 0].mean() < 0
    J = dj.batch_jacobian(f, x)
    J = dj.batch_jacobian(f, x)
    assert not J.any()  # the whole batch's mask


def test_a_function_that_needs_the_whole_batch(rng):
    g = mlp(rng, np.float64, width=32)
    f = lambda x: g(x).reshape(B, 5)  # noqa: E731  the batch size written in: the sample fails
    x = rng.standard_normal((B, 6))
    np.testing.assert_allclose(dj.batch_jacobian(f, x), torch_per_sample(g, x), rtol=1e-12, atol=1e-14)


def test_nan_rows_are_not_mixing(rng, blocks):
    W = rng.standard_normal((6, 16))
    W2 = rng.standard_normal((16, 3))
    f = lambda x: np.log(np.tanh(x @ W) @ W2)  # noqa: E731  negative rows: NaN values
    x = rng.standard_normal((B, 6))
    with np.errstate(invalid="ignore"):
        dj.batch_jacobian(f, x)
        J = dj.batch_jacobian(f, x)
        assert np.isnan(f(x)).any()
    h = np.tanh(x @ W)
    ref = np.einsum("bo,ho,bhi->boi", 1 / (h @ W2), W2, (1 - h**2)[:, :, None] * W.T[None])
    np.testing.assert_allclose(J, ref, rtol=1e-10, atol=1e-12)


# --- mixing a check on a sample of rows, or with one scale for the whole output, would miss --------
def _raises_every_call(f, x, **kw):
    for _ in range(3):  # the first call whole, later ones in blocks where they are on
        with pytest.raises(dj.RowMixingError):
            dj.batch_jacobian(f, x, **kw)


def test_mixing_in_a_few_rows_picked_by_the_data_raises(rng, blocks):
    """A forward fill: the rows the data flags (0.6% here) take the previous row's features."""
    W = rng.standard_normal((8, 32))
    x = rng.standard_normal((1024, 8))
    f = lambda x: np.where(x[:, :1] > 2.5, np.roll(x @ W, 1, axis=0), x @ W)  # noqa: E731
    assert 0 < (x[:, 0] > 2.5).sum() < 10
    _raises_every_call(f, x)


def test_mixing_only_on_a_large_batch_raises(rng, blocks):
    """Blocks of rows (and samples of them) are small batches: f must be checked on the whole one."""
    W = rng.standard_normal((16, 300)) / 4

    def f(x):
        h = x @ W
        if len(x) >= 256:
            h = h - h.mean(0)
        return np.tanh(h) @ W.T

    _raises_every_call(f, rng.standard_normal((300, 16)))


@pytest.mark.parametrize("mode", ["forward", "reverse"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_non_finite_row_does_not_switch_off_the_check(rng, mode, bad):
    W = rng.standard_normal((8, 32))
    f = lambda x: np.tanh(x @ W) + 0.5 * np.roll(x @ W, 1, axis=0)  # noqa: E731
    x = rng.standard_normal((300, 8))
    x[150, 0] = bad
    with np.errstate(invalid="ignore"), pytest.raises(dj.RowMixingError):
        dj.batch_jacobian(f, x, mode=mode)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mixing_beside_far_larger_outputs_or_rows_raises(rng, dtype):
    W = rng.standard_normal((8, 4))
    x = rng.standard_normal((300, 8)).astype(dtype)
    def big_column(x):  # the first output 1e4x the others, which take the previous row's in full
        h = x @ W
        return np.concatenate([1e4 * h[:, :1], h[:, 1:] + np.roll(h[:, 1:], 1, axis=0)], axis=1)

    with pytest.raises(dj.RowMixingError):
        dj.batch_jacobian(big_column, x)
    V = rng.standard_normal((8, 16)) / 3
    x[77] *= 30  # one row's tangents 1000x the others'
    with pytest.raises(dj.RowMixingError):
        dj.batch_jacobian(lambda x: (x @ V) ** 3 + np.roll(x @ V, 1, axis=0), x)


def test_a_float32_model_on_float64_data_is_checked_in_float32(rng):
    """The tolerance is the lowest precision's: float32 tangents of float64 x are not mixing."""
    W = (rng.standard_normal((16, 64)) / 4).astype(np.float32)
    f = lambda x: np.tanh(x.astype(np.float32) @ W) @ W.T  # noqa: E731
    x = rng.standard_normal((100, 16))
    J = dj.batch_jacobian(f, x)
    Wt = torch.as_tensor(W, dtype=torch.float64)
    ref = torch.func.vmap(torch.func.jacrev(lambda r: torch.tanh(r @ Wt) @ Wt.T))(torch.as_tensor(x)).numpy()
    assert J.dtype == np.float32
    np.testing.assert_allclose(J, ref, rtol=2e-5, atol=2e-6)


def test_random_numbers_inside_f_are_named_by_the_check(rng):
    W = rng.standard_normal((16, 64))
    f = lambda x: np.tanh(x @ W) * (np.random.default_rng().random(64) > 0.5) @ W.T  # noqa: E731  dropout
    x = rng.standard_normal((50, 16))
    with pytest.raises(dj.NondeterministicFunctionError, match="row check.*check_rows=False"):
        dj.batch_jacobian(f, x)
    assert dj.batch_jacobian(f, x, check_rows=False).shape == (50, 16, 16)


@pytest.mark.parametrize(
    "f, block",
    [
        (lambda x: x.sum(1), np.ones(100)),
        (lambda x: x, np.eye(100)),
        (lambda x: x.reshape(5, 10, 10), np.eye(100).reshape(10, 10, 100)),
    ],
    ids=["sum", "id", "reshape"],
)
def test_reverse_mode_results_are_the_callers(rng, f, block):
    """Reverse mode (100 features: auto picks it) left broadcast cotangents as read-only results."""
    x = rng.standard_normal((5, 100))
    J = dj.batch_jacobian(f, x)
    ref = np.broadcast_to(block, (5,) + block.shape)  # the closed form, every row alike
    np.testing.assert_array_equal(J, ref)
    J[...] = 7.0  # writable, and no later call sees it
    np.testing.assert_array_equal(dj.batch_jacobian(f, x), ref)
    assert dj.jacrev(f)(x).flags.writeable


# --- x @ W on the seed: lanes that are a broadcast of W's rows ------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matmul_on_the_seed_is_w_transposed(rng, dtype):
    W = rng.standard_normal((6, 4))  # float64 weights: a float32 x gives float32 results
    x = rng.standard_normal((50, 6)).astype(dtype)
    J = dj.batch_jacobian(lambda x: x @ W.astype(dtype), x)
    assert J.dtype == dtype and J.flags.writeable
    np.testing.assert_array_equal(J, np.broadcast_to(W.T.astype(dtype), (50, 4, 6)))
    J[0, 0, 0] = 7.0  # a result of its own, not a view of W
    assert W[0, 0] != 7.0
    Jm = dj.batch_jacobian(lambda x: x @ W, x)  # a float64 W promotes the result
    np.testing.assert_array_equal(Jm, np.broadcast_to(W.T, (50, 4, 6)))
    J1 = dj.jacfwd(lambda v: np.sin(v @ W))(x[0].astype(np.float64))
    np.testing.assert_allclose(J1, np.cos(x[0] @ W)[:, None] * W.T, rtol=1e-6 if dtype == np.float32 else 1e-14)


def test_matmul_on_scaled_lanes_and_nested(rng):
    W = rng.standard_normal((5, 3))
    x = rng.standard_normal((20, 5))
    J = dj.batch_jacobian(lambda x: np.sin(x) @ W, x)  # values cos(x), not 1: the product
    np.testing.assert_allclose(J, W.T[None] * np.cos(x)[:, None, :], rtol=1e-14)
    H = dj.hessian(lambda v: np.tanh(v @ W).sum())(x[0])  # the seed under an outer transform
    t = np.tanh(x[0] @ W)
    np.testing.assert_allclose(H, (W * (-2 * t * (1 - t**2))) @ W.T, rtol=1e-12, atol=1e-14)
