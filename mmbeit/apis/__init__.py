"""mmbeit.apis: the model zoo and inference (:mod:`.inference`), segmentation inference
(:mod:`.seg_inference`) and what the tools run (:mod:`.run`).

Names are imported on first use, so ``import mmbeit.apis`` stays light.
"""
import importlib
from typing import Any

_LAZY = {
    'list_models': 'inference',
    'get_model': 'inference',
    'get_model_info': 'inference',
    'inference_model': 'inference',
    'register_model_index': 'inference',
    'init_segmentor': 'seg_inference',
    'inference_segmentor': 'seg_inference',
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f'{__name__}.{_LAZY[name]}'), name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def __dir__():
    return sorted(list(globals()) + __all__)
