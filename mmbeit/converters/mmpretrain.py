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
(OpenAI's DALL-E names; converted by :mod:`.dalle`). BEiT v2 (``BEiTV2Neck``, ``BEiTV2Head``,
``VQKD``) adds ``neck.patch_aggregation.{i}.*`` (OpenMMLab layer names) and ``neck.norm``
(the v2 neck: ``mim_neck.``), ``head.cls_head`` and ``target_generator.{encoder,
encode_task_layer,quantize}.*`` (converted by :mod:`.vqkd`). The files wrap the weights in
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

# BEiT v2 (``BEiTV2Neck``): the patch-aggregation layers (OpenMMLab's layer names, no per-layer
# table) and the norm shared by both paths; ``BEiTV2Head``'s ``cls_head`` is in HEAD_RULES
MIM_NECK_RULES: List[Rule] = [
    (r'neck\.patch_aggregation\.(\d+)\.ln([12])\.(weight|bias)', r'mim_neck.layers.\1.norm\2.\3'),
    (r'neck\.patch_aggregation\.(\d+)\.attn\.(qkv\.weight|q_bias|v_bias|proj\.weight|proj\.bias)',
     r'mim_neck.layers.\1.attn.\2'),
    (r'neck\.patch_aggregation\.(\d+)\.ffn\.layers\.0\.0\.(weight|bias)',
     r'mim_neck.layers.\1.mlp.fc1.\2'),
    (r'neck\.patch_aggregation\.(\d+)\.ffn\.layers\.1\.(weight|bias)',
     r'mim_neck.layers.\1.mlp.fc2.\2'),
    (r'neck\.patch_aggregation\.(\d+)\.gamma_([12])', r'mim_neck.layers.\1.gamma\2'),
    (r'neck\.norm\.(weight|bias)', r'mim_neck.norm.\1'),
]

RULES: List[Rule] = (
    prefix_rules(BACKBONE_RULES, 'backbone.', 'backbone.') + HEAD_RULES + MIM_NECK_RULES)

# mmpretrain's VQKD (its BEiT v2 target generator; its NormEMAVectorQuantizer names are unilm's
# too): the encoder in OpenMMLab's BEiT names, the task layer and the codebook. Defined here,
# where the OpenMMLab names are, and used by :mod:`.vqkd` for bare VQ-KD files as well.
QUANTIZE_RULES: List[Rule] = [
    (r'quantize\.(embedding\.weight|embedding\.initted|cluster_size)', r'quantize.\1'),
    # EmbeddingEMA's cluster_size / embed_avg: kept by unilm and mmpretrain, never read by the
    # forward (the EMA updates embedding.weight and quantize.cluster_size)
    (r'quantize\.embedding\.(cluster_size|embed_avg)', None),
    (r'encode_task_layer\.([02])\.(weight|bias)', r'encode_task_layer.\1.\2'),
]
VQKD_RULES: List[Rule] = prefix_rules(BACKBONE_RULES, 'encoder.', 'encoder.') + QUANTIZE_RULES
BARE_RULES: List[Rule] = prefix_rules(BACKBONE_RULES, '', 'backbone.')


def is_openmmlab_layout(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """Keys like ``layers.0.ln1.weight`` / ``layers.0.ffn.layers.0.0.weight``."""
    return any(
        ('layers.0.ln1.' in k or 'layers.0.ffn.layers.0.0.' in k) and k.split('layers.0.')[0] in (
            '', 'backbone.') for k in state_dict)


def is_v2_pretrain(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """mmpretrain's BEiT v2 pretraining model (``neck.patch_aggregation.*``): its ``neck.`` is
    not a segmentation neck."""
    return any(k.startswith('neck.patch_aggregation.') for k in state_dict)


def matches(state_dict: Mapping[str, torch.Tensor], wrapper=None) -> bool:
    # mmseg's whole models and beit2mmseg files are told apart in mmseg.matches,
    # which runs first; a bare OpenMMLab backbone is reported as mmpretrain.
    return is_openmmlab_layout(state_dict)


def convert_target_generator(state_dict: Mapping[str, torch.Tensor], fmt: str = NAME) -> StateDict:
    """``target_generator.*`` of mmpretrain's BEiT (v1: OpenAI's DALL-E names; v2: its VQKD) ->
    ``target_generator.*`` in ours (``DALLEEncoder`` / ``VQKD`` keys)."""
    part = strip_prefix(state_dict, 'target_generator.')
    if not part:
        return OrderedDict()
    if all(k.startswith('blocks.') for k in part):
        part = dalle.convert_dall_e(part)
    elif 'quantize.embedding.weight' in part:
        part = apply_rules(part, VQKD_RULES, fmt)
    return add_prefix(part, 'target_generator.')


def convert(state_dict: Mapping[str, torch.Tensor], fmt: str = NAME) -> StateDict:
    """mmpretrain state dict (whole model or bare backbone) -> mmbeit's canonical layout."""
    rest = OrderedDict(
        (k, v) for k, v in state_dict.items() if not k.startswith('target_generator.'))
    if any(k.startswith('backbone.') for k in rest):
        out = apply_rules(rest, RULES, fmt)
    else:
        out = apply_rules(rest, BARE_RULES, fmt)
    out.update(convert_target_generator(state_dict, fmt))
    return out
