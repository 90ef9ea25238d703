"""The one image reader of mmbeit.apis, and its colour convention.

Every image that ``inference_model``, ``inference_segmentor``, ``save_overlay`` and
the MIM visualizer take is a file path, a ``PIL.Image`` or a numpy array, and arrays are **BGR**
(OpenMMLab's convention: what ``cv2.imread`` and ``mmcv.imread`` give, and what the
configs' ``LoadImageFromFile`` gives the test pipelines, whose data preprocessors
turn it into RGB with ``to_rgb`` / ``bgr_to_rgb``). Pictures that mmbeit draws for
people (overlays, MIM grids) are returned and written as RGB.

:func:`read_image` gives ``uint8 [H, W, 3]`` BGR. Files are decoded as the configs'
``LoadImageFromFile`` decodes them (mmcv, OpenCV's colour mode), and arrays are
converted alike:

================================  ===================================================
grayscale (file, ``[H, W]``,      the gray value in all three channels
``[H, W, 1]`` array)
RGBA / BGRA (file, ``[H, W, 4]``)  the alpha channel is dropped (not composited)
16-bit (file, ``uint16`` array)   ``value >> 8`` (the high byte), as OpenCV does
palette / CMYK / other files      decoded to colours by OpenCV
float, bool, signed arrays        refused: the value range is ambiguous; convert to
                                  ``uint8`` yourself (e.g. ``(x * 255).round()`` for
                                  [0, 1] floats)
an empty file, a non-image file   refused, naming the file
================================  ===================================================

``PIL.Image`` objects (what transformers' image processors take) are read by their
mode, with the same conversions as files:

================================  ===================================================
``RGB``                           its colours (returned in BGR order)
``L``, ``1``, ``LA``              the gray value in all three channels (``LA``: alpha
                                  dropped)
``RGBA``, ``RGBa``                the alpha channel dropped (not composited)
``I;16`` (16-bit, any byte        ``value >> 8`` (the high byte), as for 16-bit files
order), ``I`` with values in
[0, 65535]
``P``, ``PA``, ``CMYK``,          converted to RGB by Pillow (``P``/``PA``: alpha
``YCbCr``, ``LAB``, ``HSV``       dropped)
``F``, ``I`` outside [0, 65535]   refused: the value range is ambiguous
================================  ===================================================
"""
import os
import os.path as osp
from typing import Union

import numpy as np

__all__ = ['ImageLike', 'read_image', 'to_bgr_uint8', 'pil_to_bgr_uint8']

ImageLike = Union[str, os.PathLike, np.ndarray, 'PIL.Image.Image']  # noqa: F821

EXPECTED = 'a uint8 array [H, W, 3] in BGR order (or [H, W] grayscale)'


def to_bgr_uint8(array: np.ndarray, name: str = 'image array') -> np.ndarray:
    """An image array -> ``uint8 [H, W, 3]`` BGR, by the conversions of the module docstring.

    Raises:
        ValueError: a shape or dtype that is refused; the message says what is expected.
    """
    if not isinstance(array, np.ndarray):
        raise TypeError(f'{name}: expected a numpy array, got {type(array).__name__}')
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ValueError(f'{name} has shape {list(array.shape)}; expected {EXPECTED}, '
                         'or [H, W, 4] BGRA')
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f'{name} is empty (shape {list(array.shape)}); expected {EXPECTED}')
    if array.dtype == np.uint16:
        array = (array >> 8).astype(np.uint8)  # the high byte, as OpenCV reads 16-bit files
    elif array.dtype != np.uint8:
        hint = (' (for values in [0, 1]: (x * 255).round().astype(np.uint8))' if np.issubdtype(
            array.dtype, np.floating) else '')
        raise ValueError(f'{name} has dtype {array.dtype}; expected {EXPECTED}. The value '
                         f'range of other dtypes is ambiguous: convert it yourself{hint}')
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    elif array.shape[2] == 4:
        array = array[..., :3]  # BGRA: alpha dropped, as OpenCV's colour mode does
    return np.ascontiguousarray(array)


def _is_pil_image(image: object) -> bool:
    """Whether ``image`` is a ``PIL.Image.Image`` (without importing Pillow otherwise)."""
    import sys
    pil = sys.modules.get('PIL.Image')
    return pil is not None and isinstance(image, pil.Image)


def pil_to_bgr_uint8(image: 'PIL.Image.Image') -> np.ndarray:  # noqa: F821
    """A ``PIL.Image`` -> ``uint8 [H, W, 3]`` BGR, by the mode table of the module docstring.

    Raises:
        ValueError: a mode whose value range is ambiguous (``F``; ``I`` outside [0, 65535]).
    """
    mode = image.mode
    name = f'PIL image (mode {mode!r}, size {image.size[0]}x{image.size[1]})'
    if mode in ('RGB', 'L', 'RGBA'):
        array = np.asarray(image)
    elif mode == '1':
        array = np.asarray(image.convert('L'))
    elif mode == 'LA':
        array = np.asarray(image)[..., 0]
    elif mode == 'RGBa':
        array = np.asarray(image.convert('RGBA'))
    elif mode.startswith('I;16'):
        array = np.asarray(image).astype(np.uint16)  # native order, whatever the file's
    elif mode == 'I':
        values = np.asarray(image)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise ValueError(f'{name} has values in [{values.min()}, {values.max()}]; mode I '
                             'is read as 16-bit, [0, 65535]. Convert it to RGB or L yourself')
        array = values.astype(np.uint16)
    elif mode == 'F':
        raise ValueError(f'{name}: float images are refused, the value range is ambiguous; '
                         'convert it yourself, e.g. image.convert("L") or to uint8 with numpy')
    else:  # P, PA, CMYK, YCbCr, LAB, HSV, ...: Pillow knows their colours
        array = np.asarray(image.convert('RGB'))
    if array.ndim == 3:
        array = array[..., :3][..., ::-1]  # RGB(A) -> BGR, alpha dropped
    return to_bgr_uint8(np.ascontiguousarray(array), name=name)


def read_image(image: ImageLike) -> np.ndarray:
    """A file path, a ``PIL.Image`` or an image array -> ``uint8 [H, W, 3]`` in BGR order.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: an empty file, a file that is not an image, or a refused array;
            the message names the file and what is expected.
        TypeError: neither a path, a PIL image nor an array.
    """
    if isinstance(image, np.ndarray):
        return to_bgr_uint8(image)
    if _is_pil_image(image):
        return pil_to_bgr_uint8(image)
    if not isinstance(image, (str, os.PathLike)):
        raise TypeError(f'image must be a file path or a numpy array ({EXPECTED}) or a '
                        f'PIL.Image, got {type(image).__name__}')
    path = os.fspath(image)
    if not osp.isfile(path):
        raise FileNotFoundError(f'image not found: {path}')
    with open(path, 'rb') as f:
        data = f.read()
    if not data:
        raise ValueError(f'{path} is an empty file (0 bytes); expected an image file '
                         '(JPEG, PNG, BMP, TIFF, WebP, ...)')
    import mmcv
    try:
        img = mmcv.imfrombytes(data, flag='color', channel_order='bgr', backend='cv2')
    except Exception as e:  # noqa: BLE001  (any decoder failure: not an image)
        raise ValueError(f'{path} could not be decoded as an image ({e}); expected an image '
                         'file (JPEG, PNG, BMP, TIFF, WebP, ...)') from None
    if img is None or img.size == 0:
        raise ValueError(f'{path} is not an image file OpenCV can decode ({len(data)} bytes, '
                         f'starting {data[:8]!r}); expected JPEG, PNG, BMP, TIFF, WebP, ...')
    return to_bgr_uint8(img, name=path)
