"""mmpretrain / mmselfsup 1.x BEiT checkpoints (OpenMMLab's layout).

``BEiTViT`` (``mmpretrain/models/backbones/beit.py``) and mmseg's ``BEiT`` name
their modules the same way::

    cls_token, [mask_token], [pos_embed], patch_embed.projection.{weight,bias},
    [rel_pos_bias.relative_position_bias_table] (shared), layers.{i}.ln1,
    layers.{i}.attn.qkv.weight,
    layers.{i}.attn.{q_bias,v_bias,proj}, [layers.{i}.attn.relative_position_bias_table],
    layers.{i}.ln2, layers.{i}.ffn.layers.0.0 (fc1), layers.{i}.ffn.layers.1 (fc2),
    layers.{i}.gamma_1, layers.{i}.gamma_2, [ln1] (final norm), [ln2] (avg_featmap norm)

Whole models: ``ImageClassifier`` adds ``head.fc`` (``LinearClsHead``); the BEiT
pretraining algorithm (``mmpretrain.models.selfsup.BEiT``: ``BEiTPretrainViT``,
``BEiTV1Head``, ``'DALL-E'``) adds ``head.cls_head`` and ``target_generator.blocks.*``
(OpenAI's DALL-E names; converted by :mod:`.dalle`). The files wrap the weights in
``{'state_dict': ...}`` next to ``meta``.
"""
from collections import OrderedDict
from typing import List, Mapping

import torch

from . import dalle
from .layout import MIM_HEAD_LINEAR
from .rules import Rule, StateDict, add_prefix, apply_rules, prefix_rules, strip_prefix

NAME = 'mmpretrain'
DESCRIPTION = ('mmpretrain / mmselfsup 1.x (backbone.layers.0.ffn.layers.0.0.weight, head.fc, '
               'head.cls_head)')
# detection order (lowest first): after mmseg, which tells its own files apart
PRIORITY = 40

# OpenMMLab BEiT backbone keys (no prefix) -> mmbeit BEiT keys
BACKBONE_RULES: List[Rule] = [
    (r'(cls_token|mask_token|pos_embed)', r'\1'),
    (r'patch_embed\.projection\.(weight|bias)', r'patch_embed.proj.\1'),
    (r'rel_pos_bias\.relative_position_bias_table', 'rel_pos_bias.table'),
    (r'rel_pos_bias\.relative_position_index', None),  # a buffer we rebuild
    (r'layers\.(\d+)\.ln([12])\.(weight|bias)', r'layers.\1.norm\2.\3'),
    (r'layers\.(\d+)\.attn\.(qkv\.weight|q_bias|v_bias|proj\.weight|proj\.bias)',
     r'layers.\1.attn.\2'),
    (r'layers\.(\d+)\.attn\.relative_position_bias_table', r'layers.\1.attn.rel_pos_bias.table'),
    (r'layers\.(\d+)\.attn\.relative_position_index', None),
    (r'layers\.(\d+)\.ffn\.layers\.0\.0\.(weight|bias)', r'layers.\1.mlp.fc1.\2'),
    (r'layers\.(\d+)\.ffn\.layers\.1\.(weight|bias)', r'layers.\1.mlp.fc2.\2'),
    (r'layers\.(\d+)\.gamma_([12])', r'layers.\1.gamma\2'),
    (r'ln1\.(weight|bias)', r'norm.\1'),
    (r'ln2\.(weight|bias)', r'fc_norm.\1'),
]

HEAD_RULES: List[Rule] = [
    (r'head\.fc\.(weight|bias)', r'cls_head.fc.\1'),  # LinearClsHead
    (r'head\.cls_head\.(weight|bias)', rf'mim_head.{MIM_HEAD_LINEAR}.\1'),  # BEiTV1Head
    (r'data_preprocessor\..+', None),  # normalisation constants, rebuilt from the config
]

RULES: List[Rule] = prefix_rules(BACKBONE_RULES, 'backbone.', 'backbone.') + HEAD_RULES
BARE_RULES: List[Rule] = prefix_rules(BACKBONE_RULES, '', 'backbone.')


def is_openmmlab_layout(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """Keys like ``layers.0.ln1.weight`` / ``layers.0.ffn.layers.0.0.weight``."""
    return any(
        ('layers.0.ln1.' in k or 'layers.0.ffn.layers.0.0.' in k) and k.split('layers.0.')[0] in (
            '', 'backbone.') for k in state_dict)


def matches(state_dict: Mapping[str, torch.Tensor], wrapper=None) -> bool:
    # mmseg's whole models and beit2mmseg files are told apart in mmseg.matches,
    # which runs first; a bare OpenMMLab backbone is reported as mmpretrain.
    return is_openmmlab_layout(state_dict)


def convert_target_generator(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """``target_generator.*`` in OpenAI's DALL-E names -> ``target_generator.*`` in ours."""
    part = strip_prefix(state_dict, 'target_generator.')
    if not part:
        return OrderedDict()
    if all(k.startswith('blocks.') for k in part):
        part = dalle.convert_dall_e(part)
    return add_prefix(part, 'target_generator.')


def convert(state_dict: Mapping[str, torch.Tensor], fmt: str = NAME) -> StateDict:
    """mmpretrain state dict (whole model or bare backbone) -> mmbeit's canonical layout."""
    rest = OrderedDict(
        (k, v) for k, v in state_dict.items() if not k.startswith('target_generator.'))
    if any(k.startswith('backbone.') for k in rest):
        out = apply_rules(rest, RULES, fmt)
    else:
        out = apply_rules(rest, BARE_RULES, fmt)
    out.update(convert_target_generator(state_dict))
    return out
