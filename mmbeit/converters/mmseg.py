"""mmsegmentation 1.x UperNet-BEiT checkpoints.

Whole models (``EncoderDecoder``, ``{'state_dict': ...}``): the backbone under
``backbone.`` in OpenMMLab's names (see :mod:`.mmpretrain`; mmseg's BEiT has
per-layer tables and an optional final ``ln1``), ``neck.upsample_4x.{0,1,3}`` and
``neck.upsample_2x.0`` (``Feature2Pyramid``), ``decode_head.*`` (``UPerHead``) and
``auxiliary_head.*`` (``FCNHead``); the heads keep mmseg's names in mmbeit.

Backbone files made by mmseg's ``tools/model_converters/beit2mmseg.py`` from
unilm checkpoints rename only ``blocks`` -> ``layers`` (``norm`` -> ``ln``,
``mlp.fc1`` -> ``ffn.layers.0.0``) and ``patch_embed.proj`` ->
``patch_embed.projection``; they keep the old patch embedding keys as well and
unilm's other names (``norm``, ``fc_norm``, ``head``, ``lm_head``,
``rel_pos_bias.relative_position_bias_table``).
"""
from collections import OrderedDict
from typing import List, Mapping

import torch

from . import mmpretrain
from .layout import MIM_HEAD_LINEAR
from .rules import Rule, StateDict, apply_rules, prefix_rules

NAME = 'mmseg'
DESCRIPTION = ('mmsegmentation 1.x UperNet-BEiT or beit2mmseg.py output (neck.upsample_4x, '
               'decode_head)')
# detection order (lowest first): before mmpretrain: both have OpenMMLab's names
PRIORITY = 30

# what beit2mmseg.py leaves in unilm's names
BEIT2MMSEG_RULES: List[Rule] = [
    (r'patch_embed\.proj\.(weight|bias)', r'patch_embed.proj.\1'),  # duplicate of .projection
    (r'(norm|fc_norm)\.(weight|bias)', r'\1.\2'),
]

NECK_AND_HEAD_RULES: List[Rule] = [
    (r'neck\.(.+)', r'neck.\1'),
    (r'(decode_head|auxiliary_head)\.(.+)', r'\1.\2'),
    (r'data_preprocessor\..+', None),
]

RULES: List[Rule] = (
    prefix_rules(mmpretrain.BACKBONE_RULES + BEIT2MMSEG_RULES, 'backbone.', 'backbone.') +
    NECK_AND_HEAD_RULES)
BARE_RULES: List[Rule] = (
    prefix_rules(mmpretrain.BACKBONE_RULES + BEIT2MMSEG_RULES, '', 'backbone.') +
    [(r'head\.(weight|bias)', r'cls_head.fc.\1'),
     (r'lm_head\.(weight|bias)', rf'mim_head.{MIM_HEAD_LINEAR}.\1')])


def matches(state_dict: Mapping[str, torch.Tensor], wrapper=None) -> bool:
    if not mmpretrain.is_openmmlab_layout(state_dict):
        return False
    whole = any(k.startswith(('decode_head.', 'neck.', 'auxiliary_head.')) for k in state_dict)
    beit2mmseg = 'patch_embed.proj.weight' in state_dict or 'norm.weight' in state_dict
    return whole or beit2mmseg


def convert(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """mmseg state dict (whole segmentor or beit2mmseg backbone) -> mmbeit's canonical layout."""
    if any(k.startswith('backbone.') for k in state_dict):
        return apply_rules(state_dict, RULES, NAME)
    return apply_rules(OrderedDict(state_dict), BARE_RULES, NAME)
