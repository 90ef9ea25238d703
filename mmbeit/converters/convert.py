"""Stage 3 of loading, *convert*: any format's keys -> mmbeit's, by the format's rule table.

The engine is :func:`mmbeit.converters.rules.apply_rules`; each format module
holds its tables and says which applies (a whole model or a bare backbone).
The result is mmbeit's *canonical* layout (role prefixes, :mod:`.layout`),
which :func:`convert_checkpoint` names as a target model does.
"""
from typing import Any, Mapping, Optional, Tuple

import torch

from .detect import check_format, detect_state_dict_format, format_module
from .layout import TARGETS, assemble
from .read import unwrap_checkpoint
from .rules import StateDict

__all__ = ['to_canonical', 'canonical_state_dict', 'convert_checkpoint']


def canonical_state_dict(state_dict: Mapping[str, torch.Tensor],
                         fmt: Optional[str] = None,
                         wrapper: Optional[str] = None) -> Tuple[StateDict, str]:
    """(canonical state dict, its format) of an unwrapped state dict; ``fmt`` None detects it."""
    fmt = check_format(fmt) if fmt is not None else detect_state_dict_format(state_dict, wrapper)
    return format_module(fmt).convert(state_dict), fmt


def to_canonical(checkpoint: Any, fmt: Optional[str] = None) -> Tuple[StateDict, str]:
    """(canonical state dict with role prefixes, the format it was read as) of a checkpoint."""
    state_dict, wrapper = unwrap_checkpoint(checkpoint)
    return canonical_state_dict(state_dict, fmt, wrapper)


def convert_checkpoint(checkpoint: Any,
                       fmt: Optional[str] = None,
                       target: Optional[str] = 'classifier') -> StateDict:
    """Convert a checkpoint of any known format to mmbeit's keys for ``target``.

    Args:
        checkpoint: a loaded checkpoint or state dict (see :func:`~.detect.detect_format`).
        fmt: its format (one of :data:`~.detect.FORMATS`), or None to detect it.
        target: the model it is for: 'backbone' (a bare ``mmbeit.BEiT``),
            'classifier' (``ImageClassifier``: ``backbone.*``, ``head.fc.*``),
            'segmentor' (``EncoderDecoder``: ``backbone.*``, ``neck.*``, ``decode_head.*``,
            ``auxiliary_head.*``), 'pretrain' (``BEiTPretrain``: ``backbone.*``, ``head.*``,
            ``target_generator.*``, and ``neck.*`` for BEiT v2), 'target_generator' (a bare
            tokenizer: ``DALLEEncoder`` or ``VQKD``), or None
            for the canonical layout with role prefixes (:mod:`.layout`). Parts of the
            checkpoint the target has no place for are left out.

    Returns:
        The converted state dict (tensors shared with the input). Not fitted to a model:
        loading (:mod:`.load`) fits it (shared tables per layer, resized tables).
    """
    canonical, _ = to_canonical(checkpoint, fmt)
    if target is None:
        return canonical
    if target not in TARGETS:
        raise ValueError(f'unknown target {target!r}; choose one of {TARGETS} or None')
    return assemble(canonical, target)[0]
