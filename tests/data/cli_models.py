"""Model factories for the CLI tests (`dualjac check tests/data/cli_models.py:good`)."""

import torch


def good():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.GELU(), torch.nn.Linear(5, 2)).eval()


class _Off(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x * x

    @staticmethod
    def backward(ctx, g):
        return g * 2.0  # wrong: should be 2 x


def wrong():
    class M(torch.nn.Module):
        def forward(self, x):
            return _Off.apply(x)

    return M()


def not_a_module():
    return 42


class _Tokens(torch.nn.Module):
    """forward(ids, x): token ids (integers, not differentiated) and a float input."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embed = torch.nn.Embedding(10, 4)
        self.proj = torch.nn.Linear(4, 4)

    def forward(self, ids, x):
        return torch.tanh(self.proj(self.embed(ids) + x))


def tokens():
    return _Tokens().eval()


class OffLayer(torch.nn.Module):
    def forward(self, x):
        return _Off.apply(x)


def wrong_layer():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 5), OffLayer(), torch.nn.Linear(5, 2)).eval()
