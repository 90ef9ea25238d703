"""The transformer's feed-forward block."""
import torch
import torch.nn as nn

from .cpu_linear import linear


class Mlp(nn.Module):
    """fc1 -> GELU -> dropout -> fc2 -> dropout."""

    def __init__(self, embed_dims: int, feedforward_channels: int, drop: float = 0.) -> None:
        super().__init__()
        self.fc1 = nn.Linear(embed_dims, feedforward_channels)
        self.fc2 = nn.Linear(feedforward_channels, embed_dims)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, N, C] -> [B, N, C]; fc1 + GELU fused on the CPU at inference."""
        x = self.drop(linear(x, self.fc1.weight, self.fc1.bias, gelu=True))
        return self.drop(linear(x, self.fc2.weight, self.fc2.bias))
