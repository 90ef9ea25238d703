"""One pre-norm BEiT transformer layer with layer scale and stochastic depth."""
import math
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn

from .attention import BEiTAttention
from .drop_path import DropPath
from .mlp import Mlp
from .relative_position_bias import RelPosWindow


class BEiTTransformerLayer(nn.Module):
    """x + gamma1 * attn(norm1(x)); x + gamma2 * mlp(norm2(x)).

    Args:
        embed_dims: channels C.
        num_heads: attention heads.
        feedforward_channels: hidden channels of the MLP.
        window_size: (Wh, Ww) for a per-layer relative position bias, or None.
        qkv_bias: learn q and v biases.
        drop_rate: dropout after projections.
        attn_drop_rate: dropout on attention weights.
        drop_path_rate: stochastic depth of this layer.
        layer_scale_init_value: initial gamma; 0 disables layer scale.
        norm_eps: LayerNorm epsilon.
        rel_pos_resize: run-time resizing of the per-layer table, 'unilm' or 'bilinear'.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 feedforward_channels: int,
                 window_size: Optional[Tuple[int, int]] = None,
                 qkv_bias: bool = True,
                 drop_rate: float = 0.,
                 attn_drop_rate: float = 0.,
                 drop_path_rate: float = 0.,
                 layer_scale_init_value: float = 0.1,
                 norm_eps: float = 1e-6,
                 rel_pos_resize: str = 'unilm') -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(embed_dims, eps=norm_eps)
        self.attn = BEiTAttention(embed_dims, num_heads, window_size, qkv_bias, attn_drop_rate,
                                  drop_rate, rel_pos_resize)
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(embed_dims, eps=norm_eps)
        self.mlp = Mlp(embed_dims, feedforward_channels, drop_rate)
        if layer_scale_init_value > 0:
            self.gamma1 = nn.Parameter(torch.full((embed_dims, ), float(layer_scale_init_value)))
            self.gamma2 = nn.Parameter(torch.full((embed_dims, ), float(layer_scale_init_value)))
        else:
            self.gamma1 = self.gamma2 = None

    def forward(self,
                x: torch.Tensor,
                window_size: Tuple[int, int],
                shared_bias: Optional[torch.Tensor] = None,
                window: Optional[RelPosWindow] = None) -> torch.Tensor:
        """x: [B, N, C] -> [B, N, C]; ``window``: the forward's shared :class:`RelPosWindow`."""
        y = self.attn(self.norm1(x), window_size, shared_bias, window)
        x = x + self.drop_path(y if self.gamma1 is None else self.gamma1 * y)
        y = self.mlp(self.norm2(x))
        return x + self.drop_path(y if self.gamma2 is None else self.gamma2 * y)


def init_beit_weights_(module: nn.Module,
                       layers: Sequence[BEiTTransformerLayer],
                       first_depth: int = 1) -> None:
    """BEiT's initialisation of ``module``, in place (unilm's ``_init_weights`` +
    ``fix_init_weight``): linear weights truncated normal (std 0.02) with zero biases,
    LayerNorms 1/0; then the residual projections (``attn.proj``, ``mlp.fc2``) of
    ``layers[i]`` divided by sqrt(2 * depth), depth = ``first_depth + i`` (the layer's
    depth in the whole stack, 1-based).
    """
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    with torch.no_grad():
        for i, layer in enumerate(layers):
            layer.attn.proj.weight.div_(math.sqrt(2.0 * (first_depth + i)))
            layer.mlp.fc2.weight.div_(math.sqrt(2.0 * (first_depth + i)))
