"""dualjac for torch users: ``from_torch`` lowers a module, through ``torch.export``, to a dualjac
Graph; ``check`` compares torch.autograd's Jacobian with dualjac's."""

from .check import CheckReport, check
from .export import ExportFailedError, Lowered, from_torch, lower
from .fx import UntraceableModuleError

__all__ = ["CheckReport", "ExportFailedError", "Lowered", "UntraceableModuleError", "check", "from_torch", "lower"]
