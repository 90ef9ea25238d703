"""mmbeit's own checkpoints: whole models (``backbone.*`` + heads), a bare BEiT or a bare tokenizer.

Nothing is renamed; the parts are given their role (see :mod:`.layout`). The
checkpoint is a pretraining one (``BEiTPretrain``) when it has a tokenizer
(``target_generator.*``) or BEiT v2's patch-aggregation neck (``neck.layers.*``):
then ``head.*`` is the masked-image-modeling head and ``neck.*`` the v2 neck;
else ``neck.*`` is the segmentation neck and ``head.*`` keeps the ``head.`` role,
the head of whatever model it loads into (a classifier's or a pretraining
model's without its tokenizer). A mask token says nothing: classifiers may have
one. A bare tokenizer is mmbeit's ``DALLEEncoder`` (``stem.*``, ``stages.*``,
``head.*``) or ``VQKD`` (``encoder.*`` in mmbeit's BEiT names,
``encode_task_layer.*``, ``quantize.*``).
"""
import re
from collections import OrderedDict
from typing import Mapping

import torch

from .rules import StateDict

NAME = 'mmbeit'
DESCRIPTION = ("mmbeit's own (backbone.layers.0.attn.qkv.weight, ...), or a bare DALLEEncoder / "
               'VQKD tokenizer')
# detection order (lowest first): after transformers', whose names are more specific
PRIORITY = 20

_BEIT_LAYER = re.compile(
    r'(?:backbone\.)?layers\.\d+\.(?:norm1\.weight|attn\.qkv\.weight|mlp\.fc1\.weight)')
_OPENMMLAB_LAYER = re.compile(r'(?:backbone\.)?layers\.\d+\.(?:ln1|ffn)\.')
_DALLE = re.compile(r'(?:target_generator\.)?(?:(?:stem|head)\.(?:weight|bias)'
                    r'|stages\.\d+\.\d+\.(?:shortcut|conv[1-4])\.(?:weight|bias))')
_VQKD = re.compile(r'(?:target_generator\.)?(?:encoder\.(?:cls_token|pos_embed'
                   r'|patch_embed\.proj\.(?:weight|bias)|(?:fc_)?norm\.(?:weight|bias)'
                   r'|layers\.\d+\.(?:norm[12]\.(?:weight|bias)|attn\.(?:qkv\.weight|q_bias|v_bias'
                   r'|proj\.(?:weight|bias))|mlp\.fc[12]\.(?:weight|bias)))'
                   r'|encode_task_layer\.\d+\.(?:weight|bias)|quantize\.[\w.]+)')
_PARTS = ('decode_head.', 'auxiliary_head.', 'target_generator.')


def _is_tokenizer_only(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """A bare DALLEEncoder or VQKD, optionally under ``target_generator.``."""
    if not state_dict:
        return False
    if all(_DALLE.fullmatch(k) for k in state_dict):
        return True
    has_codebook = any(k.endswith('quantize.embedding.weight') for k in state_dict)
    return has_codebook and all(_VQKD.fullmatch(k) for k in state_dict)


def matches(state_dict: Mapping[str, torch.Tensor], wrapper=None) -> bool:
    has_beit = sum(bool(_BEIT_LAYER.fullmatch(k)) for k in state_dict) >= 2
    openmmlab = any(_OPENMMLAB_LAYER.match(k) for k in state_dict)
    transformers = any('.attention.' in k or 'layernorm_before' in k for k in state_dict)
    return (has_beit and not openmmlab and not transformers) or _is_tokenizer_only(state_dict)


def convert(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """mmbeit state dict -> canonical layout (role prefixes, nothing renamed)."""
    out: StateDict = OrderedDict()
    if _is_tokenizer_only(state_dict):
        for k, v in state_dict.items():
            out[k if k.startswith('target_generator.') else 'target_generator.' + k] = v
        return out
    if not any(k.startswith('backbone.') for k in state_dict):
        return OrderedDict(('backbone.' + k, v) for k, v in state_dict.items())
    pretrain = any(k.startswith(('target_generator.', 'neck.layers.')) for k in state_dict)
    unknown = []
    for k, v in state_dict.items():
        if k.startswith(('backbone.', ) + _PARTS):
            out[k] = v
        elif k.startswith('head.'):
            out[('mim_' if pretrain else '') + k] = v  # 'head.': the target decides
        elif k.startswith('neck.'):
            out[('mim_' if pretrain else '') + k] = v
        elif k.startswith('data_preprocessor.'):
            continue
        else:
            unknown.append(k)
    if unknown:
        raise KeyError(f'mmbeit checkpoint: keys outside backbone/head/neck/decode_head/'
                       f'auxiliary_head/target_generator: {unknown[:10]}')
    return out
