"""Real models (transformers and torch.nn built-ins, tiny random configs) through ``from_torch``:
the forward matches torch to 1e-12 relative and ``dj.jvp`` in random directions matches
``torch.func.jvp`` to 1e-10, in float64. One lowering per model, shared by its tests."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
from models import models  # noqa: E402

import dualjac as dj  # noqa: E402
from dualjac.torch import lower  # noqa: E402

CASES = {c.name: c for c in models()}
# Models that round to float32 inside, whatever the model's dtype (Llama-style RMSNorm computes its
# variance in float32, the rotary embedding its angles): dualjac rounds there too, but NumPy's and
# torch's float32 kernels differ by an ulp, so agreement is at float32's precision, not float64's.
FLOAT32_INSIDE = {"llama": 1e-6, "mistral": 1e-6, "qwen2": 1e-6, "t5_encoder": 1e-6}


@pytest.fixture(scope="module", params=list(CASES))
def lowered(request):
    model, inputs = CASES[request.param].make()
    return request.param, model, inputs, lower(model, *inputs)


def _math_sdpa():
    # torch's CPU flash attention has no forward-mode derivative: the math kernel for torch.func.jvp
    return torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.MATH)


def _rel(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def test_forward_matches_torch(lowered):
    name, model, inputs, low = lowered
    xs = tuple(x.numpy() for x in inputs)
    out = low.graph(*xs)
    ref = model(*inputs).detach().numpy()
    assert out.shape == ref.shape and _rel(out, ref) <= FLOAT32_INSIDE.get(name, 1e-12)
    assert low.dynamic_batch  # another batch size: the same graph
    x3 = tuple(torch.cat([x, x[:1]]) for x in inputs)
    assert _rel(low.graph(*(x.numpy() for x in x3)), model(*x3).detach().numpy()) <= FLOAT32_INSIDE.get(name, 1e-12)


def test_jvp_matches_torch_func_jvp(lowered):
    name, model, inputs, low = lowered
    if not inputs[0].is_floating_point():  # token ids: nothing to differentiate but the parameters
        params = {k: v.detach() for k, v in model.named_parameters()}
        key = next(k for k in params if "embeddings" in k or "wte" in k)
        gen = torch.Generator().manual_seed(0)
        t = torch.randn(params[key].shape, generator=gen, dtype=torch.float64)
        f = lambda p: torch.func.functional_call(model, {**params, key: p}, inputs)
        with _math_sdpa():
            _, t_torch = torch.func.jvp(f, (params[key],), (t,))
        xs = tuple(x.numpy() for x in inputs)
        _, t_dj = dj.jvp(lambda p: low.graph(*xs, params={key: p}), (low.graph.params[key],), (t.numpy(),))
    else:
        gen = torch.Generator().manual_seed(0)
        t = tuple(torch.randn(x.shape, generator=gen, dtype=x.dtype) for x in inputs)
        with _math_sdpa():
            _, t_torch = torch.func.jvp(model, inputs, t)
        _, t_dj = dj.jvp(low.graph, tuple(x.numpy() for x in inputs), tuple(v.numpy() for v in t))
    assert _rel(t_dj, t_torch.detach().numpy()) <= FLOAT32_INSIDE.get(name, 1e-10)


def test_tied_weights_have_one_name_and_both_uses():
    """GPT-2's head reuses the token embedding: one parameter, whose tangent reaches both uses."""
    import transformers

    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=50, n_embd=16, n_layer=1, n_head=2, n_positions=32, use_cache=False)
    model = transformers.GPT2LMHeadModel(cfg).double().eval()
    ids = torch.randint(0, 50, (2, 5), generator=torch.Generator().manual_seed(0))
    g = lower(model, ids).graph
    assert [k for k in g.params if "wte" in k or "lm_head" in k] == ["transformer.wte.weight"]
    out = g(ids.numpy())  # a ModelOutput comes back as a dict
    assert list(out) == ["logits"] and _rel(out["logits"], model(ids).logits.detach().numpy()) <= 1e-12
    params = {k: v.detach() for k, v in model.named_parameters()}
    w = params["transformer.wte.weight"]
    t = torch.randn(w.shape, generator=torch.Generator().manual_seed(1), dtype=w.dtype)
    f = lambda w: torch.func.functional_call(model, {**params, "transformer.wte.weight": w}, (ids,)).logits
    with _math_sdpa():
        _, t_torch = torch.func.jvp(f, (w,), (t,))
    key = "transformer.wte.weight"
    _, t_dj = dj.jvp(lambda p: g(ids.numpy(), params={key: p})["logits"], (g.params[key],), (t.numpy(),))
    assert _rel(t_dj, t_torch.numpy()) <= 1e-10
