"""The building blocks of the one BEiT (plain ``nn.Module``s, registered nowhere).

Backbone, MIM pretraining and segmentation all use these same layers.
"""
from .attention import BEiTAttention
from .drop_path import DropPath
from .mlp import Mlp
from .patch_embed import PatchEmbed
from .relative_position_bias import RelativePositionBias
from .transformer_layer import BEiTTransformerLayer

__all__ = [
    'BEiTAttention', 'BEiTTransformerLayer', 'DropPath', 'Mlp', 'PatchEmbed', 'RelativePositionBias'
]
