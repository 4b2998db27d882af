"""The workloads W1–W7.

A workload is a function ``(quick, ...) -> Workload``. It makes the weights and inputs once (NumPy,
seeded), converts them once for torch and JAX, and returns one ``Tool`` per way of computing the same
Jacobian. ``Tool.call()`` is what gets timed; ``Tool.jac(result)`` turns its result into a NumPy
array in dualjac's layout for the agreement check, done outside the timing.

A tool is one of three kinds: ``dualjac`` (its rows), ``anchor`` (another tool computing the same
Jacobian: torch.func, torch's sum trick, JAX; the goals compare dualjac with the best of them) and
``reference`` (no Jacobian, a yardstick):

* *limit* (W1–W3): one plain NumPy forward pass on the stacked batch of (1+K)·B rows, what
  carrying K tangent lanes densely costs with zero AD overhead;
* *GEMM floor* (W1): the matrix products of one dualjac call alone, as plain ``np.matmul`` of the
  same shapes into preallocated outputs: the arithmetic no forward-mode tool can skip;
* *forward pass* (W7): the loss alone.

The *sum trick* (torch, per-sample workloads): rows are independent, so the Jacobian of
``f(x).sum(0)`` (shape ``out_item + (B,) + in_item``) holds every per-sample Jacobian, and
``torch.autograd.functional.jacobian`` gets it with m backward passes instead of B·m (the full
``(B, m, B, n)`` Jacobian does not fit in memory for W3). W3's ``f`` is elementwise, so one backward
pass of ``f(x).sum()`` even gives every Jacobian's diagonal (the *diagonal trick*).
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

import dualjac as dj


@dataclass
class Tool:
    name: str
    call: Callable[[], Any] | None  # None: not available, ``note`` says why
    jac: Callable[[Any], np.ndarray] | None = np.asarray  # None: not a Jacobian (a reference)
    note: str = ""
    kind: str = "anchor"  # "dualjac", "anchor" (the goals' competition) or "reference" (no Jacobian)

    def __post_init__(self) -> None:
        if self.name.startswith("dualjac"):
            self.kind = "dualjac"
        elif self.jac is None:
            self.kind = "reference"


@dataclass
class Workload:
    key: str
    title: str
    tools: list[Tool]  # tools[0] is dualjac, the reference of the agreement check
    dtype: str = "float64"
    extra: Callable[[], dict] | None = None  # a measurement besides the timing table (W4: memory)


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def _jax():
    try:
        import jax
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)  # float64 like the others; float32 inputs stay float32
    return jax


def _tensor_np(t: Any) -> np.ndarray:
    return t.detach().numpy()


# --- the anchors, built the same way for every workload ----------------------------------
def torch_tools(x: np.ndarray, f: Callable | None, batched: bool) -> list[Tool]:
    """torch.func jacfwd/jacrev (under vmap when ``batched``) and autograd.functional.jacobian;
    ``f`` is None when torch is not installed."""
    if f is None:
        return [Tool("torch", None, note="torch not installed")]
    torch = _torch()
    tf, af = torch.func, torch.autograd.functional
    xt = torch.from_numpy(x)
    item = (lambda s: f(s[None])[0]) if batched else f
    tools = []
    for mode in ("jacfwd", "jacrev"):
        g = getattr(tf, mode)(item)
        g = tf.vmap(g) if batched else g
        name = f"torch.func vmap({mode})" if batched else f"torch.func {mode}"
        tools.append(Tool(name, lambda g=g: g(xt), _tensor_np))
    # batched: the sum trick, AF.jacobian of x -> f(x).sum(0), (out, B, in) moved to (B, out, in)
    h = (lambda x: f(x).sum(0)) if batched else f
    per_sample = lambda J: np.moveaxis(_tensor_np(J), J.ndim - x.ndim, 0) if batched else _tensor_np(J)
    for vec in (False, True):
        if batched:
            name = "torch sum trick AF.jacobian(f(x).sum(0)" + (", vectorize)" if vec else ")")
        else:
            name = "torch AF.jacobian" + (" vectorize" if vec else "")
        tools.append(Tool(name, lambda vec=vec: af.jacobian(h, xt, vectorize=vec), per_sample))
    return tools


def jax_tools(x: np.ndarray, f: Callable | None, batched: bool) -> list[Tool]:
    """``jax.jit(jax.vmap(jax.jacfwd(f)))`` and the same with jacrev (no vmap when not ``batched``);
    ``f`` is None when jax is not installed."""
    if f is None:
        return [Tool("jax", None, note="jax not installed")]
    jax = _jax()
    xj = jax.device_put(x)
    item = (lambda s: f(s[None])[0]) if batched else f
    tools = []
    for mode in ("jacfwd", "jacrev"):
        d = getattr(jax, mode)(item)
        g = jax.jit(jax.vmap(d) if batched else d)
        name = f"jax jit vmap({mode})" if batched else f"jax jit {mode}"
        tools.append(Tool(name, lambda g=g: g(xj).block_until_ready()))
    return tools


# --- W1, W2: MLPs ------------------------------------------------------------------------
def mlp_params(sizes: list[int], dtype: Any) -> list[tuple[np.ndarray, np.ndarray]]:
    """Seeded weights and biases of an MLP with layer widths ``sizes`` (also ``docs/make_figures.py``'s)."""
    rng = np.random.default_rng(0)
    return [
        ((rng.standard_normal((n, m)) / np.sqrt(n)).astype(dtype), (0.1 * rng.standard_normal(m)).astype(dtype))
        for n, m in zip(sizes[:-1], sizes[1:])
    ]


def _mlp(params: list, x: Any, tanh: Callable) -> Any:
    for i, (W, b) in enumerate(params):
        x = x @ W + b
        if i < len(params) - 1:
            x = tanh(x)
    return x


def mlp_fns(params: list) -> tuple[Callable, Callable | None, Callable | None]:
    """The same MLP for NumPy, torch and JAX (weights converted once)."""
    f_np = lambda x: _mlp(params, x, np.tanh)
    torch, jax = _torch(), _jax()
    f_t = f_j = None
    if torch is not None:
        pt = [(torch.from_numpy(W), torch.from_numpy(b)) for W, b in params]
        f_t = lambda x: _mlp(pt, x, torch.tanh)
    if jax is not None:
        pj = [(jax.device_put(W), jax.device_put(b)) for W, b in params]
        f_j = lambda x: _mlp(pj, x, jax.numpy.tanh)
    return f_np, f_t, f_j


def in_workspace(call: Callable[[], Any]) -> Tool:
    """The same dualjac call inside a held ``dj.Workspace``: what a loop that calls it repeatedly
    can opt in to (big lane products reuse the workspace's memory instead of fresh pages)."""
    ws = dj.Workspace()

    def run() -> Any:
        with ws:
            return call()

    return Tool("dualjac in a Workspace", run, note="with dj.Workspace() held across calls")


UNCHECKED = "no row check, like every anchor (the sum trick's answer is wrong for f that mixes rows)"
LIMIT_NOTE = "not a Jacobian: NumPy f on the stacked (1+K)·B rows (dense lanes, no AD)"


def _anchors(x: np.ndarray, f_t: Callable | None, f_j: Callable | None, batched: bool) -> list[Tool]:
    return torch_tools(x, f_t, batched) + jax_tools(x, f_j, batched)


def w1(quick: bool, dtype: Any = np.float64) -> Workload:
    """Per-sample Jacobian of an MLP 16→256→256→16 (tanh) on a batch of 1024: K = 16 lanes."""
    B, K = (32 if quick else 1024), 16
    sizes = [K, 256, 256, 16]
    f, f_t, f_j = mlp_fns(mlp_params(sizes, dtype))
    rng = np.random.default_rng(1)
    x = rng.standard_normal((B, K)).astype(dtype)
    stacked = rng.standard_normal(((1 + K) * B, K)).astype(dtype)
    tools = [
        Tool("dualjac", lambda: dj.batch_jacobian(f, x)),
        in_workspace(lambda: dj.batch_jacobian(f, x)),
        Tool("dualjac check_rows=False", lambda: dj.batch_jacobian(f, x, check_rows=False), note=UNCHECKED),
        Tool("GEMM floor", *gemm_floor(B, K, sizes, dtype)),
        Tool("limit", lambda: f(stacked), None, LIMIT_NOTE),
    ]
    dt = np.dtype(dtype)
    title = f"per-sample Jacobian, MLP 16→256→256→16 tanh, B={B}, K={K} lanes, {dt.name}"
    return Workload(f"W1 f{dt.itemsize * 8}", title, tools + _anchors(x, f_t, f_j, True), dt.name)


def gemm_floor(B: int, K: int, sizes: list[int], dtype: Any) -> tuple[Callable[[], None], None, str]:
    """The matrix products of one forward-mode call on the MLP ``sizes``, B rows, K lanes, as plain
    ``np.matmul`` into preallocated outputs: the primal's (B rows per layer) and the lanes' (K·B
    rows per layer after the first, whose lanes are rows of W: no product). (call, jac, note)."""
    rng = np.random.default_rng(5)
    layers = list(zip(sizes[:-1], sizes[1:]))
    shapes = [(B, n, m) for n, m in layers] + [(K * B, n, m) for n, m in layers[1:]]
    ops = [
        (rng.standard_normal((r, n)).astype(dtype), rng.standard_normal((n, m)).astype(dtype), np.empty((r, m), dtype))
        for r, n, m in shapes
    ]

    def call() -> None:
        for a, w, out in ops:
            np.matmul(a, w, out=out)

    lanes = " + ".join(f"({r}, {n})@({n}, {m})" for r, n, m in shapes[len(layers) :])
    return call, None, f"np.matmul, out= preallocated: lanes {lanes}, primal {len(layers)} GEMMs of {B} rows"


def w2(quick: bool) -> Workload:
    """Jacobian of an MLP 64→512→512→64 (tanh) at one input: K = 64 lanes."""
    K = 64
    f, f_t, f_j = mlp_fns(mlp_params([K, 512, 512, 64], np.float64))
    rng = np.random.default_rng(2)
    x = rng.standard_normal(K)
    stacked = rng.standard_normal((1 + K, K))
    jac = dj.jacfwd(f)  # built once, outside the timing, like the torch and JAX transforms
    tools = [Tool("dualjac", lambda: jac(x)), Tool("limit", lambda: f(stacked), None, LIMIT_NOTE)]
    title = f"Jacobian at one input, MLP 64→512→512→64 tanh, K={K} lanes"
    return Workload("W2", title, tools + _anchors(x, f_t, f_j, False))


# --- W3: an elementwise chain ------------------------------------------------------------
def _expr(x: Any, lib: Any) -> Any:
    return x * lib.sin(x) + lib.exp(-(x**2)) * lib.cos(3 * x) + lib.log1p(x**2)


def w3(quick: bool) -> Workload:
    """Per-sample Jacobian of an elementwise expression on (4096, 32): K = 32 lanes."""
    B, n = (64 if quick else 4096), 32
    rng = np.random.default_rng(3)
    x = rng.standard_normal((B, n))
    stacked = rng.standard_normal((1 + n, B, n))
    f = lambda x: _expr(x, np)
    call = lambda: dj.batch_jacobian(f, x)  # noqa: E731
    tools = [
        Tool("dualjac", call),
        in_workspace(call),
        Tool("NumPy f alone", lambda: f(x), None, "not a Jacobian: the primal f(x) alone, no AD"),
        Tool("limit", lambda: f(stacked), None, LIMIT_NOTE),
    ]
    torch, jax = _torch(), _jax()
    f_t = (lambda x: _expr(x, torch)) if torch else None
    f_j = (lambda x: _expr(x, jax.numpy)) if jax else None
    title = f"per-sample Jacobian of x·sin x + exp(-x²)·cos 3x + log1p x², x ({B}, {n}), K={n} lanes"
    tools += _anchors(x, f_t, f_j, True)
    if torch is not None:
        xt = torch.from_numpy(x)

        def diagonal_trick():
            xr = xt.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(f_t(xr).sum(), xr)  # elementwise f: row i's Jacobian is diag(g[i])
            J = torch.zeros(x.shape + x.shape[-1:], dtype=xt.dtype)
            J.diagonal(dim1=-2, dim2=-1).copy_(g)
            return J

        tools.append(Tool("torch diagonal trick grad(f(x).sum()) → diag", diagonal_trick, _tensor_np,
                          "elementwise f only: one backward pass, then zeros with g on the diagonals"))  # fmt: skip
    return Workload("W3", title, tools, extra=lambda: output_memory(call))


def output_memory(call: Callable[[], Any]) -> dict:
    """The Jacobian's size, and the peak traced memory of one call (NumPy reports its buffers to
    tracemalloc; the output is part of the peak)."""
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    J = call()
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return {"output_memory": {"output_MiB": np.asarray(J).nbytes / 2**20, "peak_MiB": peak / 2**20}}


# --- W4: a small CNN through the torch adapter -------------------------------------------
def _cnn_jax(jax: Any, params: dict) -> Callable:
    lax, jnp = jax.lax, jax.numpy
    p = {k: jax.device_put(v) for k, v in params.items()}

    def conv(x, i):
        y = lax.conv_general_dilated(x, p[f"{i}.weight"], (1, 1), "VALID", dimension_numbers=("NCHW", "OIHW", "NCHW"))
        return y + p[f"{i}.bias"][None, :, None, None]

    def pool(x):
        return lax.reduce_window(x, -jnp.inf, lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")

    def f(x):
        h = pool(jax.nn.relu(conv(x, 0)))
        h = pool(jax.nn.relu(conv(h, 3)))
        return h.reshape(h.shape[0], -1) @ p["7.weight"].T + p["7.bias"]

    return f


CHUNKS = (None, 64, 16)  # the chunk sizes of W4's memory measurement


def w4(quick: bool) -> Workload:
    """Per-sample Jacobian of a small CNN (16, 1, 28, 28) → (16, 10), via ``dualjac.torch.from_torch``:
    K = 784 input lanes against 10 outputs."""
    B = 2 if quick else 16
    title = f"per-sample Jacobian, CNN conv-relu-pool ×2 → linear 10, x ({B}, 1, 28, 28), K=784 lanes"
    torch = _torch()
    if torch is None:
        return Workload("W4", title, [Tool("dualjac", None, note="torch not installed")])
    nn = torch.nn
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 16, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 5 * 5, 10),
    ).double().eval()  # fmt: skip
    x = np.random.default_rng(4).standard_normal((B, 1, 28, 28))
    g = None
    try:
        from dualjac.torch import from_torch

        g = from_torch(model, torch.from_numpy(x))  # lowering errors surface here, not in the timing loop
        dual = [
            Tool("dualjac", lambda: dj.batch_jacobian(g, x), note="mode='auto' (picks reverse)"),
            Tool("dualjac mode='forward'", lambda: dj.batch_jacobian(g, x, mode="forward")),
        ]
    except Exception as e:  # any failure of the adapter is reported, not raised
        dual = [Tool("dualjac", None, note=f"adapter not available: {type(e).__name__}: {e}"[:160])]
    tools = dual + torch_tools(x, model, True)
    jax = _jax()
    if jax is not None:
        params = {k: _tensor_np(v) for k, v in model.state_dict().items()}
        tools += jax_tools(x, _cnn_jax(jax, params), True)
    extra = None
    if g is not None:
        extra = lambda: chunk_memory(g, x, CHUNKS) | tape_memory(g, (x,), (0,), nlead=1)  # noqa: E731
    return Workload("W4", title, tools, extra=extra)


def chunk_memory(g: Callable, x: np.ndarray, chunks: tuple) -> dict:
    """Peak traced memory (NumPy reports its buffers to tracemalloc) and time of one forward-mode
    ``batch_jacobian`` call per ``chunk_size``."""
    rows = []
    for cs in chunks:
        tracemalloc.start()
        dj.batch_jacobian(g, x, chunk_size=cs, mode="forward")
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        t0 = time.perf_counter()
        dj.batch_jacobian(g, x, chunk_size=cs, mode="forward")
        rows.append({"chunk_size": cs, "peak_MiB": peak / 2**20, "one_call_s": time.perf_counter() - t0})
    return {"chunk_memory": rows}


def tape_memory(f: Callable, args: tuple, nums: tuple, nlead: int = 0) -> dict:
    """Reverse mode's memory, traced: the tape that ``linearize`` keeps (its constants: masks,
    weights, indices), and the peak of one whole reverse-mode call (tape plus live cotangents)."""
    from dualjac.reverse import Linearized, _rows

    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    lin = Linearized(f, args, nums)
    tape = tracemalloc.get_traced_memory()[0] - base
    _rows(lin, None, nlead)
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return {"tape_memory": {"tape_MiB": tape / 2**20, "peak_MiB": peak / 2**20, "nodes": len(lin.tape.nodes)}}


# --- W5: the forum's example, latency -----------------------------------------------------
def w5(quick: bool) -> Workload:
    """``f(x1, x2, x3) = (x1 + x2, x3·x1, x2³)`` at (3, 4, 5), 0-d inputs (seed 001): call latency."""
    f = lambda x1, x2, x3: (x1 + x2, x3 * x1, x2**3)
    vals = (3.0, 4.0, 5.0)
    xs = tuple(np.array(v) for v in vals)
    grid = lambda J: np.array([[float(v) for v in row] for row in J])
    tools = [Tool("dualjac", lambda: dj.jacobian(f, xs), grid)]
    torch, jax = _torch(), _jax()
    if torch is not None:
        tf, af = torch.func, torch.autograd.functional
        ts = tuple(torch.tensor(v, dtype=torch.float64) for v in vals)
        tools.append(Tool("torch AF.jacobian", lambda: af.jacobian(f, ts), grid))
        for mode in ("jacfwd", "jacrev"):
            g = getattr(tf, mode)(f, argnums=(0, 1, 2))
            tools.append(Tool(f"torch.func {mode}", lambda g=g: g(*ts), grid))
    if jax is not None:
        xj = tuple(jax.device_put(x) for x in xs)
        for mode in ("jacfwd", "jacrev"):
            g = jax.jit(getattr(jax, mode)(f, argnums=(0, 1, 2)))
            tools.append(Tool(f"jax jit {mode}", lambda g=g: jax.block_until_ready(g(*xj)), grid))
    return Workload("W5", "latency of dj.jacobian(f, (x1, x2, x3)), f = (x1 + x2, x3·x1, x2³), 0-d inputs", tools)


# --- W6: a tiny BERT through torch.export ----------------------------------------------------
def w6(quick: bool) -> Workload:
    """Per-sample input Jacobian of a tiny BERT layer stack (transformers ``BertModel``, 2 layers,
    hidden 32, 4 heads, eager attention) on input embeddings (B, 8, 32): K = 256 lanes, 256 outputs.
    Lowering (``torch.export`` + the ATen table) is timed once, apart from the table."""
    B = 2 if quick else 16
    title = f"per-sample input Jacobian, tiny BERT (2 layers, hidden 32), x ({B}, 8, 32) → ({B}, 8, 32), K=256 lanes"
    torch = _torch()
    try:
        import transformers
    except ImportError:
        transformers = None
    if torch is None or transformers is None:
        return Workload("W6", title, [Tool("dualjac", None, note="torch and transformers are needed")])
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        max_position_embeddings=64, attn_implementation="eager",
    )  # fmt: skip
    bert = transformers.BertModel(config).double().eval()
    model = lambda x: bert(inputs_embeds=x).last_hidden_state

    class Stack(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, x: Any) -> Any:
            return model(x)

    x = np.random.default_rng(6).standard_normal((B, 8, 32))
    try:
        from dualjac.torch import lower

        t0 = time.perf_counter()
        low = lower(Stack(), torch.from_numpy(x))
        lowering = time.perf_counter() - t0
        dual = Tool("dualjac", lambda: dj.batch_jacobian(low.graph, x))
        extra = lambda: {"lowering_s": lowering, "export_s": low.export_time}
    except Exception as e:  # any failure of the adapter is reported, not raised
        dual, extra = Tool("dualjac", None, note=f"adapter not available: {type(e).__name__}: {e}"[:160]), None
    tools = [dual] + [t for t in torch_tools(x, model, True) if "vmap" in t.name]  # AF.jacobian: 14 s a call
    return Workload("W6", title, tools, extra=extra)


# --- W7: the gradient of a scalar loss of many inputs (reverse mode's home ground) --------------
def _loss(params: list, x: Any, tanh: Callable) -> Any:
    y = _mlp(params, x, tanh)
    return (y * y).sum() / (2 * x.shape[0])


def w7(quick: bool) -> Workload:
    """Gradient of a scalar loss, an MLP 100→256→256→10 (tanh) on x (200, 100): 20,000 inputs."""
    B, n = (4 if quick else 200), 100
    params = mlp_params([n, 256, 256, 10], np.float64)
    x = np.random.default_rng(7).standard_normal((B, n))
    loss = lambda x: _loss(params, x, np.tanh)  # noqa: E731
    grad = dj.grad(loss)  # built once, like the torch and JAX transforms
    tools = [Tool("dualjac", lambda: grad(x), note="dj.grad"), Tool("forward pass", lambda: loss(x), None)]
    torch, jax = _torch(), _jax()
    if torch is None:
        tools.append(Tool("torch", None, note="torch not installed"))
    else:
        pt = [(torch.from_numpy(W), torch.from_numpy(b)) for W, b in params]
        xt = torch.from_numpy(x)
        g_t = torch.func.grad(lambda x: _loss(pt, x, torch.tanh))
        tools.append(Tool("torch.func grad", lambda: g_t(xt), _tensor_np))

        def backward():
            xr = xt.clone().requires_grad_(True)
            _loss(pt, xr, torch.tanh).backward()
            return xr.grad

        tools.append(Tool("torch .backward()", backward, _tensor_np))
    if jax is not None:
        pj = [(jax.device_put(W), jax.device_put(b)) for W, b in params]
        g_j = jax.jit(jax.grad(lambda x: _loss(pj, x, jax.numpy.tanh)))
        xj = jax.device_put(x)
        tools.append(Tool("jax jit grad", lambda: g_j(xj).block_until_ready()))
    title = f"gradient of a scalar MLP loss 100→256→256→10 tanh, x ({B}, {n}): {B * n} inputs, 1 output"
    return Workload("W7", title, tools, extra=lambda: tape_memory(loss, (x,), (0,)))


def all_workloads(quick: bool) -> list[tuple[str, Callable[[], Workload]]]:
    """(key, builder) in table order; built lazily, one at a time, so memory is freed in between."""
    return [
        ("W1 f64", lambda: w1(quick, np.float64)),
        ("W1 f32", lambda: w1(quick, np.float32)),
        ("W2", lambda: w2(quick)),
        ("W3", lambda: w3(quick)),
        ("W4", lambda: w4(quick)),
        ("W5", lambda: w5(quick)),
        ("W6", lambda: w6(quick)),
        ("W7", lambda: w7(quick)),
    ]
