"""Stage 2 of loading, *detect*: which format a state dict is in.

Every format is one module (listed in :data:`MODULES`) with ``NAME``,
``DESCRIPTION``, ``PRIORITY``, its rule tables, ``matches(state_dict, wrapper)
-> bool`` and ``convert(state_dict) -> canonical`` (:mod:`.layout`), and its
reading quirks and export where it has them. They are tried in :data:`FORMATS`
order (by ``PRIORITY``); the first that matches wins.
"""
from collections import OrderedDict
from types import ModuleType
from typing import Any, Dict, Mapping, Optional, Tuple

import torch

from . import dalle, mmpretrain, mmseg, native, timm, transformers, unilm, vqkd
from .read import unwrap_checkpoint
from .rules import first_keys

__all__ = [
    'MODULES', 'FORMATS', 'FORMAT_DESCRIPTIONS', 'FORMAT_MODULES', 'detect_format',
    'detect_state_dict_format', 'check_format', 'format_module', 'unknown_format_error'
]

# Every format module, in no particular order: each declares NAME, DESCRIPTION and its
# detection PRIORITY (lowest tried first; the most specific key names first: transformers'
# and mmbeit's own, mmseg before mmpretrain and unilm before timm, as they share names).
MODULES: Tuple[ModuleType,
               ...] = (dalle, mmpretrain, mmseg, native, timm, transformers, unilm, vqkd)

#: name -> converter module, in detection order
FORMAT_MODULES: 'OrderedDict[str, ModuleType]' = OrderedDict(
    (m.NAME, m) for m in sorted(MODULES, key=lambda m: m.PRIORITY))
FORMATS = tuple(FORMAT_MODULES)
#: name -> what its checkpoints look like (for errors and docs)
FORMAT_DESCRIPTIONS: Dict[str, str] = {name: m.DESCRIPTION for name, m in FORMAT_MODULES.items()}


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
