"""Stage 2 of loading, *detect*: which format a state dict is in.

Every format is a module with ``NAME``, its rule tables, ``matches(state_dict,
wrapper) -> bool`` and ``convert(state_dict) -> canonical`` (:mod:`.layout`).
They are tried in :data:`FORMATS` order; the first that matches wins.
"""
from collections import OrderedDict
from types import ModuleType
from typing import Any, Mapping, Optional

import torch

from . import dalle, mmpretrain, mmseg, native, timm, transformers, unilm
from .read import unwrap_checkpoint
from .rules import first_keys

__all__ = [
    'FORMATS', 'FORMAT_DESCRIPTIONS', 'FORMAT_MODULES', 'detect_format', 'detect_state_dict_format',
    'check_format', 'format_module', 'unknown_format_error'
]

# name -> converter module, in detection order (transformers' and mmbeit's own keys are
# the most specific; mmseg before mmpretrain, unilm before timm: they share names)
FORMAT_MODULES: 'OrderedDict[str, ModuleType]' = OrderedDict([
    ('transformers', transformers),
    ('mmbeit', native),
    ('mmseg', mmseg),
    ('mmpretrain', mmpretrain),
    ('unilm', unilm),
    ('timm', timm),
    ('dalle', dalle),
])
FORMATS = tuple(FORMAT_MODULES)
FORMAT_DESCRIPTIONS = {
    'mmbeit':
    "mmbeit's own (backbone.layers.0.attn.qkv.weight, ...)",
    'unilm':
    'microsoft/unilm BEiT, pretrained or fine-tuned (blocks.0.attn.qkv.weight in '
    '{"model": ...})',
    'timm':
    "timm's beit_* (blocks.0.attn.qkv.weight, gamma_1, head)",
    'transformers':
    'Hugging Face BeitModel / BeitFor* (beit.encoder.layer.0.attention.attention.'
    'query...), .bin, .safetensors or a model folder',
    'mmpretrain':
    'mmpretrain / mmselfsup 1.x (backbone.layers.0.ffn.layers.0.0.weight, head.fc, '
    'head.cls_head)',
    'mmseg':
    'mmsegmentation 1.x UperNet-BEiT or beit2mmseg.py output (neck.upsample_4x, '
    'decode_head)',
    'dalle':
    "the DALL-E tokenizer: OpenAI dall_e.Encoder or OpenMMLab's dalle_encoder.pth "
    '(blocks.input.w)',
}


def format_module(fmt: str) -> ModuleType:
    """The converter module of format ``fmt``."""
    return FORMAT_MODULES[check_format(fmt)]


def check_format(fmt: str) -> str:
    if fmt not in FORMAT_MODULES:
        raise ValueError(f'unknown checkpoint format {fmt!r}; choose one of {FORMATS} or None '
                         '(detect it)')
    return fmt


def unknown_format_error(state_dict: Mapping[str, Any]) -> ValueError:
    known = '\n'.join(f'  {name}: {desc}' for name, desc in FORMAT_DESCRIPTIONS.items())
    return ValueError(f'cannot tell the format of this checkpoint (its first keys are '
                      f'{first_keys(state_dict)}); mmbeit reads these formats:\n{known}')


def detect_state_dict_format(state_dict: Mapping[str, torch.Tensor],
                             wrapper: Optional[str] = None) -> str:
    """:func:`detect_format` of an unwrapped state dict."""
    for fmt, module in FORMAT_MODULES.items():
        if module.matches(state_dict, wrapper):
            return fmt
    raise unknown_format_error(state_dict)


def detect_format(checkpoint: Any) -> str:
    """The format of a loaded checkpoint: one of :data:`FORMATS`.

    Args:
        checkpoint: a state dict or a loaded checkpoint file (``{'state_dict': ...}``,
            ``{'model': ...}`` wrappers are looked through), or an ``nn.Module``.

    Raises:
        ValueError: an unknown format; the message lists the known ones.
    """
    state_dict, wrapper = unwrap_checkpoint(checkpoint)
    return detect_state_dict_format(state_dict, wrapper)
