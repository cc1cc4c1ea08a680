"""PatchCore's coreset on CPU: the greedy k-center selection, computed with matrix products."""

from __future__ import annotations

import pytest
import torch

from anomaly_synth_aug.errors import InvalidInputError
from anomaly_synth_aug.models.patchcore import OfflinePatchcore, ProjectedPatchcoreModel, greedy_coreset


def _naive_greedy(points: torch.Tensor, size: int, first: int) -> list[int]:
    chosen = [first]
    while len(chosen) < size:
        distances = torch.cdist(points, points[chosen]).min(dim=1).values
        chosen.append(int(distances.argmax()))
    return chosen


def test_the_selection_is_the_greedy_k_center_one() -> None:
    points = torch.randn(300, 5, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(1)
    first = int(torch.randint(300, ()))
    torch.manual_seed(1)
    fast = greedy_coreset(points, 20, projection_dim=None)
    assert fast.tolist() == _naive_greedy(points, 20, first)


def test_the_projection_keeps_the_spread_of_the_bank() -> None:
    """Clusters far apart are all represented, as in the original space."""
    generator = torch.Generator().manual_seed(0)
    centres = torch.randn(8, 256, generator=generator) * 20
    bank = torch.cat([c + torch.randn(100, 256, generator=generator) for c in centres])
    chosen = greedy_coreset(bank, 8)
    assert sorted({int(i) // 100 for i in chosen}) == list(range(8))
    with pytest.raises(InvalidInputError, match="coreset size"):
        greedy_coreset(bank, 0)


def test_patchcore_uses_it_and_keeps_anomalibs_interface() -> None:
    model = OfflinePatchcore(backbone="resnet18", layers=["layer2"], pre_trained=False, coreset_sampling_ratio=0.5)
    assert isinstance(model.model, ProjectedPatchcoreModel)
    model.model.embedding_store.append(torch.randn(40, 128))
    model.model.subsample_embedding(0.5)
    assert model.model.memory_bank.shape == (20, 128)
    assert model.hparams["coreset_sampling_ratio"] == 0.5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (the CPU path is tested above)")
def test_the_coreset_runs_on_the_banks_device() -> None:
    """The projection and the distances follow the bank onto the GPU (they were CPU tensors, and failed there)."""
    bank = torch.randn(500, 200, generator=torch.Generator().manual_seed(0))
    chosen = greedy_coreset(bank.cuda(), 16, generator=torch.Generator().manual_seed(1))
    assert chosen.tolist() == greedy_coreset(bank, 16, generator=torch.Generator().manual_seed(1)).tolist()
