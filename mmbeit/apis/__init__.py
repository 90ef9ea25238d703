"""mmbeit.apis: the model zoo, building by name, and inference, one module per concern.

================== ===============================================================
:mod:`.model_zoo`   ``model-index.yml``: ``list_models``, ``get_model_info``, aliases
:mod:`.hub`         Hugging Face hub ids and downloads (huggingface_hub)
:mod:`.folder_config` configs from a transformers / timm folder's ``config.json``
:mod:`.class_names` class names: checkpoint, config.json, config, ImageNet, ADE20K
:mod:`.builder`     name -> config -> model -> weights (``get_model``)
:mod:`.cls_inference` classification of an image
:mod:`.seg_inference` segmentation of an image, overlays
:mod:`.inference`   ``inference_model``: dispatch by task
:mod:`.run`         what ``tools/train.py`` and ``tools/test.py`` run
================== ===============================================================

Images are read by :func:`mmbeit.utils.image_io.read_image` (one reader, BGR arrays),
re-exported here. Names are imported on first use, so ``import mmbeit.apis`` stays light.
"""
import importlib
from typing import Any

_LAZY = {
    'list_models': 'model_zoo',
    'get_model_info': 'model_zoo',
    'register_model_index': 'model_zoo',
    'get_model': 'builder',
    'inference_model': 'inference',
    'read_image': 'mmbeit.utils.image_io',
    'init_segmentor': 'seg_inference',
    'inference_segmentor': 'seg_inference',
    'save_overlay': 'seg_inference',
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = _LAZY[name] if '.' in _LAZY[name] else f'{__name__}.{_LAZY[name]}'
        return getattr(importlib.import_module(module), name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def __dir__():
    return sorted(list(globals()) + __all__)
