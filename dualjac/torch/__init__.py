"""dualjac for torch users: ``from_torch`` turns a module into a dualjac Graph; ``check``
compares torch.autograd's Jacobian with dualjac's."""

from .check import CheckReport, check
from .fx import from_torch

__all__ = ["CheckReport", "check", "from_torch"]
