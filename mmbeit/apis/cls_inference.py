"""Image classification of one image: the config's test pipeline and ``test_step``.

The image is read by :func:`mmbeit.utils.image_io.read_image` (files, ``PIL.Image``
objects and BGR arrays, one colour convention), then goes through the config's test
pipeline without its loading step, as ``tools/test.py`` would prepare it.
"""
import copy
from typing import Any, Callable

from mmbeit.utils.image_io import ImageLike, read_image

__all__ = ['classification_pipeline', 'classify']


def classification_pipeline(cfg: Any) -> Callable[[dict], dict]:
    """The config's test pipeline (``test_dataloader``'s, else ``val_dataloader``'s, else
    ``test_pipeline``), minus image loading."""
    from mmcv.transforms import Compose
    from mmengine.registry import TRANSFORMS, DefaultScope
    loader = cfg.get('test_dataloader') or cfg.get('val_dataloader')
    pipeline = loader['dataset']['pipeline'] if loader else cfg.get('test_pipeline')
    if not pipeline:
        raise ValueError('the config has no test_dataloader, val_dataloader or test_pipeline '
                         'whose pipeline says how to prepare an image')
    steps = [
        copy.deepcopy(t) for t in pipeline
        if not str(t.get('type', '')).split('.')[-1].startswith('LoadImageFrom')
    ]
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope') or 'mmpretrain'):
        return Compose([TRANSFORMS.build(t) for t in steps])


def classify(model: Any, image: ImageLike) -> dict:
    """Classify one image with a built classifier (``model.cfg``, ``model.test_step``).

    Returns:
        dict(pred_label=int, pred_score=float, pred_scores=ndarray [num_classes],
        pred_class=str, or None when the class names are unknown).
    """
    import torch
    from mmengine.dataset import pseudo_collate
    img = read_image(image)  # BGR uint8 [H, W, 3]
    pipeline = classification_pipeline(model.cfg)
    data = pipeline(dict(img=img, img_shape=img.shape[:2], ori_shape=img.shape[:2]))
    with torch.no_grad():
        sample = model.test_step(pseudo_collate([data]))[0]
    scores = sample.pred_score.detach().float().cpu().numpy()  # [num_classes]
    label = int(sample.pred_label.item())
    result = dict(pred_label=label, pred_score=float(scores[label]), pred_scores=scores)
    classes = (getattr(model, 'dataset_meta', None) or {}).get('classes')
    result['pred_class'] = classes[label] if classes else None
    return result
