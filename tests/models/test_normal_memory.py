import pytest
import torch

from anomaly_synth_aug.errors import InvalidInputError, NotFittedError
from anomaly_synth_aug.models.normal_memory import NormalPatchMemory


def feature_maps(seed: int, batch: int = 2) -> list[torch.Tensor]:
    """A stride-8 and a stride-16 map of a 64 px image, as an encoder would give them."""
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, 4, 8, 8, generator=generator), torch.randn(batch, 6, 4, 4, generator=generator)]


def test_embedding_concatenates_pooled_maps_at_the_finest_stride() -> None:
    embedding = NormalPatchMemory().embed(feature_maps(0))
    assert embedding.shape == (2, 10, 8, 8)


def test_patches_it_remembers_are_at_distance_zero_and_others_are_not() -> None:
    memory = NormalPatchMemory()
    normal = feature_maps(0)
    memory.collect(normal)
    memory.build(size=10_000)  # keeps every collected patch
    assert memory.memory_bank.shape == (2 * 8 * 8, 10)
    assert memory.distance_map(normal).abs().max() < 1e-2  # cdist rounding, in units of the spacing
    foreign = [f + 5.0 for f in feature_maps(1)]
    assert memory.distance_map(foreign).min() > 1.0  # in units of the normal patches' mean distance


def test_coreset_size_and_scale() -> None:
    torch.manual_seed(0)
    memory = NormalPatchMemory()
    for seed in range(3):
        memory.collect(feature_maps(seed))
    memory.build(size=20)
    assert memory.memory_bank.shape == (20, 10)
    assert memory.scale > 0  # the mean spacing of the kept patches
    assert not memory._store  # the collected patches are let go


def test_empty_memory_says_what_to_do() -> None:
    memory = NormalPatchMemory()
    with pytest.raises(NotFittedError, match="build"):
        memory.distance_map(feature_maps(0))
    with pytest.raises(InvalidInputError, match="no normal images"):
        memory.build(size=4)


def test_a_fresh_memory_loads_a_saved_bank_of_any_size() -> None:
    memory = NormalPatchMemory()
    memory.collect(feature_maps(0))
    memory.build(size=7)
    fresh = NormalPatchMemory()
    fresh.load_state_dict(memory.state_dict())
    assert fresh.is_built and torch.equal(fresh.memory_bank, memory.memory_bank)
    assert torch.equal(fresh.scale, memory.scale)


@pytest.mark.filterwarnings("ignore:for .*copying from a non-meta parameter:UserWarning")  # meta holds no data
def test_a_loaded_bank_takes_the_modules_device_and_dtype_as_every_other_buffer() -> None:
    """The bank took the checkpoint's: one saved from CPU training stayed on the CPU under a model on a GPU."""
    memory = NormalPatchMemory()
    memory.collect(feature_maps(0))
    memory.build(size=7)
    wide = NormalPatchMemory().double()
    wide.load_state_dict(memory.state_dict())
    assert wide.memory_bank.dtype == wide.scale.dtype == torch.float64
    assert torch.equal(wide.memory_bank, memory.memory_bank.double())
    meta = NormalPatchMemory().to("meta")  # stands in for a GPU: any device but the checkpoint's
    meta.load_state_dict(memory.state_dict(), assign=False)
    assert meta.memory_bank.device == meta.scale.device == torch.device("meta")


def test_a_category_too_large_for_the_ram_is_thinned_uniformly() -> None:
    """Ten images of 128 patches each, at most 300 held: every image keeps a share, none fills the memory alone."""
    torch.manual_seed(0)
    memory = NormalPatchMemory(max_patches=300)
    for seed in range(10):
        memory.collect(feature_maps(seed))
    held = [len(chunk) for chunk in memory._store]
    assert sum(held) <= 300 and len(held) == 10
    assert min(held) > 0  # early images were thinned as much as later ones, not dropped
    memory.build(size=10_000)
    assert len(memory.memory_bank) == sum(held)
    unbounded = NormalPatchMemory()
    for seed in range(10):
        unbounded.collect(feature_maps(seed))
    assert sum(len(chunk) for chunk in unbounded._store) == 10 * 2 * 8 * 8  # under the default bound: all kept
    with pytest.raises(InvalidInputError, match="max_patches"):
        NormalPatchMemory(max_patches=1)


def test_the_memory_depends_on_its_images_and_seed_alone_and_leaves_the_global_rng_alone() -> None:
    """So a stored memory can stand in for a built one: the run after it draws the same numbers either way."""

    def built(seed: int | None, max_patches: int = 10_000) -> NormalPatchMemory:
        memory = NormalPatchMemory(seed=seed, max_patches=max_patches)
        for index in range(4):
            memory.collect(feature_maps(index))
        memory.build(size=20)
        return memory

    torch.manual_seed(5)
    before = torch.get_rng_state()
    first = built(seed=None, max_patches=300)  # thinned as well: every draw is the memory's own
    assert torch.equal(torch.get_rng_state(), before)
    torch.rand(17)  # the global stream moves on (its seed stays 5); the memory does not follow it
    again = built(seed=None, max_patches=300)
    assert torch.equal(first.memory_bank, again.memory_bank) and torch.equal(first.scale, again.scale)
    assert torch.equal(built(seed=5, max_patches=300).memory_bank, first.memory_bank)  # None: the process's seed
    assert not torch.equal(built(seed=6).memory_bank, built(seed=5).memory_bank)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_memory_builds_and_answers_on_the_gpu() -> None:
    memory = NormalPatchMemory(seed=0).cuda()
    memory.collect([f.cuda() for f in feature_maps(0)])
    memory.build(size=20)
    assert memory.memory_bank.is_cuda and memory.distance_map([f.cuda() for f in feature_maps(1)]).is_cuda
