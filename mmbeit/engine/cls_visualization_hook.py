"""``tools/test.py --show-dir`` for classifiers: each test image with its predicted class, as
people see it.

mmpretrain's ``VisualizationHook`` draws the test pipeline's input tensor as if it were
RGB, but the pipelines load images in BGR (``LoadImageFromFile``; the data preprocessor's
``to_rgb`` converts them), so a red image is drawn blue. Its text is sized to the image
(7 pt at a 224-pixel short edge, 2 pt at 64), unreadable on small images. This hook
draws RGB and scales small images up first, so the label stays legible.
"""
import math
import os.path as osp
from typing import Optional, Sequence

import numpy as np
from mmengine.hooks import Hook

from mmbeit.registry import HOOKS

__all__ = ['ClsVisualizationHook']


@HOOKS.register_module()
class ClsVisualizationHook(Hook):
    """Write every ``interval``-th test image with its prediction to ``out_dir`` as PNG.

    Args:
        out_dir: folder of the PNGs, named ``<image file name>_<step>.png``.
        interval: draw every ``interval``-th sample. Defaults to 1.
        min_size: images whose short edge is smaller are scaled up to it (nearest
            neighbour, so pixels stay visible) before the text is drawn. Defaults to 448
            (mmpretrain's text is 14 pt there).
        bgr_inputs: whether the pipeline's images are BGR (``LoadImageFromFile``).
            Defaults to True.
        draw_gt: also write the ground-truth label. Defaults to True.
    """

    priority = 'NORMAL'

    def __init__(self,
                 out_dir: str,
                 interval: int = 1,
                 min_size: int = 448,
                 bgr_inputs: bool = True,
                 draw_gt: bool = True) -> None:
        if interval < 1:
            raise ValueError(f'interval must be >= 1, got {interval}')
        if min_size < 1:
            raise ValueError(f'min_size must be >= 1, got {min_size}')
        self.out_dir = out_dir
        self.interval = interval
        self.min_size = min_size
        self.bgr_inputs = bgr_inputs
        self.draw_gt = draw_gt

    def to_picture(self, image) -> np.ndarray:
        """A pipeline input tensor [3, H, W] -> the RGB ``uint8`` picture [H', W', 3] to draw on
        (scaled up so that its short edge is at least ``min_size``)."""
        import mmcv
        img = image.permute(1, 2, 0).cpu().numpy().astype(np.uint8)  # [H, W, 3]
        if self.bgr_inputs and img.shape[2] == 3:
            img = img[..., ::-1]
        short = min(img.shape[:2])
        if short < self.min_size:
            factor = math.ceil(self.min_size / short)
            img = mmcv.imrescale(img, factor, interpolation='nearest')
        return np.ascontiguousarray(img)

    def after_test_iter(self,
                        runner,
                        batch_idx: int,
                        data_batch: dict,
                        outputs: Optional[Sequence] = None) -> None:
        """Draw the samples of this batch whose index is a multiple of ``interval``."""
        from mmengine.visualization import Visualizer
        visualizer = Visualizer.get_current_instance()
        samples = outputs or []
        start = len(samples) * batch_idx
        first = math.ceil(start / self.interval) * self.interval
        for index in range(first, start + len(samples), self.interval):
            sample = samples[index - start]
            name = (osp.basename(sample.get('img_path')) if 'img_path' in sample else str(index))
            visualizer.visualize_cls(
                image=self.to_picture(data_batch['inputs'][index - start]),
                data_sample=sample,
                draw_gt=self.draw_gt,
                name=name,
                out_file=osp.join(self.out_dir, f'{name}_0.png'))
