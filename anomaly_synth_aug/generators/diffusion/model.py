"""The denoiser: a small diffusers ``UNet2DModel`` conditioned on context, mask and a learned token.

Inputs per patch: the noisy patch, the *masked normal context* (the patch with
the defect region blanked, so the model inpaints rather than invents the
background) and the mask itself. What to draw inside the mask is chosen by a
learned token added to the time embedding (``class_embed_type="identity"``):

* token 0 is the one NORMAL token (SeaS normal alignment): trained on normal
  patches, it inpaints plausible normal surface;
* tokens 1..K are per-defect-type ANOMALY tokens (AnomalyDiffusion's learned
  anomaly appearance embedding; SeaS decoupled anomaly alignment): each is
  trained only on its own type, and is separate from the mask that places it.

Tokens are plain vectors, so a convex combination of two types' tokens gives a
defect appearance that no single shot showed (``mixed_token``).
"""

from __future__ import annotations

import math

import torch
from diffusers import ConfigMixin, ModelMixin, UNet2DModel
from diffusers.configuration_utils import register_to_config
from torch import nn

from anomaly_synth_aug.errors import InvalidInputError

NORMAL_TOKEN = 0


class DefectDenoiser(ModelMixin, ConfigMixin):
    """Predicts the noise of a patch given its masked context, the mask and a (possibly mixed) token.

    Args:
        num_defect_types: K, the number of anomaly tokens (token ``k + 1`` is defect type ``k``).
        patch_size: side of the square patches the model is trained and sampled at.
        image_channels: channels of the image (3: grayscale datasets are promoted to RGB upstream).
        block_out_channels: UNet widths per resolution; 3 levels suffice for 32-64 px patches.
        layers_per_block: ResNet layers per level (1 keeps CPU training in minutes).
        attention: self-attention at the lowest resolution only (cheap there; helps large masks see context).
        norm_num_groups: GroupNorm groups (must divide every width); None picks the largest of 32, 16, ... that does.
    """

    @register_to_config
    def __init__(
        self,
        num_defect_types: int,
        patch_size: int = 32,
        image_channels: int = 3,
        block_out_channels: tuple[int, ...] = (32, 64, 64),
        layers_per_block: int = 1,
        attention: bool = True,
        norm_num_groups: int | None = None,
    ) -> None:
        super().__init__()
        if num_defect_types < 1:
            raise InvalidInputError(
                f"num_defect_types must be >= 1, got {num_defect_types}", fix="fit on at least one defect type"
            )
        levels = len(block_out_channels)
        if patch_size % 2 ** (levels - 1):
            raise InvalidInputError(
                f"patch_size {patch_size} is not divisible by 2**{levels - 1} (one halving per UNet level)",
                fix=f"use a multiple of {2 ** (levels - 1)}, e.g. 32, 48 or 64",
            )
        if norm_num_groups is None:
            norm_num_groups = math.gcd(32, *block_out_channels)
        lowest_down = "AttnDownBlock2D" if attention else "DownBlock2D"
        lowest_up = "AttnUpBlock2D" if attention else "UpBlock2D"
        self.unet = UNet2DModel(
            sample_size=patch_size,
            in_channels=2 * image_channels + 1,  # noisy patch + masked context + mask
            out_channels=image_channels,
            block_out_channels=tuple(block_out_channels),
            layers_per_block=layers_per_block,
            down_block_types=("DownBlock2D",) * (levels - 1) + (lowest_down,),
            up_block_types=(lowest_up,) + ("UpBlock2D",) * (levels - 1),
            add_attention=attention,
            attention_head_dim=block_out_channels[-1] if attention else None,
            norm_num_groups=norm_num_groups,
            class_embed_type="identity",
        )
        # the identity class embedding is added to the time embedding, so tokens share its width
        self.tokens = nn.Embedding(1 + num_defect_types, self.token_dim)

    @property
    def token_dim(self) -> int:
        return self.config.block_out_channels[0] * 4  # diffusers' default time_embed_dim

    def token(self, index: torch.Tensor | int) -> torch.Tensor:
        """Token vectors ``[B, D]`` for indices ``[B]`` (0 = normal, k + 1 = defect type k)."""
        index = torch.as_tensor(index, dtype=torch.long, device=self.tokens.weight.device).reshape(-1)
        return self.tokens(index)

    def mixed_token(self, first: int, second: int, weight: float) -> torch.Tensor:
        """``weight * token[first] + (1 - weight) * token[second]`` as ``[1, D]``: an unseen defect appearance."""
        if not 0.0 <= weight <= 1.0:
            raise InvalidInputError(f"mixing weight must be in [0, 1], got {weight}", fix="use e.g. 0.5")
        return weight * self.token(first) + (1.0 - weight) * self.token(second)

    def forward(
        self,
        noisy: torch.Tensor,
        context: torch.Tensor,
        mask: torch.Tensor,
        timesteps: torch.Tensor,
        tokens: torch.Tensor,
    ) -> torch.Tensor:
        """Noise prediction ``[B, C, p, p]``.

        Args:
            noisy: ``x_t`` in the model's [-1, 1] space, ``[B, C, p, p]``.
            context: the clean patch with the mask region set to 0, ``[B, C, p, p]``.
            mask: ``[B, 1, p, p]`` in {0, 1}.
            timesteps: ``[B]`` or a scalar.
            tokens: ``[B, D]`` token vectors (see ``token``/``mixed_token``).
        """
        sample = torch.cat([noisy, context, mask.to(noisy.dtype)], dim=1)
        return self.unet(sample, timesteps, class_labels=tokens).sample
