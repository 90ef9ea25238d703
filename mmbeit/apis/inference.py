"""``inference_model``: one call from a name (or config, folder, hub id, built model) and an
image to a prediction, dispatched by task.

Tasks: classification configs (mmpretrain scope) return ``pred_label``, ``pred_score``,
``pred_scores`` and ``pred_class`` (:mod:`.cls_inference`); segmentation configs
(``default_scope='mmseg'``) return ``pred_mask`` and ``seg_logits``
(:mod:`.seg_inference`). New tasks are one entry of :data:`TASK_INFERENCE`.
Images: file paths, ``PIL.Image`` objects or BGR ``uint8`` arrays, read by
:func:`mmbeit.utils.image_io.read_image`, whose docstring lists how grayscale, 16-bit,
RGBA and PIL inputs are converted and what is refused.

The model zoo, class names and building live in :mod:`.model_zoo`,
:mod:`.class_names` and :mod:`.builder`; their names are re-exported here for code
written against the earlier single-module layout.
"""
import os
import warnings
from typing import Any, Callable, Dict, Optional

from mmbeit.utils.image_io import ImageLike
from .builder import build_from_source, build_model, get_model, load_config, task_of
from .class_names import IMAGENET22K_NUM_CLASSES, imagenet22k_class_names
from .cls_inference import classify
from .model_zoo import (ModelInfo, get_model_info, list_models, load_model_index, model_index_paths,
                        register_model_index)

__all__ = [
    'inference_model', 'TASK_INFERENCE', 'ModelInfo', 'model_index_paths', 'register_model_index',
    'load_model_index', 'list_models', 'get_model_info', 'get_model', 'task_of',
    'imagenet22k_class_names', 'IMAGENET22K_NUM_CLASSES'
]

_build = build_model  # the earlier private name (tests, tools)


def _segment(model: Any, image: ImageLike) -> dict:
    from .seg_inference import inference_segmentor
    return inference_segmentor(model, image)


#: task (see :func:`task_of`) -> ``fn(built model, image) -> dict``
TASK_INFERENCE: Dict[str, Callable[[Any, ImageLike], dict]] = {
    'classification': classify,
    'segmentation': _segment,
}


def inference_model(model: Any,
                    image: ImageLike,
                    checkpoint: Optional[str] = None,
                    device: str = 'cpu',
                    revision: Optional[str] = None,
                    config: Any = None,
                    dtype: str = 'fp32') -> dict:
    """Predict one image with a model of the zoo, a hub id, a folder, a config or a built model.

    Args:
        model: a name from ``list_models`` or a hub id (its weights are loaded unless
            ``checkpoint`` is given), a transformers / timm model folder (its weights), a
            config path or Config (weights from ``checkpoint``, else the config's
            ``load_from``, else the initial weights with a warning), or a model from
            ``get_model``.
        image: file path, ``PIL.Image`` (RGB, L, RGBA, I;16, ...) or BGR ``uint8`` array
            [H, W, 3] (see :mod:`mmbeit.utils.image_io`). Segmentation takes any size
            (padded to the patch size and cropped back, as
            :func:`mmbeit.apis.seg_inference.inference_padding` says).
        checkpoint: weights in any format mmbeit converts (path, URL, hub id, model
            folder), or an exported ``.onnx`` file (run by mmbeit.deployment).
        device: where a model that is built here runs. Defaults to ``'cpu'``.
        revision: hub revision for hub ids.
        config: the config (path, name or Config) of an exported ``.onnx`` file given as
            ``model``; it runs in onnxruntime (:func:`mmbeit.deployment.build_onnx_model`).
        dtype: 'fp32', 'bf16' (autocast) or 'int8' (dynamic int8 linear layers, CPU; a
            model you pass must be quantized first with
            ``mmbeit.deployment.quantize.prepare_for_dtype``). See
            :mod:`mmbeit.deployment.quantize`.

    Returns:
        Classification: dict(pred_label=int, pred_score=float, pred_scores=ndarray
        [num_classes], pred_class=str or None when the class names are unknown).
        Segmentation: dict(pred_mask=int64 ndarray [H, W], seg_logits=tensor [K, H, W]).
    """
    import torch.nn as nn
    if isinstance(model, nn.Module):
        if not hasattr(model, 'cfg'):
            raise ValueError('the model has no .cfg; build it with mmbeit.apis.get_model')
        if checkpoint is not None:
            warnings.warn('checkpoint is ignored: a built model was passed', stacklevel=2)
        net = model
    elif isinstance(model, (str, os.PathLike)) and os.fspath(model).endswith('.onnx'):
        if config is None:
            raise ValueError(f'{os.fspath(model)} is an ONNX file: pass the config it was '
                             'exported from as config=')
        from mmbeit.deployment import build_onnx_model
        net = build_onnx_model(os.fspath(model), load_config(config, revision).cfg)
    elif checkpoint is not None and os.fspath(checkpoint).endswith('.onnx'):
        # an exported model given as the checkpoint of its config
        from mmbeit.deployment import build_onnx_model
        net = build_onnx_model(os.fspath(checkpoint), load_config(model, revision).cfg)
    else:
        src = load_config(model, revision)
        named = isinstance(model, (str, os.PathLike)) and not os.fspath(model).endswith('.py')
        pretrained: Any = checkpoint
        if pretrained is None:
            if src.weights and (named or src.cfg.get('load_from')):
                pretrained = True
            else:
                warnings.warn(
                    'no checkpoint given: predicting with the initial (untrained) '
                    'weights',
                    stacklevel=2)
                pretrained = False
        net = build_from_source(src, pretrained, device, revision)
    task = task_of(net.cfg)
    if task not in TASK_INFERENCE:
        raise ValueError(f'no inference for {net.cfg.model.get("type")} models (task {task!r}); '
                         f'inference_model supports {sorted(TASK_INFERENCE)}')
    from mmbeit.deployment.quantize import inference_dtype_context
    with inference_dtype_context(net, dtype, owned=net is not model):
        return TASK_INFERENCE[task](net, image)
