"""mmbeit weights -> Hugging Face transformers ``BeitFor*`` (the export direction).

Reads any format through the loading pipeline's convert stage
(:func:`mmbeit.converters.convert.convert_checkpoint`), then hands the canonical
layout to the format's own export (:func:`mmbeit.converters.transformers.export`,
its rule table and ``config.json``), which writes the names transformers uses on
disk, so every transformers version loads the result with ``BeitFor*.from_pretrained``.
"""
from typing import Any, Mapping, Optional, Tuple

import torch

from . import transformers
from .convert import convert_checkpoint
from .layout import split_roles
from .rules import StateDict

__all__ = ['to_transformers', 'save_transformers']


def to_transformers(state_dict: Mapping[str, torch.Tensor], task: str,
                    **kwargs) -> Tuple[StateDict, dict]:
    """mmbeit weights (any format) -> (transformers on-disk state dict, ``config.json`` dict).

    Keyword arguments are those of :func:`mmbeit.converters.transformers.export`
    (num_heads, img_size, out_indices, pool_scales, classes, norm_eps).
    """
    if task not in transformers.TASKS:
        raise ValueError(f'unknown task {task!r}; choose one of {transformers.TASKS}')
    parts = split_roles(convert_checkpoint(state_dict, target=None))
    return transformers.export(parts, task, **kwargs)


def save_transformers(state_dict: Mapping[str, torch.Tensor],
                      out_dir: str,
                      task: str,
                      processor: Optional[Mapping[str, Any]] = None,
                      **kwargs) -> str:
    """Write a folder for ``BeitFor*.from_pretrained(out_dir)`` and transformers'
    ``pipeline(..., model=out_dir)``: ``config.json``, ``model.safetensors`` and
    ``preprocessor_config.json``.

    Args:
        state_dict: the weights, in any format mmbeit reads.
        out_dir: the folder to write.
        task: see :func:`to_transformers`.
        processor: the image preprocessing, keyword arguments of
            :func:`mmbeit.converters.transformers.image_processor_config` (mean, std,
            crop_size, interpolation, size; mean/std of [0, 1] pixels). Defaults to a resize
            to the model's image size and BEiT's 0.5 mean/std:
            :func:`mmbeit.apis.folder_config.processor_from_config` reads them from a config.
        **kwargs: those of :func:`to_transformers`.

    Returns:
        ``out_dir``.
    """
    hf, config = to_transformers(state_dict, task, **kwargs)
    settings = dict(processor or {})
    settings.setdefault('size', config['image_size'])
    return transformers.write_model_dir(out_dir, hf, config,
                                        transformers.image_processor_config(**settings))
