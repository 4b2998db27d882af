"""Global settings (``dj.config``) and progress reporting of multi-pass runs.

At the bottom of the package: the transforms and reverse mode read it, it imports nothing of
dualjac.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

AUTO_MIN_INPUTS = 64  # mode="auto": up to this many input elements (per sample), forward mode (dualjac/reverse.py)


@dataclass
class Config:
    """Global settings.

    ``tangent_bytes``: memory budget for one tangent array, which sets the default
    ``chunk_size`` (lanes per pass). ``progress``: called as ``progress(done, total)``
    after each pass of a multi-pass (chunked) run, e.g. to draw a progress bar; when it is
    None, a run that takes over a second shows a ``tqdm`` bar if tqdm is installed.
    ``tape_bytes``: how large reverse mode's
    tape of linear operations may grow while a function is linearized (estimated as one value
    per recorded operation) before ``TapeTooLargeError`` stops it. ``block_bytes``: ``batch_jacobian``
    evaluates a large batch in blocks of rows whose widest tangent array holds about this many
    bytes, so it stays in the CPU cache between the ops that make and use it (NumPy only; the result
    does not depend on it; 0 evaluates the whole batch at once).

    >>> import numpy as np, dualjac as dj
    >>> seen = []
    >>> dj.config.tangent_bytes, dj.config.progress = 3 * 8, lambda done, total: seen.append(done)
    >>> J = dj.jacfwd(np.sin)(np.zeros(6))     # a lane is 6 float64 values: one lane per pass
    >>> seen
    [1, 2, 3, 4, 5, 6]
    >>> dj.config.tangent_bytes, dj.config.progress = 256 << 20, None   # the defaults
    """

    tangent_bytes: int = 256 << 20  # a pass holds a few arrays this size: peak memory is a small multiple
    progress: Callable[[int, int], None] | None = None
    tape_bytes: int = 4 << 30
    block_bytes: int = 4 << 20  # about one core's L2 cache


config = Config()


class Progress:
    """Reports ``(done, total)`` lanes after each pass: to ``config.progress`` when set, else to a
    ``tqdm`` bar (if installed) once the run has taken more than a second, else nowhere."""

    def __init__(self, total: int, what: str = "lanes") -> None:
        self.total, self.what, self.start, self.bar = total, what, time.perf_counter(), None

    def __call__(self, done: int) -> None:
        if config.progress is not None:
            config.progress(done, self.total)
            return
        if self.bar is None and time.perf_counter() - self.start > 1.0:
            self.bar = _tqdm(self.total, self.what)
            self.bar = self.bar or False
        if self.bar:
            self.bar.update(done - self.bar.n)
            if done >= self.total:
                self.bar.close()


def _tqdm(total: int, what: str) -> Any:
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit=what, desc="dualjac", leave=False)
