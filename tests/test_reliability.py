"""Adversarial use: every reachable wrong answer is right or a named error (issue: never silently wrong).

References are NumPy's own semantics, float64 central differences and torch.func, never dualjac itself.
"""

from __future__ import annotations

import threading
import tracemalloc
from collections import OrderedDict, defaultdict

import numpy as np
import pytest
import torch

import dualjac as dj


def relu(x):
    return dj.rules.apply("relu", x)


def fd_jacobian(f, x, h=1e-6):
    """Central differences in float64: J of shape f(x).shape + x.shape."""
    x = np.asarray(x, dtype=np.float64)
    cols = []
    for i in range(x.size):
        e = np.zeros(x.size)
        e[i] = h
        e = e.reshape(x.shape)
        cols.append((np.asarray(f(x + e)) - np.asarray(f(x - e))) / (2 * h))
    out = np.stack(cols, axis=-1)
    return out.reshape(np.shape(f(x)) + x.shape)


# --- 1. returned arrays are the caller's: editing one never changes another call ------------------
@pytest.mark.parametrize(
    "f",
    [
        lambda x, y: (x + 0.0, y),
        lambda x, y: (x[::-1], y.T),
        lambda x, y: (x.reshape(3, 1), y),
        lambda x, y: {"a": x, "b": (y, x)},
    ],
    ids=["identity-factor", "index-transpose", "reshape", "pytree-passthrough"],
)
def test_edited_jacobian_does_not_poison_later_calls(f):
    x, y = np.arange(3.0), np.ones((2, 2))
    jac = dj.jacfwd(f, argnums=(0, 1))
    want = [np.array(b, copy=True) for b in _leaves(jac(x, y))]
    for block in _leaves(jac(x, y)):
        assert block.flags.writeable
        block -= 1.0  # the user's edit
    got = _leaves(jac(x, y))
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def _leaves(t):
    if isinstance(t, dict):
        return [v for k in t for v in _leaves(t[k])]
    if isinstance(t, (tuple, list)):
        return [v for e in t for v in _leaves(e)]
    return [t]


def test_broadcast_jacobian_is_an_ordinary_array():
    J = dj.jacfwd(lambda x: np.broadcast_to(x, (2, 3)))(np.ones(3))
    assert J.flags.writeable and 0 not in J.strides
    J[0, 0, 0] = 5.0
    assert J[1, 0, 0] == 1.0  # no aliasing between entries


def test_jvp_tangent_does_not_alias_the_callers_tangent():
    v = np.ones(3)
    _, t = dj.jvp(lambda x: x, (np.zeros(3),), (v,))
    t *= 2
    np.testing.assert_array_equal(v, np.ones(3))


# --- 2. writes through views behave as in NumPy ------------------------------------------------------
def _write_cases():
    def rows(x):
        Y = np.outer(x, x)
        Y[0][1] = 0
        for row in Y:
            row *= 2
        return Y

    def slice_view(x):
        y = x * 1.0
        v = y[:2]
        v *= 10
        return y

    def transposed(x):
        Y = np.outer(x, x)
        Y.T[0] = 0
        return Y

    def reshaped(x):
        y = x * 1.0
        y.reshape(3)[0] = 7
        return y

    def stale_view(x):  # a view sees a later write to its base
        y = x * 1.0
        v = y[:2]
        y[0] = x[2] ** 2
        return v * 3

    def view_of_view(x):
        Y = np.outer(x, x)
        r = Y[1:][0]
        r[:] = x * 5
        return Y + Y[1][0]

    def returned_stale_views(x):  # views written through each other, returned after the writes
        y = x * 1.0
        a, b = y[::2], y[1::2]
        a += b
        return np.concatenate([y, b * 1.0, a])

    def returned_view(x):  # a view returned as it is, after a write to its base
        y = x * 1.0
        b = y[1:]
        y[1] = 7 * x[0]
        return b

    def input_view(x):  # a view of the input itself: the input changes, as in NumPy
        Y = x.reshape(3, 1)
        Y[0, 0] = 5 * x[2]
        return x * 1.0

    def idiom(x):  # y[idx] op= v: getitem, in-place on the view, setitem back
        y = np.outer(x, x)
        y[:, 0] *= 2
        y[1] += x
        return y

    return [
        rows, slice_view, transposed, reshaped, stale_view, view_of_view, returned_stale_views, returned_view,
        input_view, idiom,
    ]  # fmt: skip


@pytest.mark.parametrize("f", _write_cases(), ids=lambda f: f.__name__)
def test_writes_through_views_match_numpy(f):
    x = np.array([0.3, -1.2, 2.0])
    J = dj.jacfwd(f)(x)
    out, _ = dj.jvp(f, (x,), (np.ones(3),))
    np.testing.assert_allclose(out, f(x.copy()), rtol=1e-15)  # the value NumPy computes
    np.testing.assert_allclose(J, fd_jacobian(f, x), rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("mode", ["forward", "auto"])
def test_writes_through_views_under_nested_transforms(mode):
    """Hessians (forward-over-forward, forward-over-reverse) see the writes too: views are tracked
    at every level."""

    def f(x):
        Y = np.outer(x, x)
        for row in Y:
            row *= 2
        Y.T[0] = x**3
        v = Y[1:]
        Y[1, 1] = np.sin(x[0])
        return (v**2).sum() + Y.sum()

    def tf(x):
        Y = torch.outer(x, x) * 2
        Y[:, 0] = x**3
        Y[1, 1] = torch.sin(x[0])
        return (Y[1:] ** 2).sum() + Y.sum()

    x = np.array([0.3, -1.2, 2.0])
    want = torch.autograd.functional.hessian(tf, torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(dj.hessian(f, mode=mode)(x), want, rtol=1e-12, atol=1e-12)


def test_read_only_views_refuse_writes_as_numpy_does():
    def f(x):
        d = np.broadcast_to(x, (2, 3))
        d[0, 0] = 1.0
        return d

    with pytest.raises(ValueError, match="read-only"):
        f(np.ones(3))
    with pytest.raises(ValueError, match="read-only"):
        dj.jacfwd(f)(np.ones(3))


# --- 3. results do not depend on array size or the buffer pool -----------------------------------------
@pytest.mark.parametrize(
    "f, tf",
    [
        (lambda h: np.where(h > 0, np.sqrt(h), 0.0), lambda h: torch.where(h > 0, torch.sqrt(h.clamp(min=0)), 0.0)),
        (
            lambda h: np.clip(np.sqrt(np.abs(h)), 0.5, 1.0) + np.maximum(np.log(np.abs(h)), -1.0),
            lambda h: torch.clamp(torch.sqrt(torch.abs(h)), 0.5, 1.0) + torch.clamp(torch.log(torch.abs(h)), min=-1.0),
        ),
        (lambda h: relu(np.sqrt(np.abs(h)) - 1.0), lambda h: torch.relu(torch.sqrt(torch.abs(h)) - 1.0)),
    ],
    ids=["where-sqrt", "clip-max-log", "relu-sqrt"],
)
@pytest.mark.parametrize("rows", [2, 512])  # 512 rows: tangents of 4 MiB take the pooled path
def test_safe_function_patterns_are_size_independent(f, tf, rows):
    rng = np.random.default_rng(0)
    W = rng.standard_normal((16, 64))
    x = rng.standard_normal((rows, 16))
    x[0] = 0.0  # h = 0 exactly: sqrt's derivative is inf in the untaken branch
    J = dj.batch_jacobian(lambda x: f(x @ W), x)
    assert np.isfinite(J).all()
    # forward mode in torch too: its reverse mode gives NaN here (0 * inf in the untaken branch)
    ref = torch.func.vmap(torch.func.jacfwd(lambda t: tf(t @ torch.from_numpy(W))))(torch.from_numpy(x))
    np.testing.assert_allclose(J, ref.numpy(), rtol=1e-12, atol=1e-12)


# --- 4. array-likes wherever NumPy takes them -----------------------------------------------------------
@pytest.mark.parametrize(
    "f",
    [
        lambda x: np.dot(x.reshape(1, 3), [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]),
        lambda x: np.inner([[1.0, 2.0, 3.0], [0.0, 1.0, 0.0]], x),
        lambda x: x + [1.0, 2.0, 3.0],
        lambda x: np.maximum(x, [0.0, 2.0, -3.0]),
        lambda x: np.concatenate([x, [1.0]]),
        lambda x: np.stack([x, [1.0, 2.0, 3.0]]),
        lambda x: np.linalg.solve(np.outer(x, x) + np.eye(3), [1.0, 2.0, 3.0]),
        lambda x: np.take_along_axis(np.outer(x, x), np.array([[0], [2], [1]]), 1),
        lambda x: np.tensordot([[1.0, 2.0, 3.0]], np.outer(x, x), 1),
        lambda x: np.hstack([x, (4.0, 5.0)]),
        lambda x: np.vstack([x, [1.0, 1.0, 1.0]]),
        lambda x: np.add.outer([1.0, 2.0], x),
        lambda x: np.stack([x[0], 2.0 * x[1]]) * [[1.0], [2.0]][0],
    ],
)
def test_array_likes_are_accepted_like_numpy(f):
    x = np.array([0.5, -1.0, 2.0])
    out, _ = dj.jvp(f, (x,), (np.ones(3),))
    np.testing.assert_allclose(out, f(x), rtol=1e-15)
    np.testing.assert_allclose(dj.jacfwd(f)(x), fd_jacobian(f, x), rtol=1e-7, atol=1e-8)


def test_lists_holding_duals_keep_their_tangents():
    x = np.array([0.5, -1.0])
    J = dj.jacfwd(lambda x: np.append(x, [x[0] * 3]))(x)  # NumPy's append takes a list of values
    np.testing.assert_array_equal(J, [[1, 0], [0, 1], [3, 0]])
    J = dj.jacfwd(lambda x: dj.nn.relu([x[0], 2 * x[1]]))(np.array([0.5, 1.0]))
    np.testing.assert_array_equal(J, [[1, 0], [0, 2]])


def test_list_indices_are_accepted_where_numpy_needs_an_array():
    x = np.array([0.5, -1.0, 2.0])
    J = dj.jacfwd(lambda x: np.take_along_axis(np.outer(x, x), [[0], [2], [1]], 1))(x)
    f = lambda x: np.take_along_axis(np.outer(x, x), np.array([[0], [2], [1]]), 1)
    np.testing.assert_allclose(J, fd_jacobian(f, x), rtol=1e-7, atol=1e-8)


# --- 5. dtype= is honoured ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "f",
    [
        lambda x: np.cumsum(x, dtype=np.int64),
        lambda x: np.cumsum(x, dtype=np.float32),
        lambda x: np.cumprod(x, dtype=np.float32),
        lambda x: np.concatenate([x, x], dtype=np.float32),
        lambda x: np.stack([x, x], dtype=np.float32),
        lambda x: np.hstack([x, x], dtype=np.float32),
        lambda x: np.vstack([x, x], dtype=np.float32),
        lambda x: np.sum(x, dtype=np.float32),
        lambda x: np.add.reduce(x, dtype=np.float32),
    ],
)
def test_dtype_argument_gives_numpys_dtype(f):
    x = np.array([0.5, 1.5, 2.0])
    out, t = dj.jvp(f, (x,), (np.ones(3),))
    assert out.dtype == f(x).dtype
    np.testing.assert_allclose(out, f(x), rtol=1e-6)
    if out.dtype.kind == "i":
        assert not np.any(t)  # integer results have no derivative


# --- 6. complex intermediates are never dropped -----------------------------------------------------------
def test_complex_intermediate_raises_a_named_error():
    with pytest.raises(dj.ComplexValueError, match="complex"):
        dj.jacfwd(lambda x: np.abs(np.exp(1j * x) + x))(np.ones(3))


def test_real_parts_of_real_duals():
    f = lambda x: x.real * 2 + np.conj(x) + x.conj() + np.conjugate(x) + 0 * x.imag
    np.testing.assert_allclose(dj.jacfwd(f)(np.arange(3.0)), 5 * np.eye(3))


# --- 7. randomness inside f across passes -------------------------------------------------------------------
def test_random_numbers_drawn_inside_f_with_several_passes_raise():
    rng = np.random.default_rng(0)
    with pytest.raises(dj.NondeterministicFunctionError, match="random"):
        dj.jacfwd(lambda x: x * rng.standard_normal(x.shape), chunk_size=4)(np.ones(10))


def test_randomness_with_a_fixed_seed_inside_is_fine():
    f = lambda x: x * np.random.default_rng(1).standard_normal(x.shape)
    J = dj.jacfwd(f, chunk_size=3)(np.ones(10))
    np.testing.assert_allclose(J, np.diag(np.random.default_rng(1).standard_normal(10)))


# --- 8. batch_jacobian of a function that mixes rows ----------------------------------------------------------
@pytest.mark.parametrize(
    "f",
    [
        lambda X: X - X.mean(0),
        lambda X: (X - X.mean(0)) / X.std(0),  # batch norm in NumPy
        lambda X: np.tanh(X) * np.tanh(X).sum(),
        lambda X: np.roll(X, 1, axis=0),
    ],
)
def test_batch_jacobian_of_a_row_mixing_function_raises(f):
    X = np.random.default_rng(0).standard_normal((8, 3))
    with pytest.raises(dj.RowMixingError, match="mixes rows"):
        dj.batch_jacobian(f, X)
    dj.batch_jacobian(f, X, check_rows=False)  # the opt-out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row_check_passes_row_independent_functions(dtype):
    rng = np.random.default_rng(1)
    W = rng.standard_normal((5, 7)).astype(dtype)
    X = rng.standard_normal((64, 5)).astype(dtype)
    f = lambda X: np.tanh(X @ W) ** 2 / (1 + X.sum(axis=1, keepdims=True) ** 2)
    J = dj.batch_jacobian(f, X)
    ref = torch.func.vmap(torch.func.jacrev(lambda x: torch.tanh(x @ torch.from_numpy(W)) ** 2 / (1 + x.sum() ** 2)))(
        torch.from_numpy(X)
    )
    np.testing.assert_allclose(J, ref.numpy(), rtol=1e-4 if dtype == np.float32 else 1e-12, atol=1e-5)


# --- 9. a Dual that escaped its transform ------------------------------------------------------------------------
def test_escaped_dual_raises():
    kept = []
    dj.jacfwd(lambda x: kept.append(x * 2) or x)(np.ones(2))
    with pytest.raises(dj.EscapedDualError, match="escaped"):
        dj.jacfwd(lambda y: kept[0] + y)(np.ones(2))
    with pytest.raises(dj.EscapedDualError):
        dj.jacfwd(lambda y: kept[0])(np.ones(2))
    with pytest.raises(dj.EscapedDualError):
        np.sin(kept[0])


def test_concurrent_transforms_in_threads_do_not_see_each_other_as_escaped():
    W = np.random.default_rng(0).standard_normal((4, 4))
    want = dj.jacfwd(lambda x: np.tanh(x @ W))(np.ones(4))
    errors = []

    def work():
        try:
            for _ in range(50):
                np.testing.assert_allclose(dj.jacfwd(lambda x: np.tanh(x @ W))(np.ones(4)), want)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


# --- 10, 11. memory budgets ------------------------------------------------------------------------------------------
def _peak_mib(fn):
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def test_budget_covers_wide_intermediates():
    rng = np.random.default_rng(0)
    W1, W2 = rng.standard_normal((16, 1024)) / 4, rng.standard_normal((1024, 4)) / 32
    x = rng.standard_normal((256, 16))
    f = lambda x: np.tanh(x @ W1) @ W2
    want = dj.batch_jacobian(f, x, check_rows=False)
    old = dj.config.tangent_bytes
    try:
        dj.config.tangent_bytes = 4 << 20  # a (16, 256, 1024) tangent is 32 MiB; one lane is 2 MiB
        peak = _peak_mib(lambda: np.testing.assert_allclose(dj.batch_jacobian(f, x, check_rows=False), want))
    finally:
        dj.config.tangent_bytes = old
    assert peak < 30, peak  # a few budget-sized arrays, not the 32 MiB tangents of one 16-lane pass


def test_nested_levels_budget_their_own_passes():
    f = lambda x: np.cumprod(x).sum()
    x = np.linspace(0.5, 1.5, 60)
    H = dj.hessian(f)(x)
    Hr = torch.autograd.functional.hessian(lambda t: torch.cumprod(t, 0).sum(), torch.from_numpy(x))
    np.testing.assert_allclose(H, Hr.numpy(), rtol=1e-10, atol=1e-12)
    old = dj.config.tangent_bytes
    try:
        dj.config.tangent_bytes = 4 << 20  # both levels: 107 MiB when they shared one estimate
        peak = _peak_mib(lambda: dj.hessian(f)(x))
    finally:
        dj.config.tangent_bytes = old
    assert peak < 24, peak


# --- 12, 13. named errors and array-like behaviour -------------------------------------------------------------------
def test_assigning_a_dual_into_a_plain_array_names_the_assignment():
    def f(x):
        y = np.zeros(3)
        y[0] = x[1]
        return y

    with pytest.raises(dj.TangentLossError, match=r"y\[i\] = x.*test_reliability"):
        dj.jacfwd(f)(np.ones(3))


def test_tangent_loss_names_the_converting_function():
    def convert(x):
        return np.asarray(x) * 2

    with pytest.raises(dj.TangentLossError, match="convert"):
        dj.jacfwd(convert)(np.ones(2))


def test_tangent_loss_inside_a_library_names_the_library_function():
    sl = pytest.importorskip("scipy.linalg")
    with pytest.raises(dj.TangentLossError, match=r"in scipy\.linalg\.expm "):
        dj.jacfwd(lambda x: sl.expm(x))(np.eye(2))


def test_torch_module_in_jacfwd_points_to_the_adapter():
    m = torch.nn.Linear(2, 2).double()
    with pytest.raises(TypeError, match="dualjac.torch.from_torch"):
        dj.jacfwd(m)(np.ones(2))


def test_numpy_scalars_are_inputs_of_their_own_dtype():
    out, t = dj.jvp(np.sin, (np.float32(0.5),), (np.float32(1.0),))
    assert out.dtype == np.float32 and np.isclose(t, np.cos(0.5))


def test_transform_conveniences():
    f = lambda x, scale=1.0: x * scale
    np.testing.assert_allclose(dj.jacfwd(f)(np.ones(2), scale=3.0), 3 * np.eye(2))
    np.testing.assert_allclose(dj.jacfwd(f, argnums=np.int64(0))(np.ones(2)), np.eye(2))
    np.testing.assert_allclose(dj.jacrev(f, argnums=np.int64(0))(np.ones(2)), np.eye(2))  # reverse mode too
    np.testing.assert_allclose(dj.grad(lambda x: (x * x).sum(), argnums=np.int64(0))(np.ones(2)), [2.0, 2.0])
    d = defaultdict(float, a=np.ones(2))
    J = dj.jacfwd(lambda d: d["a"] * 2)(d)
    assert isinstance(J, defaultdict) and J.default_factory is float
    np.testing.assert_allclose(J["a"], 2 * np.eye(2))
    J = dj.jacfwd(lambda d: d["b"] - d["a"])(OrderedDict(a=np.ones(2), b=np.ones(2)))
    assert isinstance(J, OrderedDict) and list(J) == ["a", "b"]


def test_array_attributes_and_rounding_behave_as_on_arrays():
    seen = {}

    def f(x):
        seen.update(nbytes=x.nbytes, itemsize=x.itemsize)
        return np.round(x, 1) + round(x[0]) + np.around(x) + x

    x = np.array([0.26, 1.74])
    np.testing.assert_allclose(dj.jacfwd(f)(x), np.eye(2))  # rounding is piecewise constant
    out, _ = dj.jvp(f, (x,), (np.ones(2),))
    np.testing.assert_allclose(out, f(x))
    assert seen == {"nbytes": 16, "itemsize": 8}


# --- 14. conventions (docs/concepts/conventions.md): closed forms, and torch where it agrees ---
nan = np.nan


@pytest.mark.parametrize(
    "f, x, want",
    [
        (lambda x: np.maximum(x, 1.0), [nan, 1.0, 2.0, 0.0], [nan, 0.5, 1.0, 0.0]),
        (lambda x: np.minimum(x, 1.0), [nan, 1.0, 2.0, 0.0], [nan, 0.5, 0.0, 1.0]),
        (lambda x: np.fmax(x, 1.0), [nan, 1.0, 2.0, 0.0], [0.0, 0.5, 1.0, 0.0]),
        (lambda x: np.fmin(x, 1.0), [nan, 1.0, 2.0, 0.0], [0.0, 0.5, 0.0, 1.0]),
        (lambda x: np.clip(x, 0.0, 1.0), [nan, 0.0, 1.0, 0.5, 2.0], [nan, 1.0, 1.0, 1.0, 0.0]),
        (lambda x: np.abs(x), [0.0, -2.0, nan], [0.0, -1.0, nan]),
        (lambda x: relu(x), [nan, 0.0, 1.0, -1.0], [nan, 0.0, 1.0, 0.0]),
        (lambda x: np.where(x > 0, np.sqrt(x), 0.0), [-1.0, 0.0, 4.0], [0.0, 0.0, 0.25]),
        (lambda x: relu(np.sqrt(x) - 1), [0.0, 4.0], [0.0, 0.25]),
    ],
    ids=["maximum", "minimum", "fmax", "fmin", "clip", "abs", "relu", "where", "relu-of-inf-tangent"],
)
def test_kink_tie_and_nan_conventions(f, x, want):
    x = np.array(x)
    np.testing.assert_array_equal(np.diagonal(dj.jacfwd(f)(x)), want)


def test_conventions_agree_with_torch_away_from_nan():
    """Where torch's conventions match dualjac's on every torch version (ties of maximum/minimum, relu
    at 0), compare. fmax/fmin ties, clamp at a bound (torch 2.14 changed it) and NaN are dualjac's own
    and are checked by closed forms above and by torch.where references in tests/specs/shape.py."""
    x = torch.tensor([1.0, 2.0, 0.0, -1.0], dtype=torch.float64)
    cases = [
        (lambda t: torch.maximum(t, torch.ones_like(t)), lambda a: np.maximum(a, 1.0)),
        (lambda t: torch.minimum(t, torch.ones_like(t)), lambda a: np.minimum(a, 1.0)),
        (torch.relu, relu),
    ]
    for tf, nf in cases:
        ref = torch.func.jacfwd(tf)(x).numpy()
        np.testing.assert_array_equal(dj.jacfwd(nf)(x.numpy()), ref)


# --- 7. found by a hostile pass over the small-call paths (2026-12-08) -----------------------------
@pytest.mark.parametrize("swallow", ["except Exception", "bare except"])
@pytest.mark.parametrize("transform", ["jacobian", "jacfwd", "batch_jacobian"])
def test_a_function_that_catches_the_budget_stop_still_gets_its_jacobian(swallow, transform, monkeypatch):
    """The pass's over-budget stop is dualjac's, not the function's: an ``except`` in f must not turn
    it into a silent wrong answer (here the fallback branch would give zeros)."""
    W = np.ones((8, 512)) / 512  # (x[:, None] * W).sum(1) == x; one lane of it fits the budget, 8 do not
    monkeypatch.setattr(dj.config, "tangent_bytes", 512 * 8 * 2)

    caught = Exception if swallow == "except Exception" else BaseException

    def f(x):
        try:
            return (x[..., :, None] * W).sum(axis=-1) * np.arange(1.0, 9.0)
        except caught:
            return x * 0.0

    x = np.linspace(0.1, 0.8, 8)
    if transform == "batch_jacobian":
        J = dj.batch_jacobian(f, np.stack([x, 2 * x]), check_rows=False)
        for row in J:
            np.testing.assert_allclose(row, np.diag(np.arange(1.0, 9.0)), rtol=1e-12, atol=1e-15)
        return
    J = dj.jacobian(f, x) if transform == "jacobian" else dj.jacfwd(f)(x)
    np.testing.assert_allclose(J, np.diag(np.arange(1.0, 9.0)), rtol=1e-12, atol=1e-15)


def test_in_place_operators_on_scalar_intermediates_rebind_as_in_numpy():
    """``s += v`` on a NumPy scalar rebinds s (scalars are immutable); on a Dual standing for one it must too."""

    def f(x):
        s = 0.0
        for v in x:  # each v a 0-d value, s a NumPy float after the first step
            s += v * v
        s *= 3.0
        return s

    x = np.array([1.0, -2.0, 0.5])
    np.testing.assert_allclose(dj.jacobian(f, x), 6 * x, rtol=1e-15)
    np.testing.assert_allclose(dj.jacfwd(f)(x), 6 * x, rtol=1e-15)
    a, b = np.array(2.0), np.array(3.0)

    def g(x, y):
        z = x * y  # a NumPy float64 in NumPy
        z += x
        return z

    assert g(a, b) == 8.0
    J = dj.jacobian(g, (a, b))
    assert (float(J[0]), float(J[1])) == (4.0, 2.0)


class _Box:
    def __init__(self, v):
        self.v = v


def _object_array(*items):
    out = np.empty(len(items), dtype=object)  # NumPy stores the Duals themselves, no conversion
    for i, v in enumerate(items):
        out[i] = v
    return out


@pytest.mark.parametrize(
    "out",
    [
        lambda x: _object_array(x * 2.0, x**2),
        lambda x: _Box(x * 2.0),
        lambda x: (x * 2.0, "label"),
        lambda x: (v for v in (x,)),
        lambda x: torch.tensor(1.0),
    ],
    ids=["object array", "object", "string", "generator", "torch tensor"],
)
@pytest.mark.parametrize("mode", ["forward", "reverse"])
def test_outputs_that_cannot_carry_derivatives_raise(out, mode):
    """Such an output used to give a zero Jacobian: nothing said its derivatives were lost."""
    with pytest.raises(TypeError, match="cannot carry derivatives"):
        dj.jacobian(out, np.array(1.5), mode=mode)


@pytest.mark.parametrize("mode", ["forward", "reverse", "auto"])
def test_number_outputs_are_constants_in_every_mode(mode):
    """A Python number among the outputs has zero blocks (reverse mode used to fail on its dtype)."""
    x = np.linspace(0.0, 1.0, 100)  # auto: reverse mode (100 inputs, 2 outputs)
    J = dj.jacobian(lambda x: {"loss": (x**2).sum(), "weight": 1.0, "flag": True}, x, mode=mode)
    np.testing.assert_allclose(J["loss"], 2 * x, rtol=1e-15)
    for k in ("weight", "flag"):
        assert J[k].shape == (100,) and not J[k].any()


@pytest.mark.parametrize("base", [np.uint8(3), np.int8(3), np.float16(1.5), np.int16(3)])
def test_power_of_a_low_precision_constant_is_differentiated_in_the_results_precision(base):
    """d(c**x)/dx = c**x log c: NumPy takes log of a uint8 or float16 constant in float16."""
    x = torch.tensor(1.25, dtype=torch.float64, requires_grad=True)
    (want,) = torch.autograd.grad(torch.tensor(float(base), dtype=torch.float64) ** x, x)
    got = dj.jacobian(lambda x: base**x, np.array(1.25))
    np.testing.assert_allclose(got, want.item(), rtol=1e-15)


@pytest.mark.parametrize("x", [np.inf, -np.inf, np.nan, 0.0])
@pytest.mark.parametrize("power", [lambda x: x**0, lambda x: x**0.0, lambda x: np.power(x, np.array(0.0))])
def test_zeroth_power_has_zero_derivative_everywhere(x, power):
    """x**0 is constant 1: torch's derivative is 0 at inf and NaN as well (0 * x gave NaN there)."""
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    (want,) = torch.autograd.grad(xt**0, xt)
    assert want.item() == 0.0
    assert float(dj.jacobian(power, np.array(x))) == 0.0


def test_array_subclasses_with_other_semantics_are_refused_by_name():
    m = np.matrix([[0.5, 1.0]])
    with pytest.raises(TypeError, match="np.matrix.*np.asarray"):
        dj.jacobian(lambda x: x * 2.0, m)
    with pytest.raises(TypeError, match="np.matrix"):
        dj.jvp(lambda x: x * 2.0, (m,), (m,))
    masked = np.ma.masked_array(np.ones((5, 4)), mask=np.eye(5, 4, dtype=bool))
    with pytest.raises(TypeError, match="masked array.*filled"):
        dj.batch_jacobian(lambda x: x @ np.ones((4, 3)), masked)
    with pytest.raises(TypeError, match="masked array"):
        dj.jacobian(lambda x: x * 2.0, masked)


@pytest.mark.parametrize("argnums", ["01", 1.0, None, True, (0, 1.0)])
def test_argnums_must_be_integers(argnums):
    with pytest.raises(TypeError, match="argnums must be an integer or a tuple of integers"):
        dj.jacfwd(lambda x, y: x * y, argnums=argnums)(np.array(1.0), np.array(2.0))
