"""Semantic segmentation inference: a config (or a built model) and an image -> a class per pixel.

The segmentors are mmseg's ``EncoderDecoder`` with mmbeit's BEiT, so this is a
thin layer over mmseg: build (:func:`mmbeit.apis.builder.get_model`), run the
config's test pipeline and ``test_step`` (``whole`` or ``slide`` as the config
says), and draw the mask over the image. Images are read by
:func:`mmbeit.utils.image_io.read_image`: file paths, ``PIL.Image`` objects or BGR
``uint8`` arrays, of any size (see :func:`inference_padding`).

:func:`mmbeit.apis.inference_model` dispatches here for configs with
``default_scope='mmseg'``.
"""
import contextlib
import copy
import os
import os.path as osp
import warnings
from typing import Any, Dict, Iterator, Optional, Sequence, Tuple

import numpy as np

from mmbeit.utils.image_io import ImageLike, read_image

__all__ = [
    'is_segmentation_config', 'list_segmentation_models', 'init_segmentor', 'inference_segmentor',
    'save_overlay', 'default_palette', 'inference_padding'
]


def is_segmentation_config(cfg: Any) -> bool:
    """Whether ``cfg`` describes an mmseg segmentor (``default_scope='mmseg'``)."""
    return cfg.get('default_scope') == 'mmseg'


def list_segmentation_models() -> Dict[str, Tuple[str, Optional[str]]]:
    """``{model name: (config path, weights URL or None)}`` of the zoo's segmentors."""
    from mmengine.config import Config

    from .model_zoo import load_model_index
    models = {}
    for info in load_model_index().values():
        if info.config and is_segmentation_config(Config.fromfile(info.config)):
            models[info.name] = (info.config, info.weights)
    return models


def init_segmentor(config: Any,
                   checkpoint: Optional[str] = None,
                   device: str = 'cpu',
                   cfg_options: Optional[dict] = None):
    """Build the segmentor of a config, load ``checkpoint`` and put it in eval mode.

    Args:
        config: config path, Config (``default_scope='mmseg'``), a zoo name or hub id of a
            segmentor (then ``checkpoint`` defaults to its weights), or a transformers
            ``BeitForSemanticSegmentation`` folder.
        checkpoint: path, URL, hub id or model folder of a segmentor checkpoint in any
            format mmbeit converts; None keeps the initial weights (or the name's).
        device: where the model runs. Defaults to 'cpu'.
        cfg_options: overrides merged into the config first.

    Returns:
        The model, with ``model.cfg`` and ``model.dataset_meta`` (classes and palette from
        the checkpoint, else from the config's test dataset).
    """
    from .builder import build_model, build_with_weights, load_config
    from .class_names import classes_from_config
    try:
        src = load_config(config)
    except ValueError as e:
        raise FileNotFoundError(f'segmentation config not found: {config} (nor a model name '
                                f'of list_segmentation_models(): {e})') from None
    cfg = src.cfg
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if not is_segmentation_config(cfg):
        raise ValueError(f"not a segmentation config: default_scope is "
                         f"{cfg.get('default_scope')!r}, segmentation configs have 'mmseg'")
    # a name, folder or hub id brings its weights; a config file or Config does not
    named = isinstance(config, (str, os.PathLike)) and not os.fspath(config).endswith('.py')
    weights = checkpoint if checkpoint is not None else (src.weights if named else None)
    if weights is None:
        model, meta = build_model(cfg), {}
    else:
        model, meta = build_with_weights(cfg, weights)
    model.dataset_meta = (meta if meta.get('classes') else None) or \
        classes_from_config(cfg, with_palette=True)
    model.cfg = cfg
    model.model_info = src.info
    return model.to(device).eval()


def _test_pipeline(cfg: Any):
    """The config's test pipeline reading an array, without annotation loading."""
    from mmcv.transforms import Compose
    from mmengine.registry import TRANSFORMS, DefaultScope
    loader = cfg.get('test_dataloader')
    pipeline = cfg.get('test_pipeline') or (loader and loader['dataset']['pipeline'])
    steps = [copy.deepcopy(t) for t in pipeline if t.get('type') != 'LoadAnnotations']
    if steps and str(steps[0].get('type', '')).split('.')[-1].startswith('LoadImageFrom'):
        steps[0] = dict(type='LoadImageFromNDArray')
    else:
        steps.insert(0, dict(type='LoadImageFromNDArray'))
    with DefaultScope.overwrite_default_scope('mmseg'):
        return Compose([TRANSFORMS.build(t) for t in steps])


def _patch_size(model: Any) -> int:
    backbone = getattr(model, 'backbone', None)
    if isinstance(getattr(backbone, 'patch_size', None), int):
        return backbone.patch_size
    return int(model.cfg.model.get('backbone', {}).get('patch_size', 16))


def inference_padding(model: Any) -> dict:
    """How a segmentor's inputs are padded at test time: the data preprocessor's
    ``test_cfg`` when it pads (``size`` or ``size_divisor``), else to a multiple of the
    backbone's patch size (``dict(size_divisor=p)``).

    mmseg pads test images only when ``model.data_preprocessor.test_cfg`` says so
    (``data_preprocessor.size`` / ``size_divisor`` pad training batches only); the
    padding is cropped off the logits again. Without it, an image that the test
    pipeline resizes to a side that is not a multiple of the patch size (a non-square
    photo) is refused by the patch embedding.
    """
    dp_cfg = getattr(getattr(model, 'data_preprocessor', None), 'test_cfg', None) or {}
    if dp_cfg.get('size') or dp_cfg.get('size_divisor'):
        return dict(dp_cfg)
    return dict(size_divisor=_patch_size(model))


@contextlib.contextmanager
def _padding_inputs(model: Any) -> Iterator[None]:
    """The model's data preprocessor pads by :func:`inference_padding` inside the block."""
    dp = getattr(model, 'data_preprocessor', None)
    if dp is None or not hasattr(dp, 'test_cfg'):
        yield
        return
    before = dp.test_cfg
    dp.test_cfg = inference_padding(model)
    try:
        yield
    finally:
        dp.test_cfg = before


def inference_segmentor(model_or_config: Any,
                        image: ImageLike,
                        checkpoint: Optional[str] = None,
                        device: str = 'cpu') -> dict:
    """Segment one image.

    Args:
        model_or_config: a model from :func:`init_segmentor`, or what it takes (then built
            with ``checkpoint`` on ``device``).
        image: file path, BGR ``uint8`` array [H, W, 3] or ``PIL.Image`` (see
            :mod:`mmbeit.utils.image_io`). Any size: after the test pipeline the input is
            padded as :func:`inference_padding` says, and the padding cropped off again.
        checkpoint: weights for a config; ignored for a model.
        device: device for a config; ignored for a model.

    Returns:
        dict with ``pred_mask`` (int64 array [H, W], class index per pixel at the image's
        original size) and ``seg_logits`` (float tensor [num_classes, H, W]).
    """
    import torch
    import torch.nn as nn
    if isinstance(model_or_config, nn.Module) or hasattr(model_or_config, 'test_step'):
        model = model_or_config
        if not hasattr(model, 'cfg'):
            raise ValueError('the model has no .cfg; build it with init_segmentor(config, ...)')
        if checkpoint is not None:
            warnings.warn('checkpoint is ignored: a built model was passed', stacklevel=2)
    else:
        model = init_segmentor(model_or_config, checkpoint, device)
    img = read_image(image)  # BGR uint8 [H, W, 3]
    data = _test_pipeline(model.cfg)(dict(img=img, img_id=0))
    batch = dict(inputs=[data['inputs']], data_samples=[data['data_samples']])
    with torch.no_grad(), _padding_inputs(model):
        result = model.test_step(batch)[0]
    return dict(
        pred_mask=result.pred_sem_seg.data[0].cpu().numpy().astype(np.int64),
        seg_logits=result.seg_logits.data.cpu())


def default_palette(num_classes: int, seed: int = 0) -> np.ndarray:
    """A fixed random RGB colour per class: ``uint8 [num_classes, 3]``."""
    return np.random.default_rng(seed).integers(0, 256, size=(num_classes, 3), dtype=np.uint8)


def save_overlay(image: ImageLike,
                 mask: np.ndarray,
                 palette: Optional[Sequence] = None,
                 out_png: Optional[str] = None,
                 opacity: float = 0.5) -> np.ndarray:
    """Blend a class colour over every pixel of the image and write it as PNG.

    Args:
        image: file path or BGR ``uint8`` array [H, W, 3] (see :mod:`mmbeit.utils.image_io`).
        mask: class index per pixel [H, W]; values outside the palette (255 = ignore)
            stay unpainted.
        palette: one RGB colour per class (e.g. ``model.dataset_meta['palette']``); None
            draws a fixed random colour per class.
        out_png: where to write the RGB overlay; None writes nothing.
        opacity: weight of the class colour, in [0, 1]. Defaults to 0.5.

    Returns:
        The overlay, RGB ``uint8`` [H, W, 3] (a picture for people: RGB, as PNG stores it).
    """
    img = read_image(image)[..., ::-1].astype(np.float32)  # RGB [H, W, 3]
    mask = np.asarray(mask)
    if mask.shape != img.shape[:2]:
        raise ValueError(f'mask shape {mask.shape} differs from the image size {img.shape[:2]}')
    if not 0. <= opacity <= 1.:
        raise ValueError(f'opacity must be in [0, 1], got {opacity}')
    if palette is None:
        palette = default_palette(int(mask.max()) + 1 if mask.size else 1)
    colours = np.asarray(palette, dtype=np.float32).reshape(-1, 3)  # [K, 3]
    painted = (mask >= 0) & (mask < len(colours))
    out = img.copy()
    out[painted] = (1 - opacity) * img[painted] + opacity * colours[mask[painted]]
    out = np.clip(out + 0.5, 0, 255).astype(np.uint8)
    if out_png is not None:
        from PIL import Image
        os.makedirs(osp.dirname(osp.abspath(out_png)), exist_ok=True)
        Image.fromarray(out).save(out_png, format='PNG')
    return out
