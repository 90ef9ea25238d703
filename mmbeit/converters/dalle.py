"""Checkpoint converters for the DALL-E tokenizer (the dVAE encoder).

Two source formats hold the same weights under the same names:

* OpenAI's ``dall_e.Encoder`` (``encoder.pkl`` is a pickled ``nn.Module``;
  its ``state_dict()`` has keys such as ``blocks.group_1.block_1.res_path.
  conv_1.w``), and
* OpenMMLab's ``dalle_encoder.pth`` (mmpretrain's ``'DALL-E'`` class keeps
  OpenAI's module tree, so the keys are the same, possibly wrapped in
  ``{'state_dict': ...}`` or prefixed with ``module.`` / ``target_generator.``
  when taken from a whole mmpretrain BEiT checkpoint).

mmbeit's :class:`~mmbeit.models.target_generators.DALLEEncoder` uses plain
``nn.Conv2d`` layers (``weight``/``bias``) so that ``channels_last`` and
mixed precision work as for any other convolution::

    stem.{weight,bias}                      7x7 input convolution
    stages.{g}.{b}.shortcut.{weight,bias}   1x1 projection (channels change)
    stages.{g}.{b}.conv{1..4}.{weight,bias} residual path
    head.{weight,bias}                      1x1 convolution to the vocabulary

The converter is a pure ``state_dict -> state_dict`` function over the rule
table :data:`RULES`, through the engine every format shares (:mod:`.rules`), and
``'dalle'`` is a format like the others (:mod:`.detect`).
:func:`load_openai_dall_e_pickle` (in :mod:`.read`) reads OpenAI's pickled
module without running any of its code (and without the ``dall_e`` package).
"""
import re
from collections import OrderedDict
from typing import Any, Dict, List, Mapping

import torch

from .read import is_pickled_module, load_openai_dall_e_pickle, read_checkpoint
from .rules import Rule, StateDict, add_prefix, apply_rules, strip_prefix

__all__ = [
    'NAME', 'RULES', 'DALL_E_RULES', 'matches', 'convert', 'convert_dall_e',
    'convert_openmmlab_dalle', 'convert_dalle_checkpoint', 'detect_dalle_format',
    'is_pickled_module', 'load_openai_dall_e_pickle', 'load_dalle_checkpoint_file'
]

NAME = 'dalle'

_WB = {'w': 'weight', 'b': 'bias'}


def _stage(m: 're.Match') -> str:
    # OpenAI numbers groups and blocks from 1, we number them from 0.
    return f'stages.{int(m["g"]) - 1}.{int(m["b"]) - 1}'


# OpenAI's dall_e.Encoder keys -> mmbeit DALLEEncoder keys (no prefix)
RULES: List[Rule] = [
    (r'blocks\.input\.(?P<p>[wb])', lambda m: f'stem.{_WB[m["p"]]}'),
    (r'blocks\.group_(?P<g>\d+)\.block_(?P<b>\d+)\.id_path\.(?P<p>[wb])',
     lambda m: f'{_stage(m)}.shortcut.{_WB[m["p"]]}'),
    (r'blocks\.group_(?P<g>\d+)\.block_(?P<b>\d+)\.res_path\.conv_(?P<k>[1-4])\.(?P<p>[wb])',
     lambda m: f'{_stage(m)}.conv{m["k"]}.{_WB[m["p"]]}'),
    (r'blocks\.output\.conv\.(?P<p>[wb])', lambda m: f'head.{_WB[m["p"]]}'),
]
# the same table, compiled (``pattern.match(key)``), as older code reads it
DALL_E_RULES = [(re.compile(pattern), repl) for pattern, repl in RULES]

_OURS = re.compile(r'^(stem|head)\.(weight|bias)$|^stages\.\d+\.\d+\.'
                   r'(shortcut|conv[1-4])\.(weight|bias)$')


def convert_dall_e(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """Convert the ``state_dict()`` of OpenAI's ``dall_e.Encoder`` to ours (:data:`RULES`).

    Args:
        state_dict: OpenAI's keys (``blocks.input.w``, ...).

    Returns:
        An ordered dict with mmbeit's keys; tensors are shared, not copied.

    Raises:
        KeyError: keys that no rule knows, naming them.
    """
    return apply_rules(state_dict, RULES, "OpenAI dall_e.Encoder ('blocks.input.w', ...)")


def is_openai_layout(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """OpenAI's names (``blocks.input.w``, ``blocks.group_1...``), optionally under
    ``target_generator.``."""
    part = _own_part(state_dict)
    return bool(part) and all(
        k.startswith('blocks.') and not k[len('blocks.'):][:1].isdigit() for k in part)


def _own_part(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    if state_dict and all(k.startswith('target_generator.') for k in state_dict):
        return strip_prefix(state_dict, 'target_generator.')
    return OrderedDict(state_dict)


def matches(state_dict: Mapping[str, torch.Tensor], wrapper=None) -> bool:
    return is_openai_layout(state_dict)


def convert(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """OpenAI / OpenMMLab DALL-E encoder -> mmbeit's canonical layout (``target_generator.*``)."""
    return add_prefix(convert_dall_e(_own_part(state_dict)), 'target_generator.')


def convert_openmmlab_dalle(checkpoint: Mapping[str, Any]) -> StateDict:
    """Convert OpenMMLab's ``dalle_encoder.pth`` (mmpretrain ``'DALL-E'``).

    Accepts the bare state dict, a ``{'state_dict': ...}`` wrapper, and whole
    mmpretrain BEiT/CAE checkpoints (only ``target_generator.*`` is kept).

    Args:
        checkpoint: the loaded file.

    Returns:
        An ordered dict with mmbeit's keys.
    """
    return convert_dall_e(_unwrap(checkpoint))


def _unwrap(checkpoint: Mapping[str, Any]) -> Dict[str, Any]:
    """The encoder's own keys: no wrapper, no ``module.``, no algorithm."""
    state_dict = checkpoint.get('state_dict', checkpoint)
    state_dict = {
        (k[len('module.'):] if k.startswith('module.') else k): v
        for k, v in state_dict.items()
    }
    if any(k.startswith('target_generator.') for k in state_dict):
        state_dict = {
            k[len('target_generator.'):]: v
            for k, v in state_dict.items() if k.startswith('target_generator.')
        }
    return state_dict


def detect_dalle_format(checkpoint: Mapping[str, Any]) -> str:
    """Say which layout the encoder's keys of a loaded checkpoint have.

    Wrappers (``{'state_dict': ...}``, ``module.``, a whole pretraining
    checkpoint's ``target_generator.``) are looked through.

    Returns:
        ``'mmbeit'`` (``stem.weight``, ...) or ``'dall_e'`` (OpenAI's keys,
        which OpenMMLab's ``dalle_encoder.pth`` shares).

    Raises:
        ValueError: neither; the message lists a few of its keys.
    """
    keys = list(_unwrap(checkpoint).keys())
    if keys and all(_OURS.match(k) for k in keys):
        return 'mmbeit'
    if keys and all(k.startswith('blocks.') for k in keys):
        return 'dall_e'
    raise ValueError('Not a DALL-E encoder checkpoint: expected mmbeit keys '
                     "('stem.weight', 'stages.0.0.conv1.weight', ...) or the keys of "
                     "OpenAI's dall_e.Encoder / OpenMMLab's dalle_encoder.pth "
                     f"('blocks.input.w', ...); got keys {keys[:5]}")


def convert_dalle_checkpoint(checkpoint: Any) -> StateDict:
    """Turn any supported DALL-E encoder checkpoint into mmbeit's layout.

    Args:
        checkpoint: a loaded checkpoint in any layout that
            :func:`detect_dalle_format` accepts, or an ``nn.Module`` (OpenAI's
            ``dall_e.Encoder`` or mmpretrain's ``DALLEEncoder``).
    """
    if isinstance(checkpoint, torch.nn.Module):
        checkpoint = checkpoint.state_dict()
    if detect_dalle_format(checkpoint) == 'mmbeit':
        return OrderedDict(_unwrap(checkpoint))
    return convert_openmmlab_dalle(checkpoint)


def load_dalle_checkpoint_file(path_or_url: str) -> Any:
    """Load a DALL-E encoder checkpoint file without running code from it.

    Goes through mmbeit's one reading path
    (:func:`mmbeit.converters.read.read_checkpoint`): URLs are downloaded
    once into mmbeit's cache, OpenAI's pickled ``encoder.pkl`` is read by
    :func:`load_openai_dall_e_pickle`, anything else by the safe loader.

    Returns:
        The loaded object; pass it to :func:`convert_dalle_checkpoint`.
    """
    return read_checkpoint(path_or_url)
