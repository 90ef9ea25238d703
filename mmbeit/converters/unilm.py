"""The original BEiT checkpoints (microsoft/unilm ``beit/``, and ``beit2/``'s fine-tuned ones).

Pretraining (``modeling_pretrain.py``, e.g. ``beit_base_patch16_224_pt22k.pth``)::

    cls_token, mask_token, [pos_embed], patch_embed.proj.{weight,bias},
    rel_pos_bias.relative_position_bias_table (shared), rel_pos_bias.relative_position_index,
    blocks.{i}.norm1, blocks.{i}.attn.{qkv.weight,q_bias,v_bias,proj}, blocks.{i}.gamma_1,
    blocks.{i}.norm2, blocks.{i}.mlp.fc1, blocks.{i}.mlp.fc2, blocks.{i}.gamma_2,
    norm, lm_head

BEiT v2 pretraining (``beit2/modeling_pretrain.py``, e.g. ``beitv2_base_patch16_224_pt1k.pth``)
adds the patch-aggregation layers ``cls_pt_layers.{i}.*`` (the v2 neck's layers); its ``norm``
is the neck's norm, shared by both paths, and ``lm_head`` the shared head.

Fine-tuning (``modeling_finetune.py``, e.g. ``..._pt22k_ft22kto1k.pth``): per-layer
``blocks.{i}.attn.relative_position_bias_table`` (+ ``relative_position_index``),
``fc_norm`` (mean pooling; then no ``norm``) and ``head``. The files wrap the
weights in ``{'model': ...}`` (some in ``{'module': ...}``). BEiT v2's fine-tuned files
(``beit2/modeling_finetune.py``, e.g. ``beitv2_base_patch16_224_pt1k_ft21kto1k.pth``) have
exactly these names: the same rules load them.

Semantic segmentation (``semantic_segmentation/``, mmcv 0.x, ``{'state_dict': ...}``):
the backbone under ``backbone.`` with its FPN (``backbone.fpn1.{0,1,3}``,
``backbone.fpn2.0``), mmseg's ``decode_head.*`` and ``auxiliary_head.*``.

timm's ``beit`` models use the same names (see :mod:`.timm`).
"""
from typing import List, Mapping

import torch

from .layout import MIM_HEAD_LINEAR
from .rules import Rule, StateDict, apply_rules, prefix_rules

NAME = 'unilm'
DESCRIPTION = ('microsoft/unilm BEiT, pretrained or fine-tuned (blocks.0.attn.qkv.weight in '
               '{"model": ...})')
# detection order (lowest first): before timm: both have unilm's names; unilm's files are wrapped
PRIORITY = 50

# keys of timm/unilm's VisionTransformer (no prefix) -> mmbeit BEiT keys
BACKBONE_RULES: List[Rule] = [
    (r'(cls_token|mask_token|pos_embed)', r'\1'),
    (r'patch_embed\.proj\.(weight|bias)', r'patch_embed.proj.\1'),
    (r'rel_pos_bias\.relative_position_bias_table', 'rel_pos_bias.table'),
    (r'rel_pos_bias\.relative_position_index', None),  # a buffer we rebuild
    (r'blocks\.(\d+)\.norm([12])\.(weight|bias)', r'layers.\1.norm\2.\3'),
    (r'blocks\.(\d+)\.attn\.(qkv\.weight|q_bias|v_bias|proj\.weight|proj\.bias)',
     r'layers.\1.attn.\2'),
    (r'blocks\.(\d+)\.attn\.relative_position_bias_table', r'layers.\1.attn.rel_pos_bias.table'),
    (r'blocks\.(\d+)\.attn\.(relative_position_index|k_bias)', None),  # buffers
    (r'blocks\.(\d+)\.gamma_([12])', r'layers.\1.gamma\2'),
    (r'blocks\.(\d+)\.mlp\.(fc[12])\.(weight|bias)', r'layers.\1.mlp.\2.\3'),
    (r'(norm|fc_norm)\.(weight|bias)', r'\1.\2'),
]

HEAD_RULES: List[Rule] = [
    (r'head\.(weight|bias)', r'cls_head.fc.\1'),
    (r'lm_head\.(weight|bias)', rf'mim_head.{MIM_HEAD_LINEAR}.\1'),
]

# unilm's segmentation FPN (inside its backbone) -> mmseg Feature2Pyramid
FPN_RULES: List[Rule] = [
    (r'fpn1\.([013])\.(.+)', r'neck.upsample_4x.\1.\2'),
    (r'fpn2\.0\.(.+)', r'neck.upsample_2x.0.\1'),
]

SEG_HEAD_RULES: List[Rule] = [
    (r'(decode_head|auxiliary_head)\.(.+)', r'\1.\2'),
]

# BEiT v2 pretraining (beit2/modeling_pretrain.py VisionTransformerForMaskedImageModelingCLS,
# e.g. beitv2_base_patch16_224_pt1k.pth): the patch-aggregation layers ``cls_pt_layers.{i}``
# (unilm's Block, no per-layer table) are the v2 neck's layers, and ``norm``, shared by the
# last layer's tokens and the aggregated ones, is the neck's norm (the backbone has none)
CLS_PT_RULES: List[Rule] = [
    (r'norm\.(weight|bias)', r'mim_neck.norm.\1'),
    (r'cls_pt_layers\.(\d+)\.norm([12])\.(weight|bias)', r'mim_neck.layers.\1.norm\2.\3'),
    (r'cls_pt_layers\.(\d+)\.attn\.(qkv\.weight|q_bias|v_bias|proj\.weight|proj\.bias)',
     r'mim_neck.layers.\1.attn.\2'),
    (r'cls_pt_layers\.(\d+)\.attn\.k_bias', None),  # a zero buffer
    (r'cls_pt_layers\.(\d+)\.gamma_([12])', r'mim_neck.layers.\1.gamma\2'),
    (r'cls_pt_layers\.(\d+)\.mlp\.(fc[12])\.(weight|bias)', r'mim_neck.layers.\1.mlp.\2.\3'),
]

RULES: List[Rule] = prefix_rules(BACKBONE_RULES, '', 'backbone.') + HEAD_RULES
V2_PRETRAIN_RULES: List[Rule] = CLS_PT_RULES + RULES
SEG_RULES: List[Rule] = (
    prefix_rules(BACKBONE_RULES, 'backbone.', 'backbone.') +
    prefix_rules(FPN_RULES, 'backbone.', '') + SEG_HEAD_RULES)


def matches(state_dict: Mapping[str, torch.Tensor], wrapper=None) -> bool:
    """unilm and timm share key names; unilm files are wrapped or keep their index buffers."""
    if not is_unilm_layout(state_dict):
        return False
    return (wrapper in ('model', 'module', 'state_dict') or any(
        k.endswith('relative_position_index') or k.startswith(('lm_head.',
                                                               'backbone.')) or k == 'mask_token'
        for k in state_dict))


def is_unilm_layout(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """Keys like ``blocks.0.attn.qkv.weight`` (optionally under ``backbone.``)."""
    return any(
        k.startswith(('blocks.', 'backbone.blocks.')) and '.attn.qkv.weight' in k
        for k in state_dict)


def convert(state_dict: Mapping[str, torch.Tensor], fmt: str = NAME) -> StateDict:
    """unilm (or timm) state dict -> mmbeit's canonical layout (see :mod:`.layout`)."""
    if any(k.startswith('backbone.blocks.') for k in state_dict):
        return apply_rules(state_dict, SEG_RULES, fmt)
    if any(k.startswith('cls_pt_layers.') for k in state_dict):  # BEiT v2 pretraining
        return apply_rules(state_dict, V2_PRETRAIN_RULES, fmt)
    return apply_rules(state_dict, RULES, fmt)
