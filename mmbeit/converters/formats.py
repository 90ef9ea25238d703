"""Which format a checkpoint is in, and its conversion to mmbeit's layout.

Formats are tried in :data:`FORMATS` order; each converter module has
``matches(state_dict, wrapper) -> bool`` and ``convert(state_dict) -> canonical``
(see :mod:`.layout` for the canonical layout).
"""
import importlib
from collections import OrderedDict
from typing import Any, Mapping, Optional, Tuple

import torch

from .layout import TARGETS, assemble
from .rules import StateDict, add_prefix, first_keys, strip_prefix, unwrap_checkpoint

# name -> module (relative to this package); detection order
_MODULES = OrderedDict([
    ('transformers', '.transformers'),
    ('mmbeit', '.native'),
    ('mmseg', '.mmseg'),
    ('mmpretrain', '.mmpretrain'),
    ('unilm', '.unilm'),
    ('timm', '.timm'),
    ('dalle', None),  # OpenAI dall_e.Encoder / OpenMMLab dalle_encoder.pth, see below
])
FORMATS = tuple(_MODULES)
FORMAT_DESCRIPTIONS = {
    'mmbeit': "mmbeit's own (backbone.layers.0.attn.qkv.weight, ...)",
    'unilm': 'microsoft/unilm BEiT, pretrained or fine-tuned (blocks.0.attn.qkv.weight in {"model": ...})',
    'timm': "timm's beit_* (blocks.0.attn.qkv.weight, gamma_1, head)",
    'transformers': 'Hugging Face BeitModel / BeitFor* (beit.encoder.layer.0.attention.attention.query...), '
                    '.bin, .safetensors or a model folder',
    'mmpretrain': 'mmpretrain / mmselfsup 1.x (backbone.layers.0.ffn.layers.0.0.weight, head.fc, '
                  'head.cls_head)',
    'mmseg': 'mmsegmentation 1.x UperNet-BEiT or beit2mmseg.py output (neck.upsample_4x, decode_head)',
    'dalle': "the DALL-E tokenizer: OpenAI dall_e.Encoder or OpenMMLab's dalle_encoder.pth (blocks.input.w)",
}


def _module(fmt: str):
    return importlib.import_module(_MODULES[fmt], __package__)


def _dalle_part(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    if state_dict and all(k.startswith('target_generator.') for k in state_dict):
        return strip_prefix(state_dict, 'target_generator.')
    return OrderedDict(state_dict)


def _is_dalle(state_dict: Mapping[str, torch.Tensor]) -> bool:
    part = _dalle_part(state_dict)
    return bool(part) and all(k.startswith('blocks.') and not k[len('blocks.'):][:1].isdigit()
                              for k in part)


def _convert_dalle(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    from .dalle import convert_dall_e
    return add_prefix(convert_dall_e(_dalle_part(state_dict)), 'target_generator.')


def unknown_format_error(state_dict: Mapping[str, Any]) -> ValueError:
    known = '\n'.join(f'  {name}: {desc}' for name, desc in FORMAT_DESCRIPTIONS.items())
    return ValueError(f'cannot tell the format of this checkpoint (its first keys are '
                      f'{first_keys(state_dict)}); mmbeit reads these formats:\n{known}')


def detect_state_dict_format(state_dict: Mapping[str, torch.Tensor], wrapper: Optional[str] = None) -> str:
    """:func:`detect_format` of an unwrapped state dict."""
    for fmt in FORMATS:
        if fmt == 'dalle':
            if _is_dalle(state_dict):
                return fmt
        elif _module(fmt).matches(state_dict, wrapper):
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


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise ValueError(f'unknown checkpoint format {fmt!r}; choose one of {FORMATS} or None '
                         '(detect it)')
    return fmt


def to_canonical(checkpoint: Any, fmt: Optional[str] = None) -> Tuple[StateDict, str]:
    """(canonical state dict with role prefixes, the format it was read as)."""
    state_dict, wrapper = unwrap_checkpoint(checkpoint)
    return canonical_state_dict(state_dict, fmt, wrapper)


def canonical_state_dict(state_dict: Mapping[str, torch.Tensor], fmt: Optional[str] = None,
                         wrapper: Optional[str] = None) -> Tuple[StateDict, str]:
    """:func:`to_canonical` of an unwrapped state dict."""
    fmt = check_format(fmt) if fmt is not None else detect_state_dict_format(state_dict, wrapper)
    if fmt == 'dalle':
        return _convert_dalle(state_dict), fmt
    return _module(fmt).convert(state_dict), fmt


def convert_checkpoint(checkpoint: Any, fmt: Optional[str] = None,
                       target: Optional[str] = 'classifier') -> StateDict:
    """Convert a checkpoint of any known format to mmbeit's keys for ``target``.

    Args:
        checkpoint: a loaded checkpoint or state dict (see :func:`detect_format`).
        fmt: its format (one of :data:`FORMATS`), or None to detect it.
        target: the model it is for: 'backbone' (a bare ``mmbeit.BEiT``),
            'classifier' (``ImageClassifier``: ``backbone.*``, ``head.fc.*``),
            'segmentor' (``EncoderDecoder``: ``backbone.*``, ``neck.*``, ``decode_head.*``,
            ``auxiliary_head.*``), 'pretrain' (``BEiTPretrain``: ``backbone.*``, ``head.*``,
            ``target_generator.*``), 'target_generator' (a bare ``DALLEEncoder``), or None
            for the canonical layout with role prefixes (:mod:`.layout`). Parts of the
            checkpoint the target has no place for are left out.

    Returns:
        The converted state dict (tensors shared with the input).
    """
    canonical, _ = to_canonical(checkpoint, fmt)
    if target is None:
        return canonical
    if target not in TARGETS:
        raise ValueError(f'unknown target {target!r}; choose one of {TARGETS} or None')
    return assemble(canonical, target)[0]
