"""The transformer's feed-forward block."""
import torch
import torch.nn as nn


class Mlp(nn.Module):
    """fc1 -> GELU -> dropout -> fc2 -> dropout, each a module (hooks and replacements see it)."""

    def __init__(self, embed_dims: int, feedforward_channels: int, drop: float = 0.) -> None:
        super().__init__()
        self.fc1 = nn.Linear(embed_dims, feedforward_channels)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(feedforward_channels, embed_dims)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, N, C] -> [B, N, C]."""
        x = self.drop(self.act(self.fc1(x)))  # [B, N, feedforward_channels]
        return self.drop(self.fc2(x))
