"""Stage 1 of loading, *read*: a checkpoint source -> the state dict inside it.

Sources: a local file (``.pth``/``.bin`` read by the weights-only unpickler with
exactly mmengine's safe types allowed, ``.safetensors``), an http(s) URL
(downloaded once into mmbeit's cache), a transformers model folder
(``config.json`` + weights, sharded too), OpenAI's pickled DALL-E
``encoder.pkl`` (read without its code), a loaded checkpoint or state dict,
or an ``nn.Module``. Wrappers (``{'state_dict': ...}``, ``{'model': ...}``,
``module.`` prefixes) are looked through by :func:`unwrap_checkpoint`.

A format whose files need reading of their own (a folder, a pickled module)
declares it in its module as ``read(path, map_location)``, which returns the
checkpoint or None when the path is not in that form; :data:`SOURCE_READERS`
lists them.

Imports: :mod:`mmbeit.utils.checkpoint_io`, :mod:`.rules` and the format modules
with a reading quirk (which import nothing of the pipeline).
"""
import os
import os.path as osp
from collections import OrderedDict
from typing import Any, Callable, Mapping, Optional, Tuple

import torch
import torch.nn as nn

from . import dalle, transformers
from .rules import StateDict, strip_prefix

__all__ = ['WRAPPER_KEYS', 'SOURCE_READERS', 'read_checkpoint', 'unwrap_checkpoint']

# Keys under which training scripts nest the weights: mmengine / mmcv ('state_dict'),
# unilm and DeiT-style scripts ('model', 'module'), a few others ('model_state').
WRAPPER_KEYS = ('state_dict', 'model', 'module', 'model_state')

# the formats' own readers, tried in order on a local path (after a URL is downloaded)
SOURCE_READERS: Tuple[Callable[[str, Any], Optional[Any]], ...] = (transformers.read, dalle.read)


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
    from mmbeit.utils.checkpoint_io import download_checkpoint, is_url, load_checkpoint_file
    path = download_checkpoint(source) if is_url(source) else osp.expanduser(os.fspath(source))
    for reader in SOURCE_READERS:
        checkpoint = reader(path, map_location)
        if checkpoint is not None:
            return checkpoint
    if osp.isdir(path):
        raise FileNotFoundError(f'{source} is a folder that no checkpoint format reads; '
                                f'{transformers.FOLDER_HINT}')
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
