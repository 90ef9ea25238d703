"""Loading a checkpoint of any format into a model, strictly and in words.

The one loading path of mmbeit (``init_cfg=dict(type='Pretrained')``,
``load_from``, ``tools/test.py``, :func:`load_pretrained`): read the file safely,
detect its format, convert it for the model, then fit it to the model:

* a shared relative position table is copied into every layer of a model with
  per-layer tables (tables and position embeddings of another size are resized
  by the backbone's load hooks);
* keys the model legitimately has no place for are dropped *by name*: a mask
  token (only pretraining uses one), a final norm or ``fc_norm`` the model was
  built without, heads of other tasks;
* keys the checkpoint legitimately lacks keep the model's initialization *by
  name*: a whole head or neck the checkpoint does not have, ``fc_norm`` (a
  pretrained checkpoint has none), a mask token.

Everything else must match: missing or unexpected keys raise
:class:`CheckpointMismatchError`, naming them and the detected format.
"""
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch
import torch.nn as nn

from .formats import canonical_state_dict, check_format
from .layout import ROLE_NAMES, TARGET_LAYOUTS, assemble, infer_target
from .rules import StateDict, expand_shared_rel_pos_bias, strip_prefix, unwrap_checkpoint

__all__ = ['CheckpointMismatchError', 'LoadReport', 'read_checkpoint', 'load_pretrained',
           'load_converted_state_dict', 'convert_file']


class CheckpointMismatchError(RuntimeError):
    """A checkpoint's keys or shapes do not fit the model."""


@dataclass
class LoadReport:
    """What :func:`load_pretrained` did."""
    fmt: str
    target: str
    notes: List[str] = field(default_factory=list)  # what was dropped or copied, by name
    kept_init: List[str] = field(default_factory=list)  # model parts the checkpoint lacks
    missing: List[str] = field(default_factory=list)  # only with strict=False
    unexpected: List[str] = field(default_factory=list)  # only with strict=False


def read_checkpoint(source: Any, map_location: Any = 'cpu') -> Any:
    """A loaded checkpoint from a path, URL, transformers model folder, mapping or module."""
    if isinstance(source, (Mapping, nn.Module)):
        return source
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError('checkpoint must be a path, URL, folder or state dict, '
                        f'got {type(source).__name__}')
    from .transformers import is_transformers_dir, load_transformers_dir
    if is_transformers_dir(source):
        return load_transformers_dir(os.fspath(source), map_location)[0]
    if os.path.isdir(source):
        raise FileNotFoundError(f'{source} is a folder without config.json; a transformers model '
                                'folder has config.json and model.safetensors or pytorch_model.bin')
    from mmbeit.utils.checkpoint_io import download_checkpoint, is_url, load_checkpoint_file
    from .dalle import is_pickled_module, load_openai_dall_e_pickle
    path = download_checkpoint(source) if is_url(source) else os.path.expanduser(os.fspath(source))
    if os.path.isfile(path) and is_pickled_module(path):
        return load_openai_dall_e_pickle(path)  # OpenAI's encoder.pkl, read without its code
    return load_checkpoint_file(path, map_location)


def _shorten(keys: List[str], n: int = 10) -> str:
    keys = sorted(keys)
    shown = ', '.join(keys[:n])
    return shown + (f', ... ({len(keys) - n} more)' if len(keys) > n else '')


def _fit(state_dict: StateDict, model_state: Mapping[str, torch.Tensor], target: str,
         left_out: List[str]) -> Tuple[StateDict, List[str], List[str], List[str], List[str]]:
    """Fit a converted state dict to the model's keys; see the module docstring.

    Returns:
        (fitted state dict, notes, kept initializations, missing keys, unexpected keys)
    """
    notes = [f'left out the checkpoint\'s {ROLE_NAMES[r]} ({r}*): a {target} has none'
             for r in left_out]
    state_dict, expanded = expand_shared_rel_pos_bias(state_dict, model_state.keys())
    for key in expanded:
        notes.append(f'copied the shared relative position table {key} into every layer')
    model_keys = set(model_state)
    bb = '' if target == 'backbone' else 'backbone.'
    out = OrderedDict(state_dict)

    # checkpoint parts the model was built without
    optional = {
        bb + 'mask_token': 'the model has no mask token (only masked image modeling uses one)',
        bb + 'norm.': 'the model has no final norm (final_norm=False)',
        bb + 'fc_norm.': "the model does not pool with fc_norm (out_type is not 'avg_featmap')",
    }
    for start, why in optional.items():
        dropped = [k for k in out if k.startswith(start) and k not in model_keys]
        if dropped and not any(k.startswith(start) for k in model_keys):
            for k in dropped:
                del out[k]
            notes.append(f'dropped {", ".join(dropped)}: {why}')

    # model parts the checkpoint legitimately lacks: keep their initialization
    kept = []
    keep_init = {bb + 'fc_norm.': 'the checkpoint has no fc_norm (it was not fine-tuned with mean '
                                  'pooling)',
                 bb + 'mask_token': 'the checkpoint has no mask token'}
    for role, prefix in TARGET_LAYOUTS[target].items():
        if role != 'backbone.' and prefix:
            keep_init[prefix] = f'the checkpoint has no {ROLE_NAMES[role]}'
    for start, why in keep_init.items():
        wanted = [k for k in model_keys if k.startswith(start)]
        if wanted and not any(k.startswith(start) for k in out):
            for k in wanted:
                out[k] = model_state[k]
            kept.append(f'{start}* keeps its initialization: {why}')
    for k in model_keys:  # normalisation constants of data preprocessors, if persistent
        if k.startswith('data_preprocessor.') and k not in out:
            out[k] = model_state[k]

    missing = sorted(model_keys - set(out))
    unexpected = sorted(set(out) - model_keys)
    return out, notes, kept, missing, unexpected


def load_converted_state_dict(model: nn.Module, checkpoint: Any, fmt: Optional[str] = None,
                              prefix: Optional[str] = None, strict: bool = True,
                              target: Optional[str] = None, source: str = 'checkpoint',
                              logger: Any = 'current') -> LoadReport:
    """Convert a loaded checkpoint for ``model`` and load it (see the module docstring).

    Args:
        model: the module to load into.
        checkpoint: a loaded checkpoint or state dict of any known format.
        fmt: its format, or None to detect it.
        prefix: load only the checkpoint's keys under this prefix (as mmengine's
            ``Pretrained`` init does), e.g. ``'backbone.'``.
        strict: raise on keys that do not fit (after the explicit drops); with
            False they are reported and skipped.
        target: what ``model`` is (see :data:`~.layout.TARGETS`); inferred from its keys.
        source: the file's name, for messages.
        logger: mmengine logger name for the report.
    """
    model_state = model.state_dict()
    target = target or infer_target(model_state.keys())
    state_dict, wrapper = unwrap_checkpoint(checkpoint)
    fmt = check_format(fmt) if fmt else None
    converted = None
    if prefix:
        try:
            canonical, read_as = canonical_state_dict(state_dict, fmt, wrapper)
        except (ValueError, KeyError):  # the raw keys may need the prefix stripped first
            canonical = {}
        if any(k.startswith(prefix) for k in canonical):
            # the prefix names a part of the converted checkpoint: that part is the model
            converted, fmt = strip_prefix(canonical, prefix), read_as
            left_out = sorted({k.split('.')[0] + '.' for k in canonical if not k.startswith(prefix)})
        elif any(k.startswith(prefix) for k in state_dict):
            state_dict, wrapper = strip_prefix(state_dict, prefix), None
        else:
            raise CheckpointMismatchError(f'{source}: no key starts with prefix {prefix!r}')
    if converted is None:
        canonical, fmt = canonical_state_dict(state_dict, fmt, wrapper)
        converted, left_out = assemble(canonical, target)

    fitted, notes, kept, missing, unexpected = _fit(converted, model_state, target, left_out)
    name = type(model).__name__
    if (missing or unexpected) and strict:
        lines = [f'{source} ({fmt} format) does not fit {name} (converted for a {target}):']
        if missing:
            lines.append(f'  missing in the checkpoint: {_shorten(missing)}')
        if unexpected:
            lines.append(f'  unexpected (the model has no such keys): {_shorten(unexpected)}')
        lines.append('  Check that the model config matches the checkpoint (arch, '
                     'use_rel_pos_bias / use_shared_rel_pos_bias, use_abs_pos_emb, heads), '
                     'or pass prefix= to load a part of it.')
        raise CheckpointMismatchError('\n'.join(lines))
    try:
        model.load_state_dict(fitted, strict=strict)
    except RuntimeError as e:
        raise CheckpointMismatchError(f'{source} ({fmt} format) does not fit {name}: {e}') from None

    report = LoadReport(fmt=fmt, target=target, notes=notes, kept_init=kept, missing=missing,
                        unexpected=unexpected)
    import logging

    from mmengine.logging import print_log
    print_log(f'Loaded {source} into {name} ({fmt} format, as a {target})', logger=logger)
    for note in notes:
        print_log(f'  {note}', logger=logger)
    for note in kept:
        print_log(f'  {note}', logger=logger, level=logging.WARNING)
    if missing or unexpected:
        print_log(f'  not loaded (strict=False): missing {_shorten(missing)}; '
                  f'unexpected {_shorten(unexpected)}', logger=logger, level=logging.WARNING)
    return report


def load_pretrained(module: nn.Module, checkpoint: Any, prefix: Optional[str] = None,
                    strict: bool = True, fmt: Optional[str] = None,
                    map_location: Any = 'cpu') -> LoadReport:
    """Load a checkpoint of any known format into ``module``.

    Args:
        module: a bare ``mmbeit.BEiT``, a classifier, segmentor or pretraining model, or
            a DALL-E encoder (what it is is read from its keys).
        checkpoint: path, http(s) URL, transformers model folder, loaded checkpoint
            or state dict.
        prefix: only the keys under this prefix (mmengine's ``Pretrained`` semantics),
            e.g. ``'backbone.'``.
        strict: see :func:`load_converted_state_dict`.
        fmt: the checkpoint's format; detected when None.

    Returns:
        What was loaded, dropped and kept (:class:`LoadReport`).

    Raises:
        CheckpointMismatchError: keys or shapes that do not fit, named with the format.
        ValueError: an unknown format (the message lists the known ones).
    """
    source = checkpoint if isinstance(checkpoint, (str, os.PathLike)) else 'checkpoint'
    loaded = read_checkpoint(checkpoint, map_location)
    return load_converted_state_dict(module, loaded, fmt=fmt, prefix=prefix, strict=strict,
                                     source=str(source))


def convert_file(src: Any, dst: str, fmt: Optional[str] = None, target: Optional[str] = None
                 ) -> Dict[str, Any]:
    """Convert a checkpoint (path, URL, transformers folder) to an mmbeit checkpoint file.

    The file is ``{'state_dict': ..., 'meta': {...}}`` as mmengine writes it, so
    ``load_from`` and ``tools/test.py`` load it as the model's own; ``.safetensors``
    destinations get the bare state dict.

    Args:
        src: the source checkpoint.
        dst: where to write.
        fmt: the source format, or None to detect it.
        target: 'backbone', 'classifier', 'segmentor', 'pretrain' or 'target_generator';
            None picks the task the checkpoint has heads for.

    Returns:
        dict(fmt=..., target=..., left_out=[roles the target has no place for], num_keys=...)
    """
    from .formats import to_canonical
    from .layout import default_target
    canonical, fmt = to_canonical(read_checkpoint(src), fmt)
    target = target or default_target(canonical)
    state_dict, left_out = assemble(canonical, target)
    state_dict = OrderedDict((k, v.contiguous()) for k, v in state_dict.items())
    folder = os.path.dirname(os.path.abspath(dst))
    os.makedirs(folder, exist_ok=True)
    if dst.endswith('.safetensors'):
        from safetensors.torch import save_file
        save_file(dict(state_dict), dst, metadata={'format': 'pt', 'converted_from': fmt,
                                                    'target': target})
    else:
        torch.save({'state_dict': state_dict,
                    'meta': {'converted_from': fmt, 'target': target, 'source': str(src)}}, dst)
    return dict(fmt=fmt, target=target, left_out=[ROLE_NAMES[r] for r in left_out],
                num_keys=len(state_dict))
