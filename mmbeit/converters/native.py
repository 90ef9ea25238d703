"""mmbeit's own checkpoints: whole models (``backbone.*`` + heads) or a bare BEiT / DALL-E encoder.

Nothing is renamed; the heads are given their role (see :mod:`.layout`). A
``head.*`` is the masked-image-modeling head when the checkpoint is a
pretraining one (it has a tokenizer or a mask token), else the classifier.
"""
import re
from collections import OrderedDict
from typing import Mapping

import torch

from .rules import StateDict

NAME = 'mmbeit'

_BEIT_LAYER = re.compile(
    r'(?:backbone\.)?layers\.\d+\.(?:norm1\.weight|attn\.qkv\.weight|mlp\.fc1\.weight)')
_OPENMMLAB_LAYER = re.compile(r'(?:backbone\.)?layers\.\d+\.(?:ln1|ffn)\.')
_DALLE = re.compile(r'(?:target_generator\.)?(?:(?:stem|head)\.(?:weight|bias)'
                    r'|stages\.\d+\.\d+\.(?:shortcut|conv[1-4])\.(?:weight|bias))')
_PARTS = ('neck.', 'decode_head.', 'auxiliary_head.', 'target_generator.')


def _is_dalle_only(state_dict: Mapping[str, torch.Tensor]) -> bool:
    return bool(state_dict) and all(_DALLE.fullmatch(k) for k in state_dict)


def matches(state_dict: Mapping[str, torch.Tensor], wrapper=None) -> bool:
    has_beit = sum(bool(_BEIT_LAYER.fullmatch(k)) for k in state_dict) >= 2
    openmmlab = any(_OPENMMLAB_LAYER.match(k) for k in state_dict)
    transformers = any('.attention.' in k or 'layernorm_before' in k for k in state_dict)
    return (has_beit and not openmmlab and not transformers) or _is_dalle_only(state_dict)


def convert(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """mmbeit state dict -> canonical layout (role prefixes, nothing renamed)."""
    out: StateDict = OrderedDict()
    if _is_dalle_only(state_dict):
        for k, v in state_dict.items():
            out[k if k.startswith('target_generator.') else 'target_generator.' + k] = v
        return out
    if not any(k.startswith('backbone.') for k in state_dict):
        return OrderedDict(('backbone.' + k, v) for k, v in state_dict.items())
    pretrain = 'backbone.mask_token' in state_dict or any(
        k.startswith('target_generator.') for k in state_dict)
    unknown = []
    for k, v in state_dict.items():
        if k.startswith(('backbone.', ) + _PARTS):
            out[k] = v
        elif k.startswith('head.'):
            out[('mim_head.' if pretrain else 'cls_head.') + k[len('head.'):]] = v
        elif k.startswith('data_preprocessor.'):
            continue
        else:
            unknown.append(k)
    if unknown:
        raise KeyError(f'mmbeit checkpoint: keys outside backbone/head/neck/decode_head/'
                       f'auxiliary_head/target_generator: {unknown[:10]}')
    return out
