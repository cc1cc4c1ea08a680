"""Training samplers that pass Lightning's per-epoch ``set_epoch`` call on to the dataset.

Lightning calls ``set_epoch`` on a dataloader's sampler (never on its dataset) before each
training epoch; forwarding it lets ``SyntheticAnomalyDataset`` draw new anomalies per epoch.
Under DDP Lightning swaps any ``RandomSampler`` (subclasses included) for a plain
``DistributedSampler``, which forwards nothing, so a multi-process run gets a
``DistributedSampler`` of its own that forwards the epoch too (Lightning leaves those alone).

Example::

    sampler = training_sampler(dataset, world_size=trainer.world_size, rank=trainer.global_rank, seed=0)
    loader = DataLoader(dataset, sampler=sampler, batch_size=8, collate_fn=dataset.collate_fn)
"""

from __future__ import annotations

from torch.utils.data import Dataset, DistributedSampler, RandomSampler, Sampler


def _forward_epoch(dataset: object, epoch: int) -> None:
    set_epoch = getattr(dataset, "set_epoch", None)
    if callable(set_epoch):
        set_epoch(epoch)


class EpochRandomSampler(RandomSampler):
    """``RandomSampler`` that forwards ``set_epoch`` to its dataset (one process)."""

    def set_epoch(self, epoch: int) -> None:
        _forward_epoch(self.data_source, epoch)


class EpochDistributedSampler(DistributedSampler):
    """``DistributedSampler`` that also forwards ``set_epoch`` to its dataset (DDP: one per rank)."""

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        _forward_epoch(self.dataset, epoch)


def training_sampler(dataset: Dataset, *, world_size: int = 1, rank: int = 0, seed: int = 0) -> Sampler[int]:
    """The sampler for a training set: shuffled, forwarding the epoch, split across ranks under DDP."""
    if world_size > 1:
        return EpochDistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
    return EpochRandomSampler(dataset)
