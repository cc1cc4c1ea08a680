"""PatchCore whose coreset search fits a CPU: the paper's projection, distances as matrix products.

anomalib's ``KCenterGreedy`` projects the memory bank with scikit-learn's ``SparseRandomProjection``
(eps 0.9), which for a bank of 660k patches picks about 330 dimensions, *more* than the 152 of the
EfficientNet-Lite0 features, and then subtracts the centre from the whole bank at every step, which
on a CPU makes a 1 % coreset of a category's bank take longer than training anything else here
(figures in benchmarks/README.md). ``greedy_coreset`` runs the same greedy k-center selection in the
128-dimensional random projection of the PatchCore paper and updates the distances with one
matrix-vector product per step; ``OfflinePatchcore`` is anomalib's ``Patchcore`` with it. Everything
else (features, memory bank, nearest-neighbour scoring) is anomalib's.

Example:
    >>> model = OfflinePatchcore(backbone=offline_backbone(), layers=["blocks.2", "blocks.4"],
    ...                          coreset_sampling_ratio=0.01)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from anomalib.models import Patchcore
from tqdm.auto import tqdm
from anomalib.models.image.patchcore.torch_model import PatchcoreModel

from anomaly_synth_aug.errors import InvalidInputError

#: Dimensions of the random projection the PatchCore paper selects its coreset in.
PROJECTION_DIM = 128


def greedy_coreset(
    embedding: torch.Tensor,
    size: int,
    *,
    projection_dim: int | None = PROJECTION_DIM,
    progress: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Indices of a greedy k-center coreset of ``embedding`` ``[N, D]`` (``size`` of them, in selection order).

    Each step adds the point farthest from the points selected so far. Distances are computed in a
    Gaussian random projection to ``projection_dim`` dimensions (None: in the original space), as
    squared norms minus twice a dot product, so a step costs one matrix-vector product. The first
    point and the projection draw from ``generator`` (None: the global torch RNG, seeded by
    ``seed_everything``). ``progress`` shows a tqdm bar over the selection steps.
    """
    count = embedding.shape[0]
    if not 0 < size <= count:
        raise InvalidInputError(
            f"coreset size must be in [1, {count}], got {size}", fix="raise coreset_sampling_ratio or use more images"
        )
    features = embedding.float()
    if projection_dim is not None and projection_dim < features.shape[1]:
        projection = torch.randn(features.shape[1], projection_dim, generator=generator) / projection_dim**0.5
        features = features @ projection.to(features.device)  # drawn on the CPU, like the generator
    squared = (features * features).sum(1)
    selected = torch.empty(size, dtype=torch.long)
    index = int(torch.randint(count, (), generator=generator))
    min_distances = torch.full((count,), float("inf"), device=features.device)
    for step in tqdm(range(size), desc="coreset", unit="patch", disable=not progress, leave=False):
        selected[step] = index
        distances = squared - 2 * (features @ features[index]) + squared[index]
        torch.minimum(min_distances, distances, out=min_distances)
        min_distances[index] = 0.0
        index = int(torch.argmax(min_distances))
    return selected


class ProjectedPatchcoreModel(PatchcoreModel):
    """anomalib's ``PatchcoreModel`` with ``greedy_coreset`` as its subsampling."""

    def subsample_embedding(self, sampling_ratio: float, embeddings: torch.Tensor | None = None) -> None:
        del embeddings  # deprecated in anomalib: the embedding store is used
        if not self.embedding_store:
            raise InvalidInputError("PatchCore saw no training images", fix="give it a training set of normals")
        bank = torch.vstack(self.embedding_store)
        self.embedding_store.clear()
        size = max(1, int(bank.shape[0] * sampling_ratio))
        self.memory_bank = bank[greedy_coreset(bank, size)]


class OfflinePatchcore(Patchcore):
    """anomalib's ``Patchcore`` with a coreset search that finishes on CPU (``greedy_coreset``).

    Takes ``Patchcore``'s arguments; pass an offline backbone name (``offline_backbone()``) with
    ``pre_trained=True`` for ImageNet features without a download.
    """

    def __init__(
        self,
        backbone: str = "wide_resnet50_2",
        layers: Sequence[str] = ("layer2", "layer3"),
        pre_trained: bool = True,
        coreset_sampling_ratio: float = 0.1,
        num_neighbors: int = 9,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            backbone=backbone,
            layers=layers,
            pre_trained=pre_trained,
            coreset_sampling_ratio=coreset_sampling_ratio,
            num_neighbors=num_neighbors,
            **kwargs,
        )
        dtype = next(self.model.parameters()).dtype  # anomalib's ``precision`` argument
        self.model = ProjectedPatchcoreModel(
            backbone=backbone, pre_trained=pre_trained, layers=layers, num_neighbors=num_neighbors
        ).to(dtype)
