"""Small float64 torch models covering the layers, activations and tensor code ``from_torch`` lowers.

``zoo()`` returns ``Case(name, model, inputs)``; every model is in eval mode and keeps
batch rows independent, so per-sample Jacobians are defined.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


class Case(NamedTuple):
    name: str
    model: Any
    inputs: tuple


def _randomize_bn(m: nn.Module) -> None:
    for bn in m.modules():
        if isinstance(bn, (nn.BatchNorm1d, nn.BatchNorm2d)):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.data.uniform_(0.5, 1.5)
            bn.bias.data.uniform_(-0.5, 0.5)


class ResBlock(nn.Module):
    def __init__(self, c=3):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += x
        return self.relu(out)


class SelfAttention(nn.Module):
    """Causal multi-head self-attention written out with Linear, view, transpose and softmax."""

    def __init__(self, d=8, heads=2, t=4):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.register_buffer("mask", torch.tril(torch.ones(t, t, dtype=torch.bool)))

    def forward(self, x):
        B, T, D = x.size()
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        q = q.view(B, T, self.heads, D // self.heads).transpose(1, 2)
        k = k.view(B, T, self.heads, D // self.heads).transpose(1, 2)
        v = v.view(B, T, self.heads, D // self.heads).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(k.size(-1))
        att = att.masked_fill(~self.mask, float("-inf"))
        att = F.softmax(att, dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, D)
        return self.proj(y)


class SDPA(nn.Module):
    def __init__(self, d=8, causal=False):
        super().__init__()
        self.causal = causal
        self.q, self.k, self.v = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)

    def forward(self, x):
        B, T, D = x.shape
        split = lambda t: t.reshape(B, T, 2, D // 2).permute(0, 2, 1, 3)
        y = F.scaled_dot_product_attention(split(self.q(x)), split(self.k(x)), split(self.v(x)), is_causal=self.causal)
        return y.permute(0, 2, 1, 3).flatten(2)


class GatedMLP(nn.Module):
    def __init__(self, d=4, h=6):
        super().__init__()
        self.up = nn.Linear(d, 2 * h)
        self.down = nn.Linear(h, d)

    def forward(self, x):
        a, g = self.up(x).split(6, dim=-1)
        return self.down(a * torch.sigmoid(g)) + x


class EmbeddingModel(nn.Module):
    """Integer indices and a float input: ``forward(idx, x)``, ``x`` of shape (B, dim)."""

    def __init__(self, num=7, dim=4, out=3):
        super().__init__()
        self.emb = nn.Embedding(num, dim)
        self.lin = nn.Linear(dim, out)

    def forward(self, idx, x):
        return self.lin(self.emb(idx).mean(dim=1) * x)


class BilinearModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.bil = nn.Bilinear(3, 4, 5)

    def forward(self, x1, x2):
        return torch.tanh(self.bil(x1, x2))


class Listy(nn.Module):
    """ModuleList and ModuleDict in a custom forward, with residual connections."""

    def __init__(self, d=4):
        super().__init__()
        self.layers = nn.ModuleList([nn.Sequential(nn.Linear(d, d), nn.Tanh()) for _ in range(3)])
        self.heads = nn.ModuleDict({"a": nn.Linear(d, 2), "b": nn.Linear(d, 3)})

    def forward(self, x):
        for layer in self.layers:
            x = x + layer(x)
        return self.heads["a"](x), self.heads["b"](x).relu()


class TensorCode(nn.Module):
    """Many tensor methods and torch functions in one forward."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(4, 3, dtype=torch.float64))
        self.register_buffer("lo", torch.full((3,), -0.5, dtype=torch.float64))
        self.register_buffer("hi", torch.full((3,), 2.0, dtype=torch.float64))

    def forward(self, x):  # x: (B, 2, 6)
        B = x.shape[0]
        y = x.reshape(B, 3, 4).permute(0, 2, 1)  # (B, 4, 3)
        y = torch.cat([y, y.flip(1) if False else y * 2], dim=1)  # (B, 8, 3)
        z = torch.stack([y[:, ::2], y[:, 1::2]], dim=1).sum(1)  # (B, 4, 3)
        z = z.unsqueeze(1).squeeze(1).expand(B, 4, 3) + self.w
        a, b = z.chunk(2, dim=1)
        c = torch.einsum("bij,bkj->bik", a, b)  # (B, 2, 2)
        d = torch.bmm(a.transpose(1, 2), b)  # (B, 3, 3)
        e = torch.clamp(d, min=self.lo, max=self.hi) + torch.where(d > 0, d, -d).sqrt()
        f = z.flatten(1)  # (B, 12)
        f = F.normalize(f, dim=1) + f.abs().pow(1.5).rsqrt() * 0.1 + (f * f).exp().log()
        m = torch.max(f, dim=1, keepdim=True).values + f.amax(1, keepdim=True) + f.norm(dim=1, keepdim=True)
        s = torch.logsumexp(f, dim=1, keepdim=True) + f.var(1, keepdim=True) + f.std(dim=1, unbiased=False).unsqueeze(1)
        g = F.pad(e, (1, 1)).mean(dim=(1, 2))[:, None]
        out = torch.cat([f - m, s * 2, c.view(B, -1), g, x[..., 0], x[:, 1, torch.tensor([0, 2])]], dim=1)
        return out.sin() / 2 + out.cos() * 0.5 - 1 - out.T.T


def zoo() -> list[Case]:
    torch.manual_seed(0)
    d = torch.float64
    r = lambda *s: torch.randn(*s, dtype=d)
    prelu = nn.PReLU(6)
    prelu.weight.data.uniform_(0.05, 0.4)
    cases = [
        Case(
            "mlp_relu_family",
            nn.Sequential(
                nn.Linear(4, 6),
                nn.ReLU(),
                nn.Linear(6, 6),
                nn.ReLU6(),
                nn.LeakyReLU(0.1),
                prelu,
                nn.ELU(0.8),
                nn.SELU(),
                nn.CELU(0.7),
                nn.Linear(6, 3),
            ),
            (r(3, 4) * 3,),
        ),
        Case(
            "mlp_smooth",
            nn.Sequential(
                nn.Linear(4, 6),
                nn.GELU(),
                nn.Linear(6, 6),
                nn.GELU("tanh"),
                nn.SiLU(),
                nn.Mish(),
                nn.Softplus(beta=2.0, threshold=1.5),
                nn.Sigmoid(),
                nn.Linear(6, 3),
                nn.Tanh(),
            ),
            (r(3, 4),),
        ),
        Case(
            "mlp_hard",
            nn.Sequential(
                nn.Linear(4, 6),
                nn.Hardtanh(-0.5, 0.8),
                nn.Linear(6, 6),
                nn.Hardswish(),
                nn.Hardsigmoid(),
                nn.Linear(6, 6),
                nn.LogSigmoid(),
                nn.Softsign(),
                nn.Tanhshrink(),
                nn.Softmax(dim=1),
                nn.Linear(6, 3),
                nn.LogSoftmax(dim=-1),
            ),
            (r(3, 4) * 2,),
        ),
        Case(
            "lenet",
            nn.Sequential(
                nn.Conv2d(1, 4, 3, padding=1),
                nn.ReLU(),
                nn.MaxPool2d(2),
                nn.Conv2d(4, 4, 3, padding="same", dilation=2),
                nn.Tanh(),
                nn.Conv2d(4, 4, 3, groups=2, stride=1),
                nn.AvgPool2d(2),
                nn.Flatten(),
                nn.Linear(4, 3),
            ),
            (r(2, 1, 8, 8),),
        ),
        Case("resblock_bn", ResBlock(), (r(2, 3, 5, 5),)),
        Case(
            "conv1d",
            nn.Sequential(
                nn.Conv1d(2, 4, 3, stride=2, padding=1),
                nn.BatchNorm1d(4),
                nn.Tanh(),
                nn.MaxPool1d(2),
                nn.Conv1d(4, 4, 3, padding=1, padding_mode="circular"),
                nn.AvgPool1d(2, stride=1),
                nn.AdaptiveAvgPool1d(2),
                nn.Flatten(),
                nn.Linear(8, 3),
            ),
            (r(2, 2, 16),),
        ),
        Case(
            "groupnorm",
            nn.Sequential(
                nn.Conv2d(2, 4, 3, padding=1),
                nn.GroupNorm(2, 4),
                nn.SiLU(),
                nn.AdaptiveAvgPool2d((2, 2)),
                nn.Flatten(),
                nn.Dropout(0.3),
                nn.Linear(16, 3),
            ),
            (r(2, 2, 5, 5),),
        ),
        Case(
            "layernorm",
            nn.Sequential(
                nn.Linear(4, 6),
                nn.LayerNorm(6),
                nn.GELU(),
                nn.Linear(6, 6),
                nn.LayerNorm(6, elementwise_affine=False),
                nn.AlphaDropout(0.2),
                nn.Identity(),
                nn.Linear(6, 3),
            ),
            (r(3, 4),),
        ),
        Case("self_attention", SelfAttention(), (r(2, 4, 8),)),
        Case("sdpa", SDPA(), (r(2, 3, 8),)),
        Case("sdpa_causal", SDPA(causal=True), (r(2, 3, 8),)),
        Case("gated_mlp", GatedMLP(), (r(3, 4),)),
        Case("embedding", EmbeddingModel(), (torch.randint(0, 7, (3, 5)), r(3, 4))),
        Case("bilinear", BilinearModel(), (r(3, 3), r(3, 4))),
        Case(
            "conv_transpose",
            nn.Sequential(
                nn.Conv2d(2, 3, 3, stride=2, padding=1),
                nn.Tanh(),
                nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1, output_padding=1),
                nn.Flatten(2),
                nn.ConvTranspose1d(2, 2, 3, stride=2),
                nn.Unflatten(1, (1, 2)),
            ),
            (r(2, 2, 4, 4),),
        ),
        Case(
            "pooling",
            nn.Sequential(
                nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True),
                nn.AvgPool2d(2, padding=1, count_include_pad=False),
                nn.AdaptiveAvgPool2d(3),
                nn.Flatten(),
            ),
            (r(2, 2, 7, 7),),
        ),
        Case("module_list_dict", Listy(), (r(3, 4),)),
        Case("tensor_code", TensorCode(), (r(3, 2, 6),)),
    ]
    for c in cases:
        c.model.to(d).eval()
        _randomize_bn(c.model)
    return cases


class WrongTanh(torch.autograd.Function):
    """tanh whose backward is 1% too large: the kind of bug ``check()`` exists to find (export keeps
    only its forward, so dualjac differentiates tanh itself)."""

    @staticmethod
    def forward(ctx, x):
        y = torch.tanh(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g * (1 - y * y) * 1.01


def with_floats(call, all_inputs, diff):
    """``call`` as a function of only the inputs at positions ``diff`` (the floating ones): the others
    (token ids, masks) stay as in ``all_inputs``."""

    def f(*floats):
        args = list(all_inputs)
        for i, v in zip(diff, floats):
            args[i] = v
        return call(*args)

    return f
