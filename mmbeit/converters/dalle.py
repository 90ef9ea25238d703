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

The converters are pure ``state_dict -> state_dict`` functions driven by a
table of regex rules. :func:`load_openai_dall_e_pickle` reads OpenAI's pickled
module without running any of its code (and without the ``dall_e`` package).
"""
import re
from collections import OrderedDict
from typing import Any, Dict, List, Mapping, Tuple

import torch

__all__ = [
    'DALL_E_RULES', 'convert_dall_e', 'convert_openmmlab_dalle',
    'convert_dalle_checkpoint', 'detect_dalle_format',
    'is_pickled_module', 'load_openai_dall_e_pickle',
    'load_dalle_checkpoint_file'
]

StateDict = Dict[str, torch.Tensor]

_WB = {'w': 'weight', 'b': 'bias'}


def _group_block(m: 're.Match') -> Tuple[int, int]:
    # OpenAI numbers groups and blocks from 1, we number them from 0.
    return int(m.group('g')) - 1, int(m.group('b')) - 1


# (pattern on the OpenAI key, function of the match -> mmbeit key)
DALL_E_RULES: List[Tuple['re.Pattern', Any]] = [
    (re.compile(r'^blocks\.input\.(?P<p>[wb])$'),
     lambda m: f'stem.{_WB[m["p"]]}'),
    (re.compile(r'^blocks\.group_(?P<g>\d+)\.block_(?P<b>\d+)'
                r'\.id_path\.(?P<p>[wb])$'),
     lambda m: 'stages.{}.{}.shortcut.{}'.format(*_group_block(m),
                                                 _WB[m['p']])),
    (re.compile(r'^blocks\.group_(?P<g>\d+)\.block_(?P<b>\d+)'
                r'\.res_path\.conv_(?P<k>[1-4])\.(?P<p>[wb])$'),
     lambda m: 'stages.{}.{}.conv{}.{}'.format(*_group_block(m), m['k'],
                                               _WB[m['p']])),
    (re.compile(r'^blocks\.output\.conv\.(?P<p>[wb])$'),
     lambda m: f'head.{_WB[m["p"]]}'),
]

_OURS = re.compile(r'^(stem|head)\.(weight|bias)$|^stages\.\d+\.\d+\.'
                   r'(shortcut|conv[1-4])\.(weight|bias)$')


def convert_dall_e(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """Convert the ``state_dict()`` of OpenAI's ``dall_e.Encoder`` to ours.

    Args:
        state_dict: OpenAI's keys (``blocks.input.w``, ...).

    Returns:
        An ordered dict with mmbeit's keys; tensors are shared, not copied.

    Raises:
        KeyError: a key that no rule knows, naming it.
    """
    out: StateDict = OrderedDict()
    for key, value in state_dict.items():
        for pattern, rename in DALL_E_RULES:
            m = pattern.match(key)
            if m:
                out[rename(m)] = value
                break
        else:
            raise KeyError(
                f'convert_dall_e: unknown key {key!r}; expected OpenAI '
                "dall_e.Encoder keys such as 'blocks.input.w', "
                "'blocks.group_1.block_1.res_path.conv_1.w', "
                "'blocks.output.conv.b'")
    return out


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
    state_dict = _strip_prefix(state_dict, 'module.')
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
    raise ValueError(
        'Not a DALL-E encoder checkpoint: expected mmbeit keys '
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


def _strip_prefix(state_dict: Mapping[str, Any], prefix: str) -> dict:
    return {(k[len(prefix):] if k.startswith(prefix) else k): v
            for k, v in state_dict.items()}


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

    Args:
        path: a local file.

    Returns:
        The encoder's state dict in OpenAI's layout (``blocks.input.w``, ...);
        pass it to :func:`convert_dall_e`.

    Raises:
        ValueError: the file needs a global outside the known module classes.
    """
    try:
        unknown = set(torch.serialization.get_unsafe_globals_in_checkpoint(
            path)) - set(_PICKLED_MODULE_GLOBALS)
    except Exception:  # not a zip checkpoint: let torch.load decide
        unknown = set()
    if unknown:
        raise ValueError(
            f'{path}: refusing to unpickle globals {sorted(unknown)}; an '
            f'OpenAI dall_e encoder pickle only needs '
            f'{list(_PICKLED_MODULE_GLOBALS)}')
    with torch.serialization.safe_globals([(_PickledModule, name)
                                           for name in _PICKLED_MODULE_GLOBALS
                                           ]):
        obj = torch.load(path, map_location='cpu', weights_only=True)
    if isinstance(obj, _PickledModule):
        return _module_tensors(obj)
    if isinstance(obj, Mapping):
        return OrderedDict(obj)
    raise ValueError(f'{path}: expected a pickled dall_e.Encoder or a state '
                     f'dict, got {type(obj).__name__}')


def is_pickled_module(path: str) -> bool:
    """Whether a local checkpoint pickles module objects (OpenAI's format)."""
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:
        return False
    return any(name in _PICKLED_MODULE_GLOBALS for name in names)


def load_dalle_checkpoint_file(path_or_url: str) -> Any:
    """Load a DALL-E encoder checkpoint file without running code from it.

    Goes through mmbeit's one reading path
    (:func:`mmbeit.converters.loading.read_checkpoint`): URLs are downloaded
    once into mmbeit's cache, OpenAI's pickled ``encoder.pkl`` is read by
    :func:`load_openai_dall_e_pickle`, anything else by the safe loader.

    Returns:
        The loaded object; pass it to :func:`convert_dalle_checkpoint`.
    """
    from .loading import read_checkpoint
    return read_checkpoint(path_or_url)
