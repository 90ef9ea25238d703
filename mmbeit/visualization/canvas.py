"""Pixel helpers shared by the PNG grids of :mod:`.mim_visualizer` and :mod:`.attention_maps`."""
import os
import os.path as osp
from typing import Tuple

import numpy as np

__all__ = ['upsample_nearest', 'default_scale', 'save_png']


def upsample_nearest(grid: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """Nearest upsampling of a [h, w(, c)] grid to the pixel size (H, W): one block per patch."""
    rows = np.arange(size[0]) * grid.shape[0] // size[0]
    cols = np.arange(size[1]) * grid.shape[1] // size[1]
    return grid[rows][:, cols]


def default_scale(image: np.ndarray, min_side: int = 192) -> int:
    """The integer upscaling that gives panels of at least ``min_side`` pixels."""
    return max(1, -(-min_side // min(image.shape[:2])))


def save_png(grid: np.ndarray, out_file: str) -> np.ndarray:
    """Write an RGB uint8 [H, W, 3] grid to ``out_file`` (folders made as needed); returns it."""
    from PIL import Image
    if osp.dirname(out_file):
        os.makedirs(osp.dirname(out_file), exist_ok=True)
    Image.fromarray(grid).save(out_file, format='PNG')
    return grid
