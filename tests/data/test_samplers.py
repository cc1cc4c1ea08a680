from types import SimpleNamespace

from torch.utils.data import DistributedSampler

from anomaly_synth_aug.data.datamodule import SyntheticAnomalyDataModule
from anomaly_synth_aug.data.dataset import SyntheticAnomalyDataset
from anomaly_synth_aug.data.samplers import EpochRandomSampler, training_sampler


def test_sampler_forwards_epoch_to_dataset(tiny_folder, fake_generator) -> None:
    tiny_folder.setup()
    dataset = SyntheticAnomalyDataset(tiny_folder.train_data, fake_generator)
    EpochRandomSampler(dataset).set_epoch(3)
    assert dataset.epoch == 3


def test_one_process_gets_the_epoch_forwarding_random_sampler(tiny_folder, fake_generator) -> None:
    tiny_folder.setup()
    dataset = SyntheticAnomalyDataset(tiny_folder.train_data, fake_generator)
    assert type(training_sampler(dataset)) is EpochRandomSampler


def test_under_ddp_each_rank_samples_its_share_and_draws_new_defects_every_epoch(tiny_folder, fake_generator) -> None:
    """Lightning swapped the old ``RandomSampler`` subclass for a plain ``DistributedSampler`` under DDP, which
    never forwarded ``set_epoch``: every epoch put the same defects on the same items. A ``DistributedSampler``
    is left alone by Lightning, so the datamodule hands one over that forwards the epoch."""
    indices, epochs = [], []
    for rank in (0, 1):
        datamodule = SyntheticAnomalyDataModule(tiny_folder, generator=fake_generator, val_split="none", seed=3)
        datamodule.trainer = SimpleNamespace(world_size=2, global_rank=rank, model=None)
        loader = datamodule.train_dataloader()
        assert isinstance(loader.sampler, DistributedSampler)
        loader.sampler.set_epoch(2)  # what Lightning calls before each training epoch
        epochs.append(loader.dataset.epoch)
        indices.append(list(loader.sampler))
    assert epochs == [2, 2]
    assert not set(indices[0]) & set(indices[1])
    assert sorted(indices[0] + indices[1]) == list(range(12))  # every train normal, once
