"""BEiT v2's patch-aggregation neck (Peng et al., 2022, section 2.3).

The last layer's class token is prepended to the patch tokens of an early
layer (9 of 12 for base, 21 of 24 for large) and goes through two more
transformer layers; the MIM loss on their output pushes global information
into the class token. Both paths, the last layer's tokens and the aggregated
ones, share one LayerNorm and (in the head) one linear layer to the
vocabulary. The neck's layers use the backbone's shared relative position
bias, as unilm's ``cls_pt_layers`` do (``beit2/modeling_pretrain.py``,
``VisionTransformerForMaskedImageModelingCLS``).
"""
from typing import Optional, Sequence, Tuple, Union

import torch
from mmengine.model import BaseModule
from torch import nn

from mmbeit.layers.relative_position_bias import RelPosWindow
from mmbeit.layers.transformer_layer import BEiTTransformerLayer, init_beit_weights_
from mmbeit.models.backbones.beit import resolve_arch
from mmbeit.registry import MODELS

__all__ = ['BEiTV2Neck']


@MODELS.register_module()
class BEiTV2Neck(BaseModule):
    """Patch aggregation: ``num_layers`` layers over [last CLS, early patches].

    Keys: ``layers.{i}.*`` (:class:`BEiTTransformerLayer`, no per-layer table)
    and ``norm.*``, the norm shared by both paths (mmpretrain:
    ``neck.patch_aggregation.{i}.*``, ``neck.norm.*``; unilm:
    ``cls_pt_layers.{i}.*``, ``norm.*``).

    Args:
        backbone_arch: the backbone's arch, a name of :data:`ARCH_ZOO` or a
            dict with ``embed_dims``, ``num_layers``, ``num_heads``,
            ``feedforward_channels``. Defaults to 'base'.
        num_layers: patch-aggregation layers. Defaults to 2 (unilm
            ``--head_layers 2``).
        early_layers: the layer (1-based) whose patch tokens are aggregated.
            Defaults to 9 (unilm ``--early_layers 9`` for base, 21 for large).
        drop_rate: dropout after projections. Defaults to 0.
        attn_drop_rate: dropout on attention weights. Defaults to 0.
        drop_path_rate: the stochastic depth schedule's end, continued from the
            backbone's: layer i gets ``linspace(0, rate, max(depth, early_layers
            + num_layers))[early_layers + i]``, as unilm and mmpretrain.
        layer_scale_init_value: initial layer scale; 0 disables it.
        norm_eps: LayerNorm epsilon. Defaults to 1e-6.
        init_cfg: mmengine init config. Defaults to None.
    """

    def __init__(self,
                 backbone_arch: Union[str, dict] = 'base',
                 num_layers: int = 2,
                 early_layers: int = 9,
                 drop_rate: float = 0.,
                 attn_drop_rate: float = 0.,
                 drop_path_rate: float = 0.,
                 layer_scale_init_value: float = 0.1,
                 norm_eps: float = 1e-6,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        arch = resolve_arch(backbone_arch)
        depth = arch['num_layers']
        if not isinstance(num_layers, int) or num_layers < 1:
            raise ValueError(f'BEiTV2Neck: num_layers must be a positive int, got {num_layers!r}')
        if not isinstance(early_layers, int) or not 1 <= early_layers < depth:
            raise ValueError(f'BEiTV2Neck: early_layers must be an int in [1, {depth - 1}] '
                             f'for a backbone of {depth} layers, got {early_layers!r}')
        self.embed_dims = arch['embed_dims']
        self.num_layers = num_layers
        self.early_layers = early_layers
        dpr = torch.linspace(0, drop_path_rate, max(depth, early_layers + num_layers)).tolist()
        self.layers = nn.ModuleList([
            BEiTTransformerLayer(
                arch['embed_dims'],
                arch['num_heads'],
                arch['feedforward_channels'],
                window_size=None,  # the backbone's shared table
                drop_rate=drop_rate,
                attn_drop_rate=attn_drop_rate,
                drop_path_rate=dpr[early_layers + i],
                layer_scale_init_value=layer_scale_init_value,
                norm_eps=norm_eps) for i in range(num_layers)
        ])
        self.norm = nn.LayerNorm(arch['embed_dims'], eps=norm_eps)
        self._init_parameters()

    def _init_parameters(self) -> None:
        """Truncated normal (std 0.02), residual projections rescaled by their
        depth in the whole stack (unilm's ``fix_init_cls_pt_weight``)."""
        init_beit_weights_(self, self.layers, first_depth=self.early_layers + 1)

    def forward(self,
                feats: Sequence[torch.Tensor],
                hw: Tuple[int, int],
                shared_bias: Optional[torch.Tensor] = None,
                window: Optional[RelPosWindow] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """The two paths' normalized patch tokens.

        Args:
            feats: (early layer's tokens, last layer's tokens), each
                [B, 1 + N, C] (class token first), not normalized.
            hw: the patch grid (h, w), N = h * w.
            shared_bias: the backbone's shared relative position bias
                [heads, 1 + N, 1 + N], or None.
            window: the forward's :class:`RelPosWindow`, or None.

        Returns:
            ``(last, aggregated)``: [B, N, C] each, through the shared norm.
        """
        if len(feats) != 2:
            raise ValueError('BEiTV2Neck: expected the backbone outputs (early layer, last '
                             f'layer), got {len(feats)} tensors; build the backbone with '
                             f'out_indices=[{self.early_layers - 1}, -1]')
        early, last = feats
        x = torch.cat([last[:, :1], early[:, 1:]], dim=1)  # [B, 1 + N, C]
        for layer in self.layers:
            x = layer(x, hw, shared_bias, window)
        return self.norm(last)[:, 1:], self.norm(x)[:, 1:]
