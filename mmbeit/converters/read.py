"""Stage 1 of loading, *read*: a checkpoint source -> the state dict inside it.

Sources: a local file (``.pth``/``.bin`` read by the weights-only unpickler with
exactly mmengine's safe types allowed, ``.safetensors``), an http(s) URL
(downloaded once into mmbeit's cache), a transformers model folder
(``config.json`` + weights, sharded too), OpenAI's pickled DALL-E
``encoder.pkl`` (read without its code), a loaded checkpoint or state dict,
or an ``nn.Module``. Wrappers (``{'state_dict': ...}``, ``{'model': ...}``,
``module.`` prefixes) are looked through by :func:`unwrap_checkpoint`.

Imports: :mod:`mmbeit.utils.checkpoint_io` and :mod:`.rules` only.
"""
import json
import os
import os.path as osp
from collections import OrderedDict
from typing import Any, Mapping, Optional, Tuple

import torch
import torch.nn as nn

from .rules import StateDict, strip_prefix

__all__ = [
    'WRAPPER_KEYS', 'read_checkpoint', 'unwrap_checkpoint', 'is_transformers_dir',
    'load_transformers_dir', 'is_pickled_module', 'load_openai_dall_e_pickle'
]

# Keys under which training scripts nest the weights: mmengine / mmcv ('state_dict'),
# unilm and DeiT-style scripts ('model', 'module'), a few others ('model_state').
WRAPPER_KEYS = ('state_dict', 'model', 'module', 'model_state')

# a transformers model folder (save_pretrained, the Hub)
WEIGHT_FILES = ('model.safetensors', 'pytorch_model.bin')
INDEX_FILES = ('model.safetensors.index.json', 'pytorch_model.bin.index.json')


def read_checkpoint(source: Any, map_location: Any = 'cpu') -> Any:
    """A loaded checkpoint from a path, URL, transformers model folder, mapping or module.

    Mappings and modules are returned as they are; files are read safely (no code
    from the file runs).
    """
    if isinstance(source, (Mapping, nn.Module)):
        return source
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError('checkpoint must be a path, URL, folder or state dict, '
                        f'got {type(source).__name__}')
    if is_transformers_dir(source):
        return load_transformers_dir(os.fspath(source), map_location)[0]
    if osp.isdir(source):
        raise FileNotFoundError(f'{source} is a folder without config.json; a transformers model '
                                'folder has config.json and model.safetensors or pytorch_model.bin')
    from mmbeit.utils.checkpoint_io import download_checkpoint, is_url, load_checkpoint_file
    path = download_checkpoint(source) if is_url(source) else osp.expanduser(os.fspath(source))
    if osp.isfile(path) and is_pickled_module(path):
        return load_openai_dall_e_pickle(path)  # OpenAI's encoder.pkl, read without its code
    return load_checkpoint_file(path, map_location)


def _is_tensor_dict(obj: Mapping) -> bool:
    values = list(obj.values())
    return bool(values) and sum(isinstance(v, torch.Tensor) for v in values) * 2 >= len(values)


def unwrap_checkpoint(checkpoint: Any) -> Tuple[StateDict, Optional[str]]:
    """The state dict inside a loaded checkpoint file.

    Looks through ``{'state_dict': ...}``, ``{'model': ...}``, ``{'module': ...}``
    wrappers (nested ones too) and strips a ``module.`` prefix that DataParallel
    puts on every key.

    Returns:
        (state dict with only tensor values, the outermost wrapper key or None)

    Raises:
        ValueError: no mapping of tensors is found.
    """
    if isinstance(checkpoint, nn.Module):
        return OrderedDict(checkpoint.state_dict()), None
    wrapper = None
    obj = checkpoint
    for _ in range(4):
        if not isinstance(obj, Mapping):
            break
        inner = next((k for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping) and obj[k]), None)
        if inner is not None and not _is_tensor_dict(obj):
            wrapper = wrapper or inner
            obj = obj[inner]
            continue
        break
    if not isinstance(obj, Mapping) or not _is_tensor_dict(obj):
        top = (
            list(checkpoint.keys())[:8]
            if isinstance(checkpoint, Mapping) else type(checkpoint).__name__)
        raise ValueError(f'the checkpoint holds no state dict (a mapping of names to tensors) '
                         f'directly or under {WRAPPER_KEYS}; its top level is {top}')
    state_dict: StateDict = OrderedDict(
        (k, v) for k, v in obj.items() if isinstance(v, torch.Tensor))
    if state_dict and all(k.startswith('module.') for k in state_dict):
        state_dict = strip_prefix(state_dict, 'module.')
    return state_dict, wrapper


# ----------------------------------------------------------- transformers folders
def is_transformers_dir(path: Any) -> bool:
    """A folder as ``save_pretrained`` writes it: config.json and weights."""
    return (isinstance(path, (str, os.PathLike)) and osp.isdir(path)
            and osp.isfile(osp.join(path, 'config.json')))


def load_transformers_dir(path: str, map_location: str = 'cpu') -> Tuple[StateDict, dict]:
    """Read a transformers model folder safely.

    Returns:
        (state dict in transformers' names, the parsed config.json)
    """
    from mmbeit.utils.checkpoint_io import load_checkpoint_file
    with open(osp.join(path, 'config.json')) as f:
        config = json.load(f)
    if config.get('model_type', 'beit') != 'beit':
        raise ValueError(f'{path}/config.json: model_type is {config.get("model_type")!r}; '
                         "mmbeit reads 'beit' models only")
    files = [osp.join(path, n) for n in WEIGHT_FILES if osp.isfile(osp.join(path, n))][:1]
    for index in INDEX_FILES:
        if not files and osp.isfile(osp.join(path, index)):
            with open(osp.join(path, index)) as f:
                shards = sorted(set(json.load(f)['weight_map'].values()))
            files = [osp.join(path, s) for s in shards]
    if not files:
        raise FileNotFoundError(f'{path} has a config.json but no weights: expected one of '
                                f'{WEIGHT_FILES + INDEX_FILES}')
    state_dict: StateDict = OrderedDict()
    for file in files:
        state_dict.update(load_checkpoint_file(file, map_location))
    return state_dict, config


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
