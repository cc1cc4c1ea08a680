"""Running a block with a given number of torch intra-op threads.

Example:
    >>> with torch_threads(2):
    ...     generator.generate(images)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run a block with ``count`` intra-op threads (None: leave torch's setting), restoring it after."""
    if count is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


__all__ = ["torch_threads"]
