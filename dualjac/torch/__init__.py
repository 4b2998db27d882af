"""dualjac for torch users: ``from_torch`` turns a module into a dualjac Graph; ``check``
compares torch.autograd's Jacobian with dualjac's."""

from .check import CheckReport, check
from .fx import UntraceableModuleError, from_torch

__all__ = ["CheckReport", "UntraceableModuleError", "check", "from_torch"]
