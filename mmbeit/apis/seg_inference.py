"""Semantic segmentation inference: a config (or a built model) and an image -> a class per pixel.

The segmentors are mmseg's ``EncoderDecoder`` with mmbeit's BEiT, so this is a
thin layer over mmseg: build from a config, load a checkpoint, run the config's
test pipeline and ``test_step`` (``whole`` or ``slide`` as the config says),
and draw the mask over the image.

Images are file paths or ``uint8`` arrays ``[H, W, 3]`` in BGR order (as
``cv2.imread`` / ``mmcv.imread`` give them), OpenMMLab's convention.

:func:`mmbeit.apis.inference.inference_model` dispatches here for configs with
``default_scope='mmseg'`` (see :func:`is_segmentation_config`).
"""
import copy
import os
import os.path as osp
import warnings
from typing import Optional, Sequence, Union

import numpy as np
import torch
import torch.nn as nn
from mmengine.config import Config

import mmbeit  # noqa: F401  (compatibility fixes before mmseg is imported)

ImageLike = Union[str, np.ndarray]
ConfigLike = Union[str, Config]

__all__ = ['is_segmentation_config', 'list_segmentation_models', 'init_segmentor',
           'inference_segmentor', 'save_overlay']


def is_segmentation_config(cfg: Config) -> bool:
    """Whether ``cfg`` describes an mmseg segmentor (``default_scope='mmseg'``)."""
    return cfg.get('default_scope') == 'mmseg'


CONFIG_ROOT = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'configs')
METAFILES = (osp.join(CONFIG_ROOT, 'upernet_beit', 'metafile.yml'),)


def list_segmentation_models() -> dict:
    """``{model name: (config path, weights URL or None)}`` from the segmentation metafiles."""
    import yaml
    models = {}
    for metafile in METAFILES:
        if not osp.isfile(metafile):
            continue
        with open(metafile, encoding='utf-8') as f:
            for m in yaml.safe_load(f).get('Models', []):
                config = osp.join(osp.dirname(CONFIG_ROOT), m['Config'])
                models[m['Name']] = (config, m.get('Weights'))
    return models


def _load_config(config: ConfigLike) -> Config:
    if isinstance(config, Config):
        return copy.deepcopy(config)
    if isinstance(config, (str, os.PathLike)):
        path = os.fspath(config)
        if not osp.isfile(path):
            raise FileNotFoundError(f'segmentation config not found: {path} (nor a model name of '
                                    f'list_segmentation_models())')
        return Config.fromfile(path)
    raise TypeError(f'config must be a path or an mmengine Config, got {type(config).__name__}')


def _dataset_meta_from_config(cfg: Config) -> Optional[dict]:
    """Classes and palette of the config's test dataset (its metainfo, else its class's)."""
    dataset = cfg.get('test_dataloader', {}).get('dataset', {})
    meta = dataset.get('metainfo')
    if meta and 'classes' in meta:
        return dict(classes=tuple(meta['classes']), palette=meta.get('palette'))
    from mmseg.registry import DATASETS
    cls = DATASETS.get(dataset.get('type', '')) if dataset.get('type') else None
    meta = getattr(cls, 'METAINFO', None)
    if meta and 'classes' in meta:
        return dict(classes=tuple(meta['classes']), palette=meta.get('palette'))
    return None


def init_segmentor(config: ConfigLike, checkpoint: Optional[str] = None, device: str = 'cpu',
                   cfg_options: Optional[dict] = None) -> nn.Module:
    """Build the segmentor of a config, load ``checkpoint`` and put it in eval mode.

    Args:
        config: config path, Config (``default_scope='mmseg'``) or a model name of
            :func:`list_segmentation_models` (then ``checkpoint`` defaults to its weights).
        checkpoint: path, URL or transformers folder of a segmentor checkpoint in any format
            mmbeit converts (its own, mmseg's, transformers'); None keeps the initial weights
            (the backbone's ``init_cfg`` is not loaded either).
        device: where the model runs. Defaults to 'cpu'.
        cfg_options: overrides merged into the config first.

    Returns:
        The model, with ``model.cfg`` (the config) and ``model.dataset_meta`` (classes and
        palette from the checkpoint's meta, else from the config's test dataset).
    """
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import MODELS, init_default_scope

    from mmbeit.converters import read_checkpoint
    from mmbeit.converters.loading import load_converted_state_dict

    if isinstance(config, str) and not osp.isfile(config):
        models = list_segmentation_models()
        if config in models:
            config, weights = models[config]
            checkpoint = checkpoint if checkpoint is not None else weights
    cfg = _load_config(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if not is_segmentation_config(cfg):
        raise ValueError(f"not a segmentation config: default_scope is "
                         f"{cfg.get('default_scope')!r}, segmentation configs have 'mmseg'")
    init_default_scope('mmseg')
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg['train_cfg'] = None
    model_cfg.get('backbone', {}).pop('init_cfg', None)  # weights come from `checkpoint`
    model = revert_sync_batchnorm(MODELS.build(model_cfg))

    meta = {}
    if checkpoint is not None:
        ckpt = read_checkpoint(checkpoint)
        load_converted_state_dict(model, ckpt, source=str(checkpoint))  # any format, strict
        meta = ckpt.get('meta', {}) if isinstance(ckpt, dict) else {}
        meta = meta if isinstance(meta, dict) else {}
    model.dataset_meta = meta.get('dataset_meta') or _dataset_meta_from_config(cfg)
    model.cfg = cfg
    return model.to(device).eval()


def _test_pipeline(cfg: Config, image: ImageLike):
    """The config's test pipeline without annotation loading, reading ``image``."""
    from mmcv.transforms import Compose
    pipeline = cfg.get('test_pipeline') or cfg.test_dataloader.dataset.pipeline
    steps = [copy.deepcopy(t) for t in pipeline if t.get('type') != 'LoadAnnotations']
    if isinstance(image, np.ndarray):
        steps[0]['type'] = 'LoadImageFromNDArray'
    return Compose(steps)


def inference_segmentor(model_or_config: Union[nn.Module, ConfigLike], image: ImageLike,
                        checkpoint: Optional[str] = None, device: str = 'cpu') -> dict:
    """Segment one image.

    Args:
        model_or_config: a model from :func:`init_segmentor`, or a config path / Config
            (then built with ``checkpoint`` on ``device``).
        image: file path or BGR ``uint8`` array [H, W, 3].
        checkpoint: weights for a config; ignored for a model.
        device: device for a config; ignored for a model.

    Returns:
        dict with ``pred_mask`` (int64 array [H, W], class index per pixel at the image's
        original size) and ``seg_logits`` (float tensor [num_classes, H, W]).
    """
    if isinstance(model_or_config, nn.Module):
        model = model_or_config
        if not hasattr(model, 'cfg'):
            raise ValueError('the model has no .cfg; build it with init_segmentor(config, ...)')
        if checkpoint is not None:
            warnings.warn('checkpoint is ignored: a built model was passed', stacklevel=2)
    else:
        model = init_segmentor(model_or_config, checkpoint, device)
    if isinstance(image, str) and not osp.isfile(image):
        raise FileNotFoundError(f'image not found: {image}')
    if isinstance(image, np.ndarray) and (image.ndim != 3 or image.shape[2] != 3):
        raise ValueError(f'image array must be [H, W, 3] (BGR), got shape {image.shape}')

    pipeline = _test_pipeline(model.cfg, image)
    sample = dict(img=image, img_id=0) if isinstance(image, np.ndarray) else dict(img_path=image)
    data = pipeline(sample)
    batch = dict(inputs=[data['inputs']], data_samples=[data['data_samples']])
    with torch.no_grad():
        result = model.test_step(batch)[0]
    return dict(pred_mask=result.pred_sem_seg.data[0].cpu().numpy().astype(np.int64),
                seg_logits=result.seg_logits.data.cpu())


def _read_bgr(image: ImageLike) -> np.ndarray:
    if isinstance(image, np.ndarray):
        return image
    import mmcv
    if not osp.isfile(image):
        raise FileNotFoundError(f'image not found: {image}')
    return mmcv.imread(image, channel_order='bgr')


def default_palette(num_classes: int, seed: int = 0) -> np.ndarray:
    """A fixed random RGB colour per class: ``uint8 [num_classes, 3]``."""
    return np.random.default_rng(seed).integers(0, 256, size=(num_classes, 3), dtype=np.uint8)


def save_overlay(image: ImageLike, mask: np.ndarray, palette: Optional[Sequence] = None,
                 out_png: Optional[str] = None, opacity: float = 0.5) -> np.ndarray:
    """Blend a class colour over every pixel of the image and write it as PNG.

    Args:
        image: file path or BGR ``uint8`` array [H, W, 3].
        mask: class index per pixel [H, W]; values outside the palette (255 = ignore)
            stay unpainted.
        palette: one RGB colour per class (e.g. ``model.dataset_meta['palette']``); None
            draws a fixed random colour per class.
        out_png: where to write the RGB overlay; None writes nothing.
        opacity: weight of the class colour, in [0, 1]. Defaults to 0.5.

    Returns:
        The overlay, RGB ``uint8`` [H, W, 3].
    """
    img = _read_bgr(image)[..., ::-1].astype(np.float32)  # RGB [H, W, 3]
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
