"""Neural-network ops: activations, softmax, linear/conv layers, pooling, normalisation.

These are the ops the torch adapter lowers ``torch.nn`` modules to; kinks follow
torch's conventions so that ``dualjac.torch.check`` agrees with ``torch.func.jvp``.
"""

from __future__ import annotations

from . import defrule  # noqa: F401
