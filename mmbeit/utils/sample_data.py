"""A small, learnable, procedurally drawn image dataset bundled with mmbeit.

The generator draws shapes and textures with numpy and writes them with PIL.
It is deterministic: one seed gives byte-identical files on one machine, and
every image has its own random stream (keyed by seed, task, split and index),
so changing the counts does not change the images that both runs share.

Layout under ``root`` (default ``data/sample``)::

    imagenet/                    classification, ImageNet folder format
        train/<class>/<class>_0000.JPEG ...
        val/<class>/<class>_0000.JPEG ...
        meta/train.txt           "<class>/<file> <label>" per line
        meta/val.txt
        meta/classes.txt         one class name per line, label order
    ade/                         segmentation, ADE20K folder format
        images/training/00000.jpg ...     annotations/training/00000.png ...
        images/validation/00000.jpg ...   annotations/validation/00000.png ...
    demo/
        circle.png               a classification sample (class 'circle')
        shapes.png               a segmentation sample
    .complete                    written last; holds the generation settings

Classification (:data:`SAMPLE_CLS_CLASSES`, alphabetical, so reading the
folders and reading ``meta/*.txt`` give the same labels): one shape on a
mottled background, or a texture over the whole image, 64x64 JPEGs. Random
positions, sizes, rotations, periods, noise and colours (with a minimum
contrast); the shape's (or the texture's first) colour is drawn from a band
of hues per class, a soft cue that the bands' overlap keeps from being the
whole answer (see ``_CLASS_HUES``).

Segmentation (:data:`SAMPLE_SEG_CLASSES`): a mottled, weakly saturated
background plus three to five shapes (circles, squares, triangles, striped
rectangles) that may overlap, coloured like the classification shapes.
Pixel shares: about 60% background, 7-10% per shape class, 5% ignore.
Label maps are uint8 PNGs in the ADE20K convention: 0 = ignore (pixels on a
shape border, whose 4x4 sub-pixels do not all agree), 1..K =
``SAMPLE_SEG_CLASSES``; read them with ``reduce_zero_label=True``, which
gives 0..K-1 and 255 for ignore.

Reading the data (verified in ``tests/test_sample_data.py``):

* mmpretrain: ``ImageNet`` defaults to the 1000 ImageNet classes, so pass the
  classes (``ImageNet.METAINFO`` would otherwise name 1000 classes while the
  labels only cover five)::

      dict(type='ImageNet', data_root='data/sample/imagenet', split='train',
           classes=SAMPLE_CLS_CLASSES, pipeline=...)

  ``split`` sets ``data_prefix=split`` and ``ann_file='meta/<split>.txt'``.
  ``CustomDataset(data_root=..., data_prefix='train')`` (no ``ann_file``)
  reads the class folders and names the classes after them; it gives the
  same labels.
* mmseg: ``ADE20KDataset`` cannot take these classes: with a ``metainfo``
  override its ``get_label_map`` requires the new classes to be a subset of
  the 150 ADE20K names and remaps the label values by ADE20K index
  (``ValueError`` otherwise). Use its parent ``BaseSegDataset``, which has no
  class list of its own, with the ADE20K suffixes and ``reduce_zero_label``::

      dict(type='BaseSegDataset', data_root='data/sample/ade',
           data_prefix=dict(img_path='images/training',
                            seg_map_path='annotations/training'),
           img_suffix='.jpg', seg_map_suffix='.png', reduce_zero_label=True,
           metainfo=dict(classes=SAMPLE_SEG_CLASSES,
                         palette=SAMPLE_SEG_PALETTE),
           pipeline=[dict(type='LoadImageFromFile'),
                     dict(type='LoadAnnotations', reduce_zero_label=True),
                     ...])

  (``ADE20KDataset`` without a ``metainfo`` reads the files too, but names
  150 classes.)
"""
import colorsys
import inspect
import json
import math
import os
import os.path as osp
import shutil
from functools import lru_cache
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

#: Classification classes, in label order (alphabetical, like folder scans).
SAMPLE_CLS_CLASSES: Tuple[str, ...] = ('checkerboard', 'circle', 'square', 'stripes', 'triangle')
#: Segmentation classes, in label order after ``reduce_zero_label``
#: (label value ``i + 1`` in the PNGs).
SAMPLE_SEG_CLASSES: Tuple[str, ...] = ('background', 'circle', 'square', 'triangle', 'stripes')
#: One RGB colour per segmentation class.
SAMPLE_SEG_PALETTE: List[List[int]] = [[120, 120, 120], [220, 20, 60], [0, 130, 200], [255, 200, 0],
                                       [60, 180, 75]]

#: File written last by a complete generation.
MARKER_FILE = '.complete'
#: Bump when the drawing changes, so ``ensure_sample_data`` redraws old data.
FORMAT_VERSION = 2

_SUPERSAMPLE = 4  # sub-pixels per pixel side, for anti-aliased edges
_JPEG_QUALITY = 95
_MIN_CONTRAST = 110.  # smallest RGB distance between a shape and its ground
_TASK_CLS, _TASK_SEG, _TASK_DEMO = 0, 1, 2
_SPLIT_IDS = {'train': 0, 'val': 1}
_SUBDIRS = ('imagenet', 'ade', 'demo')
# Centre hue (degrees) of each class's foreground colour (near its palette
# colour for segmentation), and how far a colour's hue may stray from it: the
# bands overlap a little, so colour is a soft cue, and the shape or texture
# tells the rest. Without it a tiny ViT (patch 16 on 64x64) reaches ~45%
# top-1 on the classification data in 40 epochs; with it ~85%.
_CLASS_HUES = {
    'checkerboard': 280.,
    'circle': 350.,
    'square': 215.,
    'stripes': 125.,
    'triangle': 50.
}
_HUE_JITTER = 40.


# ----------------------------------------------------------------------------
# Drawing helpers. Geometry is evaluated on a supersampled grid of sub-pixel
# coordinates in [0, size) (S = 4 * size per side) and averaged into a
# per-pixel coverage; images are composited at pixel resolution from it.
# ----------------------------------------------------------------------------
@lru_cache(maxsize=4)
def _grid(size: int) -> Tuple[np.ndarray, np.ndarray]:
    """Sub-pixel centre coordinates ``(yy, xx)``, each float32 [S, S].

    float32 halves the drawing time; the geometry helpers take Python floats
    so that numpy (NEP 50) keeps their results in float32.
    """
    coords = (np.arange(size * _SUPERSAMPLE, dtype=np.float32) + 0.5) / _SUPERSAMPLE
    yy, xx = np.meshgrid(coords, coords, indexing='ij')
    yy.flags.writeable = False
    xx.flags.writeable = False
    return yy, xx


def _coverage(mask: np.ndarray) -> np.ndarray:
    """Fraction of each pixel's sub-pixels inside: [S, S] bool -> [H, W, 1]."""
    s = mask.shape[0] // _SUPERSAMPLE
    blocks = mask.reshape(s, _SUPERSAMPLE, s, _SUPERSAMPLE)
    cover = blocks.sum(axis=(1, 3), dtype=np.float32) / _SUPERSAMPLE**2
    return cover[..., None]


def _paint(img: np.ndarray, mask: np.ndarray, colour: np.ndarray) -> None:
    """Blend ``colour`` [3] into ``img`` [H, W, 3] over ``mask`` [S, S]."""
    cover = _coverage(mask)
    img *= 1 - cover
    img += cover * colour


def _rotated(yy: np.ndarray, xx: np.ndarray, cy: float, cx: float,
             angle: float) -> Tuple[np.ndarray, np.ndarray]:
    """Coordinates relative to ``(cy, cx)`` in a frame turned by ``angle``."""
    dy, dx = yy - float(cy), xx - float(cx)
    cos, sin = math.cos(angle), math.sin(angle)
    return cos * dx + sin * dy, -sin * dx + cos * dy  # (u, v)


def _circle(yy, xx, cy: float, cx: float, radius: float) -> np.ndarray:
    return (yy - float(cy))**2 + (xx - float(cx))**2 <= float(radius)**2


def _square(yy, xx, cy: float, cx: float, half: float, angle: float) -> np.ndarray:
    return _rectangle(yy, xx, cy, cx, half, half, angle)


def _rectangle(yy, xx, cy: float, cx: float, half_u: float, half_v: float,
               angle: float) -> np.ndarray:
    u, v = _rotated(yy, xx, cy, cx, angle)
    return (np.abs(u) <= float(half_u)) & (np.abs(v) <= float(half_v))


def _triangle(yy, xx, cy: float, cx: float, radius: float, angle: float) -> np.ndarray:
    """Equilateral triangle with circumradius ``radius``, a vertex at
    ``angle``: inside all three half-planes at the inradius ``radius / 2``."""
    dy, dx = yy - float(cy), xx - float(cx)
    inside = np.ones(yy.shape, dtype=bool)
    for k in range(3):
        normal = angle + math.pi + 2 * math.pi * k / 3  # faces the k-th edge
        dist = dx * math.cos(normal) + dy * math.sin(normal)
        inside &= dist <= float(radius) / 2
    return inside


def _stripes(yy, xx, period: float, angle: float, phase: float) -> np.ndarray:
    """Boolean stripes, each ``period / 2`` px wide, across ``angle``."""
    t = (xx * math.cos(angle) + yy * math.sin(angle)) / float(period)
    t += float(phase)
    return (t - np.floor(t)) < 0.5


def _checkerboard(yy, xx, cell: float, angle: float, phase: Tuple[float, float]) -> np.ndarray:
    u, v = _rotated(yy, xx, 0., 0., angle)
    iu = np.floor(u / float(cell) + float(phase[0]))
    iv = np.floor(v / float(cell) + float(phase[1]))
    return ((iu + iv) % 2) == 0


def _hsv_colour(rng: np.random.Generator, hue: Tuple[float, float], sat: Tuple[float, float],
                val: Tuple[float, float]) -> np.ndarray:
    """An RGB colour in [0, 255] with hue (degrees, may wrap), saturation
    and value drawn uniformly from the given ranges."""
    h = rng.uniform(*hue) % 360 / 360
    rgb = colorsys.hsv_to_rgb(h, rng.uniform(*sat), rng.uniform(*val))
    return np.array(rgb) * 255


def _random_colour(rng: np.random.Generator,
                   away_from: Optional[np.ndarray] = None,
                   hue: Optional[Tuple[float, float]] = None) -> np.ndarray:
    """A random RGB colour in [0, 255], at least ``_MIN_CONTRAST`` from
    ``away_from`` (the best of 32 tries when none is far enough).

    Uniform in RGB, or, with ``hue`` (degrees), of that hue with a
    saturation and value in [0.45, 1].
    """
    best, best_dist = None, -1.
    for _ in range(32):
        if hue is None:
            colour = rng.uniform(0, 255, size=3)
        else:
            colour = _hsv_colour(rng, hue, (0.45, 1.), (0.45, 1.))
        if away_from is None:
            return colour
        dist = float(np.linalg.norm(colour - away_from))
        if dist >= _MIN_CONTRAST:
            return colour
        if dist > best_dist:
            best, best_dist = colour, dist
    return best


def _mottled(rng: np.random.Generator, size: int, base: np.ndarray) -> np.ndarray:
    """A smooth texture around ``base`` (bilinear value noise): [H, W, 3]."""
    other = np.clip(base + rng.uniform(-70, 70, size=3), 0, 255)
    cells = int(rng.integers(3, 7))
    noise = rng.uniform(0, 1, size=(cells, cells)).astype(np.float32)
    weight = np.asarray(Image.fromarray(noise).resize((size, size), Image.BILINEAR))
    return (base + (other - base) * weight[..., None]).astype(np.float32)


def _finish(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Add pixel noise to a float image [H, W, 3]: uint8 [H, W, 3]."""
    sigma = rng.uniform(2, 12)
    img = img + rng.normal(0, sigma, size=img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------
# Classification images
# ----------------------------------------------------------------------------
def draw_cls_image(rng: np.random.Generator, class_name: str, size: int = 64) -> np.ndarray:
    """Draw one classification image of ``class_name``.

    Args:
        rng: The random generator to draw from.
        class_name: One of :data:`SAMPLE_CLS_CLASSES`.
        size: Image side in pixels. Defaults to 64.

    Returns:
        np.ndarray: uint8 RGB image [size, size, 3].
    """
    if class_name not in SAMPLE_CLS_CLASSES:
        raise ValueError(f'Unknown sample class {class_name!r}; allowed: '
                         f'{SAMPLE_CLS_CLASSES}')
    yy, xx = _grid(size)
    scale = size / 64

    hue = _CLASS_HUES[class_name]
    hue = (hue - _HUE_JITTER, hue + _HUE_JITTER)
    if class_name in ('stripes', 'checkerboard'):
        c1 = _random_colour(rng, hue=hue)
        c2 = _random_colour(rng, away_from=c1)
        angle = rng.uniform(0, np.pi)
        if class_name == 'stripes':
            pattern = _stripes(yy, xx, rng.uniform(6, 14) * scale, angle, rng.uniform(0, 1))
        else:
            pattern = _checkerboard(yy, xx,
                                    rng.uniform(5, 11) * scale, angle,
                                    tuple(rng.uniform(0, 1, size=2)))
        img = np.zeros((size, size, 3), dtype=np.float32) + c2
        _paint(img, pattern, c1)
        return _finish(img, rng)

    img = _mottled(rng, size, _random_colour(rng))
    colour = _random_colour(rng, away_from=img.mean(axis=(0, 1)), hue=hue)
    if class_name == 'circle':
        radius = rng.uniform(14, 26) * scale
        reach = radius
    elif class_name == 'square':
        half = rng.uniform(12, 20) * scale
        angle = rng.uniform(-np.pi / 9, np.pi / 9)  # up to 20 degrees
        reach = half * np.sqrt(2)
    else:  # triangle
        radius = rng.uniform(18, 30) * scale
        # Pointing up (y grows downwards), up to 20 degrees off.
        angle = -np.pi / 2 + rng.uniform(-np.pi / 9, np.pi / 9)
        reach = radius
    cy, cx = rng.uniform(reach, size - reach, size=2)
    if class_name == 'circle':
        mask = _circle(yy, xx, cy, cx, radius)
    elif class_name == 'square':
        mask = _square(yy, xx, cy, cx, half, angle)
    else:
        mask = _triangle(yy, xx, cy, cx, radius, angle)
    _paint(img, mask, colour)
    return _finish(img, rng)


# ----------------------------------------------------------------------------
# Segmentation images
# ----------------------------------------------------------------------------
def draw_seg_sample(rng: np.random.Generator, size: int = 64) -> Tuple[np.ndarray, np.ndarray]:
    """Draw one segmentation image and its ADE20K-style label map.

    A mottled, weakly saturated background (label 1) and three to five
    shapes drawn in turn (later ones cover earlier ones), each of a random
    class among circle (2), square (3), triangle (4), stripes (5). A shape's
    colour is random within its class's band of hues (a soft cue that lets a
    tiny model learn the task in minutes; the bands overlap a little and the
    shape tells the rest).

    Args:
        rng: The random generator to draw from.
        size: Image side in pixels. Defaults to 64.

    Returns:
        tuple: uint8 RGB image [size, size, 3] and uint8 label map
        [size, size] with 0 = ignore (mixed border pixels), 1..K = classes.
    """
    yy, xx = _grid(size)
    scale = size / 64
    img = _mottled(rng, size, _hsv_colour(rng, (0, 360), (0, .35), (.2, 1)))
    ground = img.mean(axis=(0, 1))
    labels = np.ones(yy.shape, dtype=np.uint8)  # [S, S], background = 1

    num_shapes = int(rng.integers(3, 6))
    for _ in range(num_shapes):
        label = int(rng.integers(2, len(SAMPLE_SEG_CLASSES) + 1))
        name = SAMPLE_SEG_CLASSES[label - 1]
        cy, cx = rng.uniform(6 * scale, size - 6 * scale, size=2)
        angle = rng.uniform(0, 2 * np.pi)
        hue = _CLASS_HUES[name]
        colour = _random_colour(rng, away_from=ground, hue=(hue - _HUE_JITTER, hue + _HUE_JITTER))
        if name == 'circle':
            mask = _circle(yy, xx, cy, cx, rng.uniform(8, 17) * scale)
        elif name == 'square':
            mask = _square(yy, xx, cy, cx, rng.uniform(7, 15) * scale, angle)
        elif name == 'triangle':
            mask = _triangle(yy, xx, cy, cx, rng.uniform(13, 25) * scale, angle)
        else:  # stripes: a striped rectangle
            mask = _rectangle(yy, xx, cy, cx,
                              rng.uniform(8, 16) * scale,
                              rng.uniform(6, 12) * scale, angle)
            other = colour * rng.uniform(0.25, 0.55)  # a darker shade
            pattern = _stripes(yy, xx,
                               rng.uniform(4, 7) * scale, rng.uniform(0, np.pi), rng.uniform(0, 1))
            _paint(img, mask & ~pattern, other)
            _paint(img, mask & pattern, colour)
        if name != 'stripes':
            _paint(img, mask, colour)
        labels[mask] = label

    # A pixel takes a label only when all its sub-pixels agree on it.
    s = size
    blocks = labels.reshape(s, _SUPERSAMPLE, s, _SUPERSAMPLE)
    lo, hi = blocks.min(axis=(1, 3)), blocks.max(axis=(1, 3))
    seg = np.where(lo == hi, lo, 0).astype(np.uint8)  # [H, W]
    return _finish(img, rng), seg


# ----------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------
def _rng(seed: int, task: int, split: int, index: int) -> np.random.Generator:
    """An independent random stream per image."""
    return np.random.default_rng([seed, task, split, index])


def _save(img: np.ndarray, path: str) -> None:
    os.makedirs(osp.dirname(path), exist_ok=True)
    image = Image.fromarray(img)
    if path.lower().endswith(('.jpg', '.jpeg')):
        image.save(path, format='JPEG', quality=_JPEG_QUALITY)
    else:
        image.save(path, format='PNG')


def _write_lines(path: str, lines: Sequence[str]) -> None:
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, 'w', encoding='utf-8', newline='\n') as f:
        f.write(''.join(line + '\n' for line in lines))


def _write_imagenet(root: str, seed: int, counts: Dict[str, int], size: int) -> None:
    _write_lines(osp.join(root, 'meta', 'classes.txt'), SAMPLE_CLS_CLASSES)
    for split, count in counts.items():
        lines = []
        for label, name in enumerate(SAMPLE_CLS_CLASSES):
            for i in range(count):
                # One stream per (class, index): interleave them by label.
                rng = _rng(seed, _TASK_CLS, _SPLIT_IDS[split], i * len(SAMPLE_CLS_CLASSES) + label)
                rel = f'{name}/{name}_{i:04d}.JPEG'
                _save(draw_cls_image(rng, name, size), osp.join(root, split, rel))
                lines.append(f'{rel} {label}')
        _write_lines(osp.join(root, 'meta', f'{split}.txt'), lines)


def _write_ade(root: str, seed: int, counts: Dict[str, int], size: int) -> None:
    folders = {'train': 'training', 'val': 'validation'}
    for split, count in counts.items():
        folder = folders[split]
        for i in range(count):
            img, seg = draw_seg_sample(_rng(seed, _TASK_SEG, _SPLIT_IDS[split], i), size)
            _save(img, osp.join(root, 'images', folder, f'{i:05d}.jpg'))
            _save(seg, osp.join(root, 'annotations', folder, f'{i:05d}.png'))


def _write_demo(root: str, seed: int, size: int) -> None:
    _save(
        draw_cls_image(_rng(seed, _TASK_DEMO, 0, 0), 'circle', size), osp.join(root, 'circle.png'))
    img, _ = draw_seg_sample(_rng(seed, _TASK_DEMO, 0, 1), size)
    _save(img, osp.join(root, 'shapes.png'))


def _settings(seed: int, cls_train_per_class: int, cls_val_per_class: int, seg_train: int,
              seg_val: int, img_size: int) -> dict:
    return dict(
        format_version=FORMAT_VERSION,
        seed=seed,
        cls_train_per_class=cls_train_per_class,
        cls_val_per_class=cls_val_per_class,
        seg_train=seg_train,
        seg_val=seg_val,
        img_size=img_size)


def generate_sample_data(root: str = 'data/sample',
                         seed: int = 0,
                         cls_train_per_class: int = 100,
                         cls_val_per_class: int = 20,
                         seg_train: int = 200,
                         seg_val: int = 40,
                         img_size: int = 64) -> str:
    """(Re)write the whole sample dataset under ``root``.

    Removes ``imagenet/``, ``ade/`` and ``demo/`` under ``root`` first (and
    nothing else), then writes them, and writes the marker file last.

    Args:
        root: Output folder. Defaults to ``'data/sample'``.
        seed: Random seed. Defaults to 0.
        cls_train_per_class: Training images per classification class.
            Defaults to 100.
        cls_val_per_class: Validation images per classification class.
            Defaults to 20.
        seg_train: Training images for segmentation. Defaults to 200.
        seg_val: Validation images for segmentation. Defaults to 40.
        img_size: Image side in pixels (at least 32). Defaults to 64.

    Returns:
        str: ``root``.
    """
    for name, value in dict(
            cls_train_per_class=cls_train_per_class,
            cls_val_per_class=cls_val_per_class,
            seg_train=seg_train,
            seg_val=seg_val).items():
        if value < 1:
            raise ValueError(f'{name} must be >= 1, got {value}')
    if img_size < 32:
        raise ValueError(f'img_size must be >= 32, got {img_size}')
    root = os.fspath(root)
    settings = _settings(seed, cls_train_per_class, cls_val_per_class, seg_train, seg_val, img_size)
    marker = osp.join(root, MARKER_FILE)
    if osp.exists(marker):
        os.remove(marker)
    for sub in _SUBDIRS:
        shutil.rmtree(osp.join(root, sub), ignore_errors=True)

    _write_imagenet(
        osp.join(root, 'imagenet'), seed, dict(train=cls_train_per_class, val=cls_val_per_class),
        img_size)
    _write_ade(osp.join(root, 'ade'), seed, dict(train=seg_train, val=seg_val), img_size)
    _write_demo(osp.join(root, 'demo'), seed, img_size)
    with open(marker, 'w', encoding='utf-8') as f:
        json.dump(settings, f, indent=2, sort_keys=True)
    return root


# The settings of generate_sample_data (all but root), with their defaults.
_DEFAULTS = {
    name: param.default
    for name, param in inspect.signature(generate_sample_data).parameters.items() if name != 'root'
}


def is_sample_data_complete(root: str = 'data/sample', **settings) -> bool:
    """Whether ``root`` holds a complete generation with these settings.

    Args:
        root: The dataset folder.
        **settings: Keyword arguments of :func:`generate_sample_data`
            (other than ``root``); missing ones take its defaults.
    """
    marker = osp.join(os.fspath(root), MARKER_FILE)
    if not osp.isfile(marker):
        return False
    try:
        with open(marker, encoding='utf-8') as f:
            written = json.load(f)
    except (OSError, ValueError):
        return False
    return written == _settings(**{**_DEFAULTS, **settings})


def ensure_sample_data(root: str = 'data/sample', **settings) -> str:
    """Generate the sample dataset under ``root`` unless it is already there.

    Generates when the marker file is missing (never generated, or
    interrupted) or records other settings (including an older
    :data:`FORMAT_VERSION`). Not safe to call from several processes at once:
    call it once before starting distributed jobs.

    Args:
        root: The dataset folder. Defaults to ``'data/sample'``.
        **settings: Keyword arguments of :func:`generate_sample_data`.

    Returns:
        str: ``root``.
    """
    unknown = set(settings) - set(_DEFAULTS)
    if unknown:
        raise TypeError(f'Unknown settings {sorted(unknown)}; allowed: '
                        f'{sorted(_DEFAULTS)}')
    root = os.fspath(root)
    if not is_sample_data_complete(root, **settings):
        generate_sample_data(root, **settings)
    return root


__all__ = [
    'SAMPLE_CLS_CLASSES', 'SAMPLE_SEG_CLASSES', 'SAMPLE_SEG_PALETTE', 'draw_cls_image',
    'draw_seg_sample', 'generate_sample_data', 'is_sample_data_complete', 'ensure_sample_data'
]
