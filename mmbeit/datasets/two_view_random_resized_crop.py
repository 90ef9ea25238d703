"""One random resized crop, resized twice: the backbone's and the tokenizer's
view of the same pixels (BEiT pretraining: 224 bicubic + 112 lanczos for
DALL-E, crop scale 0.08-1; BEiT v2: 224 bicubic + 224 bicubic for VQ-KD, crop
scale 0.2-1, unilm's beit2/PRETRAINING.md).

mmpretrain's ``RandomResizedCropAndInterpolationWithTwoPic`` does this with
three defects, hence our own:

* it resizes with OpenCV, whose bicubic and Lanczos kernels do not widen when
  shrinking: a crop of several hundred pixels brought down to 112 aliases
  (period-3 stripes come out with std 80 instead of 2, and a biased mean),
  while unilm feeds DALL-E PIL's antialiased Lanczos. We resize with Pillow
  by default (``backend='cv2'`` keeps mmpretrain's behaviour);
* its ``randint(0, H - h)`` excludes the last offset and it rejects crops as
  large as the image (``w < W``), so the whole image is never a crop;
* its range check is a no-op (a bare string, nothing raised).
"""
import math
from typing import Sequence, Tuple, Union

import mmcv
import numpy as np
from mmcv.transforms import BaseTransform
from mmengine.utils import to_2tuple

from mmbeit.registry import TRANSFORMS

__all__ = ['TwoViewRandomResizedCrop']

_INTERPOLATIONS = {
    'pillow': ('nearest', 'bilinear', 'bicubic', 'box', 'lanczos', 'hamming'),
    'cv2': ('nearest', 'bilinear', 'bicubic', 'area', 'lanczos'),
}


def _pair(size: Union[int, Sequence[int]], name: str) -> Tuple[int, int]:
    size = tuple(to_2tuple(size))
    if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
        raise ValueError(f'TwoViewRandomResizedCrop: {name} must be a '
                         f'positive int or (height, width), got {size!r}')
    return size


@TRANSFORMS.register_module()
class TwoViewRandomResizedCrop(BaseTransform):
    """Crop a random area and aspect ratio, then resize it to two sizes.

    **Required keys:** ``img``. **Modified keys:** ``img`` (becomes
    ``[view, second_view]``, which mmpretrain's ``PackInputs`` and
    ``default_collate`` turn into two batches), ``img_shape`` (the first
    view's). **Added keys:** ``crop_bbox`` (x1, y1, x2, y2 in the input).

    Randomness comes from the global NumPy RNG, as in every mmcv and
    mmpretrain transform, which mmengine seeds in the main process and in
    every dataloader worker.

    Args:
        size: the first (backbone) view, int or (height, width).
            Defaults to 224.
        second_size: the second (tokenizer) view. Defaults to 112.
        scale: range of the crop's area as a fraction of the image's.
            Defaults to (0.08, 1.0).
        ratio: range of the crop's aspect ratio (width / height), sampled
            log-uniformly. Defaults to (3/4, 4/3).
        interpolation: of the first view. Defaults to 'bicubic'.
        second_interpolation: of the second view. Defaults to 'lanczos'.
        backend: 'pillow' (antialiased, as unilm; needs uint8 images) or
            'cv2' (as mmpretrain). Defaults to 'pillow'.
    """

    def __init__(self,
                 size: Union[int, Sequence[int]] = 224,
                 second_size: Union[int, Sequence[int]] = 112,
                 scale: Tuple[float, float] = (0.08, 1.0),
                 ratio: Tuple[float, float] = (3. / 4., 4. / 3.),
                 interpolation: str = 'bicubic',
                 second_interpolation: str = 'lanczos',
                 backend: str = 'pillow') -> None:
        self.size = _pair(size, 'size')
        self.second_size = _pair(second_size, 'second_size')
        if not 0 < scale[0] <= scale[1]:
            raise ValueError('TwoViewRandomResizedCrop: scale must be (min, '
                             f'max) with 0 < min <= max, got {scale!r}')
        if not 0 < ratio[0] <= ratio[1]:
            raise ValueError('TwoViewRandomResizedCrop: ratio must be (min, '
                             f'max) with 0 < min <= max, got {ratio!r}')
        if backend not in _INTERPOLATIONS:
            raise ValueError('TwoViewRandomResizedCrop: backend must be one '
                             f'of {list(_INTERPOLATIONS)}, got {backend!r}')
        for name, value in (('interpolation', interpolation), ('second_interpolation',
                                                               second_interpolation)):
            if value not in _INTERPOLATIONS[backend]:
                raise ValueError(f'TwoViewRandomResizedCrop: {name} must be one of '
                                 f'{list(_INTERPOLATIONS[backend])} with backend '
                                 f'{backend!r}, got {value!r}')
        self.scale = tuple(scale)
        self.ratio = tuple(ratio)
        self.interpolation = interpolation
        self.second_interpolation = second_interpolation
        self.backend = backend

    def get_params(self, img_h: int, img_w: int) -> Tuple[int, int, int, int]:
        """A crop (top, left, height, width), as torchvision's and timm's."""
        area = img_h * img_w
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target_area = np.random.uniform(*self.scale) * area
            aspect_ratio = math.exp(np.random.uniform(*log_ratio))
            w = int(round(math.sqrt(target_area * aspect_ratio)))
            h = int(round(math.sqrt(target_area / aspect_ratio)))
            if 0 < w <= img_w and 0 < h <= img_h:
                top = np.random.randint(0, img_h - h + 1)
                left = np.random.randint(0, img_w - w + 1)
                return int(top), int(left), h, w
        # Fallback: the central crop of the nearest allowed aspect ratio.
        in_ratio = img_w / img_h
        if in_ratio < self.ratio[0]:
            w, h = img_w, int(round(img_w / self.ratio[0]))
        elif in_ratio > self.ratio[1]:
            w, h = int(round(img_h * self.ratio[1])), img_h
        else:
            w, h = img_w, img_h
        return (img_h - h) // 2, (img_w - w) // 2, h, w

    def transform(self, results: dict) -> dict:
        """Replace ``results['img']`` by the two views of one crop."""
        img = results['img']
        top, left, h, w = self.get_params(*img.shape[:2])
        crop = img[top:top + h, left:left + w]
        views = [
            mmcv.imresize(crop, (size[1], size[0]), interpolation=interp,
                          backend=self.backend)  # mmcv takes (w, h)
            for size, interp in ((self.size, self.interpolation), (self.second_size,
                                                                   self.second_interpolation))
        ]
        results['img'] = views
        results['img_shape'] = views[0].shape[:2]
        results['crop_bbox'] = np.array([left, top, left + w, top + h])
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(size={self.size}, '
                f'second_size={self.second_size}, scale={self.scale}, '
                f'ratio={self.ratio}, interpolation={self.interpolation!r}, '
                f'second_interpolation={self.second_interpolation!r}, '
                f'backend={self.backend!r})')
