"""What masked image modeling sees and predicts, drawn as one PNG grid.

Five panels of the same size, left to right: the image (the backbone's view),
the masked input (masked patches greyed out), the target visual tokens (the
tokenizer's, one colour per token id), the predicted tokens at the masked
patches (visible patches dimmed), and the masked patches marked right (green)
or wrong (red). Token colours are a fixed function of the id, so one token has
the same colour in every panel and every image.

Colours follow :mod:`mmbeit.utils.image_io`: images given to these functions (paths,
or arrays in BGR order as ``cv2.imread`` gives them) are read by its
``read_image``; the grids they draw are pictures for people, RGB as PNG stores them.
"""
import colorsys
from typing import Any, Dict, Optional, Union

import numpy as np
import torch

from mmbeit.visualization.canvas import default_scale, save_png, upsample_nearest

__all__ = [
    'token_palette', 'colorize_tokens', 'draw_mim_grid', 'save_mim_grid', 'predict_mim_tokens',
    'visualize_mim'
]

PANEL_TITLES = ('image', 'masked input', 'target tokens', 'predicted (masked)', 'right / wrong')
_GOLDEN = 0.6180339887498949


def token_palette(num_tokens: int) -> np.ndarray:
    """One RGB colour per token id: uint8 [num_tokens, 3].

    Hues step by the golden ratio (neighbouring ids get distant hues);
    saturation and value cycle so that ids with close hues still differ.
    """
    if num_tokens < 1:
        raise ValueError(f'num_tokens must be >= 1, got {num_tokens}')
    ids = np.arange(num_tokens)
    colours = [
        colorsys.hsv_to_rgb((i * _GOLDEN) % 1.0, 0.55 + 0.45 * ((i // 3) % 2),
                            0.65 + 0.35 * (i % 3) / 2) for i in ids
    ]
    return (np.asarray(colours) * 255).round().astype(np.uint8)


def colorize_tokens(tokens: np.ndarray, num_tokens: Optional[int] = None) -> np.ndarray:
    """Token ids [h, w] -> RGB uint8 [h, w, 3]."""
    tokens = np.asarray(tokens)
    if tokens.size and tokens.min() < 0:
        raise ValueError(f'token ids must be >= 0, got {int(tokens.min())}')
    num_tokens = int(tokens.max()) + 1 if num_tokens is None else num_tokens
    if tokens.size and tokens.max() >= num_tokens:
        raise ValueError(f'token id {int(tokens.max())} >= num_tokens={num_tokens}')
    return token_palette(max(num_tokens, 1))[tokens]


def _grid(name: str, value: Any, shape: Optional[tuple] = None) -> np.ndarray:
    """A per-patch map as a numpy [h, w]; flat [h*w] inputs are reshaped to ``shape``."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    value = np.asarray(value)
    if value.ndim == 1 and shape is not None and value.size == shape[0] * shape[1]:
        value = value.reshape(shape)
    if value.ndim != 2 or (shape is not None and value.shape != tuple(shape)):
        raise ValueError(f'{name}: expected a patch grid {tuple(shape) if shape else "[h, w]"} '
                         f'(or flat), got shape {list(value.shape)}')
    return value


def _grid_shape(size: tuple, *maps: Any) -> tuple:
    """The patch grid (h, w): of the first 2-D map, else flat maps laid out with the
    image's aspect ratio."""
    for m in maps:
        if np.ndim(m) == 2:
            return tuple(np.shape(m))
    n = np.size(maps[0])
    h = int(round((n * size[0] / size[1])**0.5))
    if h < 1 or n % h:
        raise ValueError(f'cannot lay out {n} flat patches with the aspect of an image of '
                         f'{size}; pass a 2-D mask [h, w]')
    return h, n // h


def draw_mim_grid(image: np.ndarray,
                  mask: Any,
                  target_tokens: Any,
                  pred_tokens: Any,
                  num_tokens: Optional[int] = None,
                  scale: int = 1,
                  titles: bool = True) -> np.ndarray:
    """Draw the five panels side by side.

    Args:
        image: BGR uint8 [H, W, 3], the backbone's view (the ``image`` that
            :func:`predict_mim_tokens` returns).
        mask: bool [h, w] (or flat [h*w], laid out with the image's aspect
            unless a token map is 2-D), True = masked, one per patch.
        target_tokens: int [h, w] (or flat), the tokenizer's tokens.
        pred_tokens: int [h, w] (or flat), the model's argmax tokens; only the
            masked patches are drawn.
        num_tokens: the vocabulary size (colours do not depend on it beyond
            range checks). Defaults to the largest id + 1.
        scale: nearest upscaling of every panel (small images). Defaults to 1.
        titles: write the panel titles above the panels. Defaults to True.

    Returns:
        RGB uint8 [H', W', 3].
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f'image: expected BGR uint8 [H, W, 3], got {image.dtype} '
                         f'{list(image.shape)}')
    image = np.ascontiguousarray(image[..., ::-1])  # RGB: the grid is drawn for people
    shape = _grid_shape(image.shape[:2], mask, target_tokens, pred_tokens)
    mask = _grid('mask', mask, shape).astype(bool)
    target = _grid('target_tokens', target_tokens, shape).astype(np.int64)
    pred = _grid('pred_tokens', pred_tokens, shape).astype(np.int64)
    if num_tokens is None:
        num_tokens = int(max(target.max(), pred.max())) + 1
    size = image.shape[:2]
    pix_mask = upsample_nearest(mask, size)[..., None]  # [H, W, 1]
    grey = np.full_like(image, 128)
    dim = (image * 0.35 + 128 * 0.65).astype(np.uint8)

    masked_input = np.where(pix_mask, grey, image)
    target_img = upsample_nearest(colorize_tokens(target, num_tokens), size)
    pred_img = np.where(pix_mask, upsample_nearest(colorize_tokens(pred, num_tokens), size), dim)
    right = np.array([40, 170, 60], np.uint8)
    wrong = np.array([210, 40, 40], np.uint8)
    verdict = upsample_nearest(np.where((pred == target)[..., None], right, wrong), size)
    verdict_img = np.where(pix_mask, verdict, dim)
    panels = [image, masked_input, target_img, pred_img, verdict_img]
    if scale > 1:
        panels = [p.repeat(scale, 0).repeat(scale, 1) for p in panels]
    gap = np.full((panels[0].shape[0], 4, 3), 255, np.uint8)
    row = np.concatenate(sum(([p, gap] for p in panels), [])[:-1], axis=1)
    if not titles:
        return row
    from PIL import Image, ImageDraw
    header = Image.new('RGB', (row.shape[1], 14), (255, 255, 255))
    draw = ImageDraw.Draw(header)
    step = panels[0].shape[1] + gap.shape[1]
    for i, title in enumerate(PANEL_TITLES):
        draw.text((i * step + 2, 1), title[:max(1, panels[0].shape[1] // 6)], fill=(0, 0, 0))
    return np.concatenate([np.asarray(header), row], axis=0)


def save_mim_grid(out_file: str, *args, **kwargs) -> np.ndarray:
    """:func:`draw_mim_grid` written to ``out_file`` as a PNG; returns the grid."""
    return save_png(draw_mim_grid(*args, **kwargs), out_file)


@torch.no_grad()
def predict_mim_tokens(model: torch.nn.Module,
                       image: Union[str, np.ndarray],
                       mask: Optional[Any] = None,
                       num_masking_patches: Optional[int] = None,
                       min_num_patches: Optional[int] = None,
                       seed: int = 0) -> Dict[str, Any]:
    """Run a ``BEiTPretrain`` model on one image: its view, mask, targets and predictions.

    The image is centre-cropped to a square and resized to the backbone's
    input size (bicubic) and to the tokenizer's (DALL-E: lanczos at its stride;
    VQ-KD: bicubic at its patch size), as the training views are made but
    without randomness. BEiT v1 and v2 models alike (v2: the last layer's path).

    Args:
        model: an ``mmbeit.BEiTPretrain`` (e.g. from ``mmbeit.apis.get_model``).
        image: a file path, or a BGR uint8 array [H, W, 3] (read by
            :func:`mmbeit.utils.image_io.read_image`, which also converts grayscale,
            16-bit and RGBA inputs).
        mask: bool [h, w] (or flat) over the patch grid; default: a BEiT
            blockwise mask drawn with ``seed``.
        num_masking_patches: for the default mask; defaults to 40% of the
            patches (BEiT's 75 of 196).
        min_num_patches: for the default mask; defaults to
            min(16, num_masking_patches).
        seed: of the default mask. Defaults to 0.

    Returns:
        dict with ``image`` (the backbone's view, BGR uint8 [H, W, 3]), ``mask`` (bool [h, w]),
        ``target`` and ``pred`` (int64 [h, w]), ``accuracy`` (% of the masked
        patches predicted right) and ``num_tokens``.
    """
    from PIL import Image
    missing = [
        n for n in ('backbone', 'target_generator', 'data_preprocessor', 'mim_logits')
        if not hasattr(model, n)
    ]
    if missing:
        raise TypeError(f'predict_mim_tokens needs an mmbeit.BEiTPretrain model, got '
                        f'{type(model).__name__} without {missing}')
    backbone, tokenizer = model.backbone, model.target_generator
    size = tuple(backbone.img_size)  # (H, W)
    grid = tuple(backbone.patch_resolution)
    # pixels per token of the tokenizer's view: DALL-E's output stride (a 112 view for a 224
    # backbone, lanczos), VQ-KD's patch size (the backbone's own size, bicubic, as BEiT v2)
    stride = getattr(tokenizer, 'downsample', None) or getattr(tokenizer, 'patch_size', None)
    if stride is None:
        raise TypeError(f'predict_mim_tokens: the tokenizer {type(tokenizer).__name__} states '
                        'no pixels per token: expected `downsample` (DALL-E) or `patch_size` '
                        '(VQ-KD)')
    second = (grid[0] * stride, grid[1] * stride)
    second_resample = Image.LANCZOS if hasattr(tokenizer, 'downsample') else Image.BICUBIC

    from mmbeit.utils.image_io import read_image
    pil = Image.fromarray(read_image(image)[..., ::-1])  # RGB for Pillow's resampling
    side = min(pil.size)
    left, top = (pil.size[0] - side) // 2, (pil.size[1] - side) // 2
    pil = pil.crop((left, top, left + side, top + side))
    view = np.asarray(pil.resize(size[::-1], Image.BICUBIC))[..., ::-1]  # BGR
    tok_view = np.asarray(pil.resize(second[::-1], second_resample))[..., ::-1]

    if mask is None:
        from mmbeit.datasets.beit_mask_generator import BEiTMaskGenerator
        n = grid[0] * grid[1]
        num = num_masking_patches if num_masking_patches is not None else round(0.4 * n)
        low = min_num_patches if min_num_patches is not None else max(1, min(16, num))
        gen = BEiTMaskGenerator(input_size=grid, num_masking_patches=num, min_num_patches=low)
        mask = gen.generate(np.random.default_rng(seed))
    mask = _grid('mask', mask, grid).astype(bool)

    device = next(model.parameters()).device

    def to_batch(bgr: np.ndarray) -> torch.Tensor:  # BGR, as LoadImageFromFile gives them
        return torch.from_numpy(np.ascontiguousarray(bgr)).permute(2, 0, 1)[None]

    was_training = model.training
    model.eval()
    try:
        data = model.data_preprocessor(
            dict(
                inputs=[to_batch(view).to(device),
                        to_batch(tok_view).to(device)],
                data_samples=None))
        img, tok_img = data['inputs']
        mask_t = torch.from_numpy(mask).flatten()[None].to(device)  # [1, N]
        pred = model.mim_logits(img, mask_t).argmax(-1)  # [1, N]
        target = tokenizer(tok_img)  # [1, N] token ids (the tokenizer contract)
    finally:
        model.train(was_training)
    pred = pred[0].view(grid).cpu().numpy()
    target = target[0].view(grid).cpu().numpy()
    accuracy = float((pred == target)[mask].mean() * 100) if mask.any() else float('nan')
    return dict(
        image=np.ascontiguousarray(view),
        mask=mask,
        target=target,
        pred=pred,
        accuracy=accuracy,
        num_tokens=int(tokenizer.vocab_size))


def visualize_mim(model: torch.nn.Module,
                  image: Union[str, np.ndarray],
                  out_file: str,
                  scale: Optional[int] = None,
                  **kwargs) -> Dict[str, Any]:
    """:func:`predict_mim_tokens` then :func:`save_mim_grid`; returns the predictions.

    ``scale`` defaults to enough nearest upscaling for panels of >= 192 pixels.
    """
    result = predict_mim_tokens(model, image, **kwargs)
    if scale is None:
        scale = default_scale(result['image'])
    save_mim_grid(
        out_file,
        result['image'],
        result['mask'],
        result['target'],
        result['pred'],
        num_tokens=result['num_tokens'],
        scale=scale)
    return result
