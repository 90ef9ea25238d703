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
``'dalle'`` is a format like the others (:mod:`.detect`): wrappers, ``module.``
and whole pretraining checkpoints are looked through by the pipeline
(``convert_checkpoint(checkpoint, target='target_generator')``).
The format's reading quirk is here too: :func:`load_openai_dall_e_pickle` reads
OpenAI's pickled module without running any of its code (and without the
``dall_e`` package); :func:`read` is how :mod:`.read` calls it.
"""
import os.path as osp
import re
from collections import OrderedDict
from typing import Any, List, Mapping, Optional

import torch

from .rules import Rule, StateDict, add_prefix, apply_rules, strip_prefix

__all__ = [
    'NAME', 'DESCRIPTION', 'PRIORITY', 'RULES', 'matches', 'convert', 'convert_dall_e', 'read',
    'is_pickled_module', 'load_openai_dall_e_pickle'
]

NAME = 'dalle'
DESCRIPTION = ("the DALL-E tokenizer: OpenAI dall_e.Encoder or OpenMMLab's dalle_encoder.pth "
               '(blocks.input.w)')
# detection order (lowest first): last, its names share nothing with BEiT's
PRIORITY = 70

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


# ------------------------------------------------------- OpenAI's DALL-E pickle
# The globals in OpenAI's pickled encoder.pkl besides the ones torch's
# weights-only unpickler allows anyway (tensors, OrderedDict, torch.device).
_PICKLED_MODULE_GLOBALS = (
    'dall_e.encoder.Encoder',
    'dall_e.encoder.EncoderBlock',
    'dall_e.utils.Conv2d',
    'torch.nn.modules.activation.ReLU',
    'torch.nn.modules.container.Sequential',
    'torch.nn.modules.linear.Identity',
    'torch.nn.modules.pooling.MaxPool2d',
)


class _PickledModule:
    """Stands in for every module class of a pickled ``nn.Module``.

    The weights-only unpickler builds it from plain data (no code of the
    original class runs); we only read ``_parameters`` and ``_modules``.
    """

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)


def _module_tensors(module: _PickledModule, prefix: str = '') -> StateDict:
    out: StateDict = OrderedDict()
    for name, value in module.__dict__.get('_parameters', {}).items():
        if value is not None:
            out[prefix + name] = value.detach()
    for name, value in module.__dict__.get('_buffers', {}).items():
        if value is not None:
            out[prefix + name] = value
    for name, child in module.__dict__.get('_modules', {}).items():
        out.update(_module_tensors(child, f'{prefix}{name}.'))
    return out


def load_openai_dall_e_pickle(path: str) -> StateDict:
    """Read OpenAI's pickled ``dall_e.Encoder`` (``encoder.pkl``) safely.

    ``torch.load(weights_only=True)`` refuses the file because it pickles
    module objects. We map exactly the module classes it contains to an inert
    stand-in, so nothing from the file runs and ``dall_e`` is not needed.

    Returns:
        The encoder's state dict in OpenAI's layout (``blocks.input.w``, ...).

    Raises:
        ValueError: the file needs a global outside the known module classes.
    """
    try:
        unknown = set(torch.serialization.get_unsafe_globals_in_checkpoint(path)) - set(
            _PICKLED_MODULE_GLOBALS)
    except Exception:  # not a zip checkpoint: let torch.load decide
        unknown = set()
    if unknown:
        raise ValueError(f'{path}: refusing to unpickle globals {sorted(unknown)}; an OpenAI '
                         f'dall_e encoder pickle only needs {list(_PICKLED_MODULE_GLOBALS)}')
    with torch.serialization.safe_globals([(_PickledModule, name)
                                           for name in _PICKLED_MODULE_GLOBALS]):
        obj = torch.load(path, map_location='cpu', weights_only=True)
    if isinstance(obj, _PickledModule):
        return _module_tensors(obj)
    if isinstance(obj, Mapping):
        return OrderedDict(obj)
    raise ValueError(f'{path}: expected a pickled dall_e.Encoder or a state dict, '
                     f'got {type(obj).__name__}')


def is_pickled_module(path: str) -> bool:
    """Whether a local checkpoint pickles module objects (OpenAI's format)."""
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:
        return False
    return any(name in _PICKLED_MODULE_GLOBALS for name in names)


def read(path: str, map_location: Any = 'cpu') -> Optional[StateDict]:
    """The format's reading quirk for :func:`mmbeit.converters.read.read_checkpoint`: the
    state dict of OpenAI's pickled ``encoder.pkl``, or None when ``path`` is not one."""
    if osp.isfile(path) and is_pickled_module(path):
        return load_openai_dall_e_pickle(path)
    return None
