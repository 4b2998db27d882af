"""How long ``dualjac.torch.check`` takes on a resnet18-shaped model, against ``gradcheck(fast_mode=True)``.

    python -m benchmarks.check_speed [--batch 2] [--size 32] [--repeats 5] [--threads N]

The anchor, measured in the same run: ``torch.autograd.gradcheck(model, (x,), fast_mode=True)``
(one random projection, compared with central finite differences). Reported: the first
``check`` (export + lowering + check, cold), then warm ``check``s (the lowering is cached), each
split into lowering, torch and dualjac time, as medians, and their ratio to gradcheck's median.
Then both tools on the same model with one 1%-wrong backward and outputs scaled by 1e-6: what
each of them says.

The model is torchvision's resnet18 layout written out here (torchvision does not import on
these machines): a 7x7 stem, max pool, BasicBlock x2 in four stages (64-512 channels), average
pool and a 10-way linear layer, in float64 and eval mode.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class ResNet18(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        stages, cin = [], 64
        for i, c in enumerate([64, 128, 256, 512]):
            stages.append(nn.Sequential(BasicBlock(cin, c, 1 if i == 0 else 2), BasicBlock(c, c, 1)))
            cin = c
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class _OffByOnePercent(torch.autograd.Function):
    """The identity, whose backward is 1% too large."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        return g * 1.01


class OffByOnePercent(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _OffByOnePercent.apply(x)


def resnet18(seed: int = 0) -> ResNet18:
    torch.manual_seed(seed)
    model = ResNet18().double().eval()
    with torch.no_grad():  # BatchNorm statistics that are not the identity
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model


def _median(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main(argv: list[str] | None = None) -> None:
    import dualjac.torch as djt

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = resnet18()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(args.batch, 3, args.size, args.size, dtype=torch.float64, generator=gen)
    xg = x.clone().requires_grad_(True)
    print(f"resnet18-shaped model, input {tuple(x.shape)} float64, torch threads {torch.get_num_threads()}")

    gradcheck = lambda m: torch.autograd.gradcheck(m, (xg,), fast_mode=True, raise_exception=False)  # noqa: E731
    gradcheck(model)  # warm-up
    t_gc, _ = _median(lambda: gradcheck(model), args.repeats)
    print(f"  gradcheck(fast_mode=True)      {t_gc:8.3f} s (median of {args.repeats}, warm)")

    t0 = time.perf_counter()
    first = djt.check(model, x)
    t_first = time.perf_counter() - t0
    print(
        f"  check, first call              {t_first:8.3f} s = lowering {first.time_lower:.3f} s + torch "
        f"{first.time_torch:.3f} s + dualjac {first.time_dualjac:.3f} s + rest; {first.status}"
    )
    t_warm, warm = _median(lambda: djt.check(model, x), args.repeats)
    print(
        f"  check, warm                    {t_warm:8.3f} s (median of {args.repeats}; last: lowering "
        f"{warm.time_lower * 1e3:.1f} ms, torch {warm.time_torch:.3f} s, dualjac {warm.time_dualjac:.3f} s); "
        f"{warm.status}, {warm.mode}, {warm.directions}x{warm.directions} directions"
    )
    print(f"  warm check / gradcheck         {t_warm / t_gc:8.2f}x   (goal: at most 5x)")

    wrong = resnet18()
    wrong.layer3[1].bn1 = nn.Sequential(wrong.layer3[1].bn1, OffByOnePercent())
    wrong.fc = nn.Sequential(wrong.fc, _Scale(1e-6))
    gc_passes = gradcheck(wrong)
    t0 = time.perf_counter()
    report = djt.check(wrong, x)
    t_wrong = time.perf_counter() - t0
    culprit = f"culprit: module '{report.culprit.module}' ({report.culprit.kind})" if report.culprit else ""
    print("one backward 1% wrong (layer3.1.bn1), outputs scaled by 1e-6:")
    print(f"  gradcheck(fast_mode=True) says {'pass' if gc_passes else 'FAIL'}")
    print(f"  check says {report.status} in {t_wrong:.2f} s (locating {report.time_locate:.2f} s); {culprit}")


class _Scale(nn.Module):
    def __init__(self, s: float) -> None:
        super().__init__()
        self.s = s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.s


if __name__ == "__main__":
    main()
