"""dualjac for torch users: ``from_torch`` lowers a module, through ``torch.export``, to a dualjac
Graph; ``check`` compares torch.autograd's Jacobian with dualjac's."""

from .check import check
from .check_report import CheckReport
from .export import ExportFailedError, Lowered, from_torch, lower

__all__ = ["CheckReport", "ExportFailedError", "Lowered", "check", "from_torch", "lower"]
