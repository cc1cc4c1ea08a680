"""Passes a model makes over dataloaders outside Lightning's own loops (normal memory, prior calibration).

Example::

    for loader in as_loader_list(trainer.val_dataloaders):
        if has_batches(loader):
            for batch in private_loader(loader): ...
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from anomalib.data import Batch
from torch.utils.data import DataLoader


def as_loader_list(loaders: Any) -> list[Iterable[Batch]]:
    """Lightning's and anomalib's dataloader attributes: one loader, a list of them, or None."""
    if loaders is None:
        return []
    return list(loaders) if isinstance(loaders, list | tuple) else [loaders]


def private_loader(loader: Iterable[Batch]) -> Iterable[Batch]:
    """A loader of its own over the same data, so that a pass never shares (or uses up) Lightning's iterator.

    A DataLoader with persistent workers hands every ``iter`` the same iterator; the calibration runs
    inside the validation loop, whose iterator is already open.
    """
    if not isinstance(loader, DataLoader):
        return loader
    return DataLoader(
        loader.dataset, batch_size=loader.batch_size or 1, shuffle=False, num_workers=0, collate_fn=loader.collate_fn
    )


def batch_count(loader: Iterable[Any]) -> int | None:
    """Batches in ``loader``, or None when it cannot tell."""
    try:
        return len(loader)  # type: ignore[arg-type]
    except TypeError:
        return None


def has_batches(loader: Iterable[Any]) -> bool:
    length = batch_count(loader)
    return length is None or length > 0
