"""Load any image file as a 3-channel image, with errors that name the file."""
from typing import Optional

import numpy as np
from mmcv.transforms import LoadImageFromFile
from mmengine.logging import print_log

from mmbeit.registry import TRANSFORMS

ON_ERROR = ('raise', 'skip')


@TRANSFORMS.register_module()
class LoadColorImageFromFile(LoadImageFromFile):
    """mmcv's ``LoadImageFromFile``, always 3 channels, with clear errors for bad files.

    Grayscale, grayscale+alpha, palette, RGBA and 16-bit files all become a
    ``[H, W, 3]`` uint8 image in BGR order (OpenMMLab's convention; the data
    preprocessors' ``to_rgb=True`` turns it to RGB); alpha is dropped, as
    OpenCV does. A missing file or one that does not decode raises an error
    that names it, instead of mmcv's ``AssertionError`` (cv2 backend) or a
    decoder error without the path (pillow backend).

    Args:
        on_error: ``'raise'`` (default) stops with the error; ``'skip'`` logs a
            warning that names the file and returns None, so a training dataset
            draws another sample (mmengine's ``BaseDataset`` refetches; test
            datasets refuse None). For long runs over data you cannot clean.
        to_float32: Return float32 instead of uint8.
        imdecode_backend: ``'cv2'`` (default) or ``'pillow'``, see ``mmcv.imfrombytes``.
        backend_args: File backend arguments, see ``mmengine.fileio``.
    """

    def __init__(self,
                 on_error: str = 'raise',
                 to_float32: bool = False,
                 imdecode_backend: str = 'cv2',
                 backend_args: Optional[dict] = None) -> None:
        if on_error not in ON_ERROR:
            raise ValueError(f'unknown on_error {on_error!r}; choose one of {ON_ERROR}')
        super().__init__(
            to_float32=to_float32,
            color_type='color',
            imdecode_backend=imdecode_backend,
            ignore_empty=False,
            backend_args=backend_args)
        self.on_error = on_error

    def transform(self, results: dict) -> Optional[dict]:
        filename = results['img_path']
        try:
            results = super().transform(results)
        except FileNotFoundError as e:
            return self._fail(FileNotFoundError(f'image file not found: {filename}'), e)
        except Exception as e:  # decoders raise many kinds; mmcv asserts on cv2's None
            return self._fail(
                OSError(f'cannot decode the image file {filename} ({type(e).__name__}: {e}); it is '
                        'corrupt, truncated or not an image. Replace or remove it, or load with '
                        "on_error='skip'."), e)
        results['img'] = _to_three_channels(results['img'])
        return results

    def _fail(self, error: Exception, cause: Exception) -> None:
        if self.on_error == 'raise':
            raise error from cause
        print_log(f'{error}; skipped', logger='current', level=30)  # logging.WARNING
        return None

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(on_error={self.on_error!r}, to_float32={self.to_float32}, '
                f'imdecode_backend={self.imdecode_backend!r}, backend_args={self.backend_args})')


def _to_three_channels(img: np.ndarray) -> np.ndarray:
    """[H, W], [H, W, 1], [H, W, 2] (gray+alpha), [H, W, 4] -> [H, W, 3]; alpha dropped."""
    if img.ndim == 2:
        img = img[:, :, None]
    channels = img.shape[2]
    if channels in (1, 2):
        img = np.repeat(img[:, :, :1], 3, axis=2)
    elif channels == 4:
        img = img[:, :, :3]
    elif channels != 3:
        raise ValueError(f'an image with {channels} channels cannot be made 3-channel')
    return np.ascontiguousarray(img)
