"""mmbeit's key layouts: what every converter produces, and how a task's model names it.

Every source converter produces one *canonical* state dict whose keys start
with a role prefix:

==================  ==========================================================
``backbone.``       :class:`mmbeit.models.backbones.BEiT` (``cls_token``,
                    ``layers.{i}.attn.qkv.weight``, ``rel_pos_bias.table``, ...)
``cls_head.``       the linear classifier (``fc.weight``, ``fc.bias``)
``mim_head.``       the masked-image-modeling head: a linear layer to the codebook
``neck.``           the segmentation neck (mmseg's ``Feature2Pyramid``:
                    ``upsample_4x.{0,1,3}``, ``upsample_2x.0``)
``decode_head.``    mmseg's ``UPerHead``
``auxiliary_head.`` mmseg's ``FCNHead``
``target_generator.`` the DALL-E tokenizer (mmbeit's ``DALLEEncoder`` keys)
==================  ==========================================================

A *target* says which roles a model holds and under which prefix
(:data:`TARGET_LAYOUTS`): mmpretrain's ``ImageClassifier`` keeps the classifier
under ``head.`` (``head.fc.weight``), mmbeit's ``BEiTPretrain`` keeps the
masked-image-modeling head under ``head.`` too, mmseg's ``EncoderDecoder`` has
``neck.``, ``decode_head.``, ``auxiliary_head.``.
"""
from collections import OrderedDict
from typing import Dict, Iterable, List, Mapping, Tuple

import torch

__all__ = [
    'ROLES', 'TARGETS', 'TARGET_LAYOUTS', 'MIM_HEAD_LINEAR', 'ROLE_NAMES', 'default_target',
    'assemble', 'infer_target', 'split_roles'
]

ROLES = ('backbone.', 'cls_head.', 'mim_head.', 'neck.', 'decode_head.', 'auxiliary_head.',
         'target_generator.')

# The masked-image-modeling head's linear layer inside mmbeit's BEiTPretrain head
# (mmbeit/models/heads/beit_mim_head.py): ``head.<MIM_HEAD_LINEAR>.weight``.
MIM_HEAD_LINEAR = 'fc'

ROLE_NAMES = {
    'backbone.': 'BEiT backbone',
    'cls_head.': 'classification head',
    'mim_head.': 'masked-image-modeling head',
    'neck.': 'segmentation neck',
    'decode_head.': 'decode head (UPerHead)',
    'auxiliary_head.': 'auxiliary head (FCNHead)',
    'target_generator.': 'DALL-E tokenizer',
}

# target -> {role prefix: prefix in the target model's state dict}
TARGET_LAYOUTS: Dict[str, Dict[str, str]] = {
    'backbone': {
        'backbone.': ''
    },
    'classifier': {
        'backbone.': 'backbone.',
        'cls_head.': 'head.'
    },
    'segmentor': {
        'backbone.': 'backbone.',
        'neck.': 'neck.',
        'decode_head.': 'decode_head.',
        'auxiliary_head.': 'auxiliary_head.'
    },
    'pretrain': {
        'backbone.': 'backbone.',
        'mim_head.': 'head.',
        'target_generator.': 'target_generator.'
    },
    'target_generator': {
        'target_generator.': ''
    },
}
TARGETS = tuple(TARGET_LAYOUTS)


def split_roles(canonical: Mapping[str, torch.Tensor]) -> Dict[str, Dict[str, torch.Tensor]]:
    """Canonical state dict -> {role prefix: {key inside the role: tensor}}."""
    parts: Dict[str, Dict[str, torch.Tensor]] = OrderedDict()
    for key, value in canonical.items():
        role = next((r for r in ROLES if key.startswith(r)), None)
        if role is None:
            raise ValueError(f'canonical key {key!r} has no role prefix {ROLES}')
        parts.setdefault(role, OrderedDict())[key[len(role):]] = value
    return parts


def assemble(canonical: Mapping[str, torch.Tensor],
             target: str) -> Tuple['OrderedDict[str, torch.Tensor]', List[str]]:
    """Name the canonical state dict's roles as ``target``'s model does.

    Returns:
        (the target model's state dict, the roles the target has no place for)
    """
    if target not in TARGET_LAYOUTS:
        raise ValueError(f'unknown target {target!r}; choose one of {TARGETS}')
    layout = TARGET_LAYOUTS[target]
    out: 'OrderedDict[str, torch.Tensor]' = OrderedDict()
    left_out = []
    for role, part in split_roles(canonical).items():
        if role not in layout:
            left_out.append(role)
            continue
        for k, v in part.items():
            out[layout[role] + k] = v
    return out, left_out


def infer_target(model_keys: Iterable[str]) -> str:
    """Which target a model is, from the keys of its state dict."""
    keys = list(model_keys)
    if any(k.startswith('decode_head.') for k in keys):
        return 'segmentor'
    if any(k.startswith('target_generator.') for k in keys):
        return 'pretrain'
    if any(k.startswith('backbone.') for k in keys):
        return 'classifier'
    if keys and any(k.startswith('stem.')
                    for k in keys) and any(k.startswith('stages.') for k in keys):
        return 'target_generator'
    return 'backbone'


def default_target(canonical: Mapping[str, torch.Tensor]) -> str:
    """The task a converted checkpoint is for, from the parts it has."""
    roles = set(split_roles(canonical))
    if roles & {'neck.', 'decode_head.', 'auxiliary_head.'}:
        return 'segmentor'
    if roles & {'mim_head.'}:
        return 'pretrain'
    if 'cls_head.' in roles:
        return 'classifier'
    if roles == {'target_generator.'}:
        return 'target_generator'
    return 'backbone' if roles == {'backbone.'} else 'pretrain'
