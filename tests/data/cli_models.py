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
