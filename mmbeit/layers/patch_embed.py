"""Non-overlapping patch embedding."""
from typing import Tuple

import torch
import torch.nn as nn


class PatchEmbed(nn.Module):
    """Split an image into p x p patches and project each to C channels.

    Args:
        in_channels: image channels.
        embed_dims: output channels C.
        patch_size: p.
    """

    def __init__(self, in_channels: int, embed_dims: int, patch_size: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_channels, embed_dims, patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, Tuple[int, int]]:
        """x: [B, in, H, W] -> ([B, H/p*W/p, C], (H/p, W/p))."""
        if x.dim() != 4:
            raise ValueError(f'expected an image batch [B, C, H, W], got shape {tuple(x.shape)}')
        B, C, H, W = x.shape
        if C != self.in_channels:
            raise ValueError(f'input has {C} channels, the model expects {self.in_channels} '
                             '(convert grayscale/RGBA images to RGB in the pipeline)')
        p = self.patch_size
        if H % p or W % p:
            raise ValueError(f'input size {H}x{W} is not a multiple of the patch size {p}; '
                             f'resize or pad it (e.g. to {H // p * p or p}x{W // p * p or p})')
        x = self.proj(x)  # [B, C, H/p, W/p]
        hw = (x.shape[2], x.shape[3])
        return x.flatten(2).transpose(1, 2), hw
