"""Attention maps of a BEiT, per head and rolled out, drawn over the image as one PNG grid.

BEiT's attention runs through ``F.scaled_dot_product_attention``, which never forms the
attention weights. Inside :func:`collect_attention` the chosen layers also compute them,
``softmax(q k^T / sqrt(d) + bias)`` in fp32 (:meth:`BEiTAttention.attention_weights`),
and hand them to an :class:`AttentionRecord`; the model's outputs do not change (they
still come from SDPA). Outside the context nothing extra is computed.

Maps, over the patch grid [h, w] of the input that was run (any size the backbone takes:
non-square grids, relative position tables resized at run time):

* class token -> patches, per head (:func:`cls_attention`): row 0 of a layer's weights,
  its patch columns (what DINO draws);
* patch (row, col) -> patches, per head (:func:`patch_attention`): that patch's row
  (what unilm's ``beit2/visualize_attention.py`` draws, for the last layer);
* attention rollout (:func:`attention_rollout`, Abnar & Zuidema 2020): per layer the
  heads' mean A, plus the identity for the residual path, rows renormalised to sum to 1,
  multiplied from the first layer up, ``R = Â_l ... Â_1``; drawn is R's class-token row.

The rows of the weights sum to 1 over all tokens; a map leaves out the weight on the
class token, so its sum is below 1.

Images are read by :func:`mmbeit.utils.image_io.read_image` (paths, or BGR arrays); the
grid is a picture for people, RGB as PNG stores it.
"""
import contextlib
import functools
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn

from mmbeit.layers.attention import BEiTAttention
from mmbeit.visualization.canvas import default_scale, save_png, upsample_nearest

__all__ = [
    'find_backbone', 'AttentionRecord', 'collect_attention', 'cls_attention', 'patch_attention',
    'attention_rollout', 'prepare_input', 'compute_attention_maps', 'draw_attention_grid',
    'save_attention_grid', 'visualize_attention'
]

Grid = Tuple[int, int]

# the viridis colour map at five stops (RGB), interpolated linearly: no matplotlib needed
_CMAP_STOPS = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]],
                       np.float32)


def _attentions(backbone: nn.Module) -> List[BEiTAttention]:
    layers = getattr(backbone, 'layers', None)
    if not isinstance(layers, nn.ModuleList) or not len(layers):
        return []
    attns = [getattr(layer, 'attn', None) for layer in layers]
    return attns if all(isinstance(a, BEiTAttention) for a in attns) else []


def find_backbone(model: nn.Module) -> nn.Module:
    """The BEiT of a classifier, segmentor or pretraining model (``model.backbone``), or
    ``model`` itself when it is one.

    Raises:
        TypeError: no ``layers[i].attn`` of type :class:`BEiTAttention` in either place.
    """
    for candidate in (getattr(model, 'backbone', None), model):
        if isinstance(candidate, nn.Module) and _attentions(candidate):
            return candidate
    raise TypeError(f'{type(model).__name__} is not a BEiT and has no BEiT backbone '
                    '(expected model.backbone.layers[i].attn to be mmbeit BEiTAttention)')


def _resolve_layers(layers: Union[None, int, Sequence[int]], num_layers: int) -> List[int]:
    if layers is None:
        return list(range(num_layers))
    if isinstance(layers, int):
        layers = [layers]
    out = []
    for i in layers:
        j = i + num_layers if i < 0 else i
        if not 0 <= j < num_layers:
            raise ValueError(f'layer {i} is out of range for a backbone of {num_layers} layers '
                             f'(0..{num_layers - 1}, or -1..-{num_layers})')
        out.append(j)
    return sorted(set(out))


class AttentionRecord:
    """Attention weights that :func:`collect_attention` recorded, per layer and forward.

    Attributes:
        layers: the recorded layer indices (non-negative, ascending).
        weights: layer -> one fp32 tensor [B, heads, N, N] per forward, N = 1 + h*w.
        grids: layer -> the patch grid (h, w) of each forward.
    """

    def __init__(self, layers: Sequence[int]) -> None:
        self.layers = tuple(layers)
        self.weights: Dict[int, List[torch.Tensor]] = {i: [] for i in self.layers}
        self.grids: Dict[int, List[Grid]] = {i: [] for i in self.layers}

    def add(self, layer: int, weights: torch.Tensor, grid: Grid) -> None:
        """Keep one forward's weights [B, heads, N, N] of ``layer``."""
        self.weights[layer].append(weights.detach())
        self.grids[layer].append((int(grid[0]), int(grid[1])))

    def _last(self, layer: int) -> int:
        if layer not in self.weights:
            raise KeyError(f'layer {layer} was not recorded; recorded: {list(self.layers)}')
        if not self.weights[layer]:
            raise ValueError(f'layer {layer} did not run while recording (a backbone stops '
                             'after its highest out_indices entry)')
        return layer

    def __getitem__(self, layer: int) -> torch.Tensor:
        """The last forward's weights of ``layer``: [B, heads, N, N]."""
        return self.weights[self._last(layer)][-1]

    def grid(self, layer: int) -> Grid:
        """The patch grid (h, w) of the last forward of ``layer``."""
        return self.grids[self._last(layer)][-1]


@contextlib.contextmanager
def collect_attention(model: nn.Module,
                      layers: Union[None, int, Sequence[int]] = None) -> Iterator[AttentionRecord]:
    """Record the attention weights of ``layers`` (default: all) of every forward inside.

    Works on a BEiT or any model with one as ``backbone`` (classifier, segmentor,
    pretraining model). Each forward's weights are appended, so sliding-window and
    multi-view inference keep every window. The sinks that were set before are restored
    on exit.

    Example::

        with collect_attention(model, layers=-1) as record:
            model.backbone(inputs)
        weights = record[11]  # [B, heads, N, N] (base arch)
    """
    attns = _attentions(find_backbone(model))
    chosen = _resolve_layers(layers, len(attns))
    record = AttentionRecord(chosen)
    previous = {i: attns[i].weights_sink for i in chosen}
    for i in chosen:
        attns[i].weights_sink = functools.partial(record.add, i)
    try:
        yield record
    finally:
        for i in chosen:
            attns[i].weights_sink = previous[i]


def _token_row(weights: torch.Tensor, grid: Grid, token: int) -> torch.Tensor:
    """Row ``token`` of [..., N, N] weights, its patch columns as [..., h, w]."""
    h, w = grid
    n = weights.shape[-1]
    if weights.shape[-2] != n or n != 1 + h * w:
        raise ValueError(f'weights of shape {list(weights.shape)} do not fit a {h}x{w} patch '
                         f'grid; expected [..., {1 + h * w}, {1 + h * w}] (class token first)')
    return weights[..., token, 1:].reshape(*weights.shape[:-2], h, w)


def cls_attention(weights: torch.Tensor, grid: Grid) -> torch.Tensor:
    """Class token -> patches: [..., N, N] -> [..., h, w] (e.g. [B, heads, h, w])."""
    return _token_row(weights, grid, 0)


def patch_attention(weights: torch.Tensor, grid: Grid, patch: Tuple[int, int]) -> torch.Tensor:
    """Patch (row, col) -> patches: [..., N, N] -> [..., h, w]."""
    row, col = patch
    if not (0 <= row < grid[0] and 0 <= col < grid[1]):
        raise ValueError(f'patch {tuple(patch)} is outside the {grid[0]}x{grid[1]} patch grid '
                         f'(row 0..{grid[0] - 1}, col 0..{grid[1] - 1})')
    return _token_row(weights, grid, 1 + row * grid[1] + col)


def attention_rollout(weights: Sequence[torch.Tensor]) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema, 2020) of consecutive layers, first layer first.

    Args:
        weights: per layer [B, heads, N, N] (rows sum to 1).

    Returns:
        [B, N, N]: ``Â_l @ ... @ Â_1`` with ``Â = rownorm(mean_heads(A) + I)``; its rows
        sum to 1. Row 0 (:func:`cls_attention`) is the class token's rollout.
    """
    if not len(weights):
        raise ValueError('attention_rollout needs the weights of at least one layer')
    rollout = None
    for layer_weights in weights:
        a = layer_weights.float().mean(dim=1)  # [B, N, N]
        a = a + torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)  # the residual path
        a = a / a.sum(dim=-1, keepdim=True)
        rollout = a if rollout is None else a @ rollout
    return rollout


# ---------------------------------------------------------------------- one image
def _normalise(model: nn.Module, chw: torch.Tensor) -> torch.Tensor:
    """BGR uint8 [3, H, W] -> the model's input [1, 3, H, W], by its data preprocessor."""
    pre = getattr(model, 'data_preprocessor', None)
    if pre is None:  # a bare backbone: ImageNet's normalisation, RGB
        mean = torch.tensor([123.675, 116.28, 103.53]).view(1, 3, 1, 1)
        std = torch.tensor([58.395, 57.12, 57.375]).view(1, 3, 1, 1)
        return (chw.flip(0)[None].float() - mean) / std
    from mmbeit.models.data_preprocessors.two_view_data_preprocessor import TwoViewDataPreprocessor
    if isinstance(pre, TwoViewDataPreprocessor):  # pretraining: the backbone's view is first
        return pre(dict(inputs=[chw[None], chw[None]]))['inputs'][0]
    inputs = pre(dict(inputs=[chw], data_samples=None), False)['inputs']  # mmpretrain, mmseg
    return torch.stack(inputs) if isinstance(inputs, (list, tuple)) else inputs


def prepare_input(model: nn.Module,
                  image: Any,
                  size: Union[None, int, Sequence[int]] = None,
                  keep_ratio: Optional[bool] = None) -> Tuple[np.ndarray, torch.Tensor]:
    """The backbone's view of an image and the model's input for it.

    Args:
        model: a BEiT or a model with one as ``backbone``.
        image: a file path or a BGR uint8 array (:func:`mmbeit.utils.image_io.read_image`).
        size: the view, int or (H, W), multiples of the patch size. Defaults to the
            backbone's ``img_size``.
        keep_ratio: True: the short side is resized to ``min(size)`` and the long side
            keeps the aspect ratio, cut (centred) to a multiple of the patch size; False:
            resized to cover (H, W), then centre-cropped (a test pipeline's ResizeEdge +
            CenterCrop). Defaults to True for segmentors (models with a ``decode_head``).

    Returns:
        (the view, BGR uint8 [H, W, 3]; the normalised input [1, 3, H, W] on the model's
        device), normalised by the model's data preprocessor (a bare backbone: ImageNet's
        mean and std, RGB).
    """
    from PIL import Image

    from mmbeit.utils.image_io import read_image
    backbone = find_backbone(model)
    p = int(backbone.patch_size)
    if size is None:
        size = tuple(backbone.img_size)
    size = (int(size), int(size)) if isinstance(size, (int, np.integer)) else tuple(map(int, size))
    if len(size) != 2 or min(size) < p or size[0] % p or size[1] % p:
        raise ValueError(f'size {size} must be (H, W) multiples of the patch size {p}')
    if keep_ratio is None:
        keep_ratio = hasattr(model, 'decode_head')
    pil = Image.fromarray(read_image(image)[..., ::-1])  # RGB for Pillow's resampling
    w0, h0 = pil.size
    if keep_ratio:
        scale = min(size) / min(h0, w0)
        new = (max(p, round(w0 * scale)), max(p, round(h0 * scale)))  # (W, H)
        crop = (new[1] // p * p, new[0] // p * p)  # (H, W)
    else:
        scale = max(size[0] / h0, size[1] / w0)
        new = (max(size[1], round(w0 * scale)), max(size[0], round(h0 * scale)))
        crop = size
    pil = pil.resize(new, Image.BICUBIC)
    top, left = (new[1] - crop[0]) // 2, (new[0] - crop[1]) // 2
    pil = pil.crop((left, top, left + crop[1], top + crop[0]))
    view = np.ascontiguousarray(np.asarray(pil)[..., ::-1])  # BGR [H, W, 3]
    chw = torch.from_numpy(view.copy()).permute(2, 0, 1)  # [3, H, W]
    device = next(model.parameters()).device
    return view, _normalise(model, chw.to(device))


@torch.no_grad()
def compute_attention_maps(model: nn.Module,
                           image: Any,
                           layer: int = -1,
                           patch: Optional[Tuple[int, int]] = None,
                           size: Union[None, int, Sequence[int]] = None,
                           keep_ratio: Optional[bool] = None) -> Dict[str, Any]:
    """Run the backbone on one image and take its attention maps.

    Args:
        model: a BEiT, or a classifier / segmentor / pretraining model with one as
            ``backbone`` (e.g. from ``mmbeit.apis.get_model``).
        image: a file path or a BGR uint8 array.
        layer: the layer whose heads are drawn (negative counts from the end); the
            rollout runs through layers 0..layer. Defaults to the last.
        patch: (row, col) of the patch whose attention is drawn. Defaults to the centre.
        size, keep_ratio: the view, see :func:`prepare_input`.

    Returns:
        dict with ``image`` (the view, BGR uint8 [H, W, 3]), ``grid`` (h, w), ``layer``,
        ``patch`` (row, col), ``cls`` and ``patch_maps`` (float32 [heads, h, w]),
        ``rollout`` (float32 [h, w]) and ``weights`` (the layer's [heads, N, N]).
    """
    view, inputs = prepare_input(model, image, size, keep_ratio)
    backbone = find_backbone(model)
    (layer, ) = _resolve_layers(layer, len(_attentions(backbone)))
    was_training = model.training
    model.eval()
    try:
        with collect_attention(model, list(range(layer + 1))) as record:
            backbone(inputs)
    finally:
        model.train(was_training)
    grid = record.grid(layer)
    patch = (grid[0] // 2, grid[1] // 2) if patch is None else tuple(int(i) for i in patch)
    weights = record[layer][0]  # [heads, N, N]
    rollout = attention_rollout([record[i] for i in range(layer + 1)])[0]  # [N, N]
    return dict(
        image=view,
        grid=grid,
        layer=layer,
        patch=patch,
        cls=cls_attention(weights, grid).cpu().numpy(),
        patch_maps=patch_attention(weights, grid, patch).cpu().numpy(),
        rollout=cls_attention(rollout, grid).cpu().numpy(),
        weights=weights.cpu())


# -------------------------------------------------------------------------- drawing
def _colourise(value: np.ndarray) -> np.ndarray:
    """[h, w] -> RGB float [h, w, 3], the map scaled to its own [min, max] (viridis)."""
    value = np.asarray(value, np.float32)
    span = float(value.max() - value.min())
    t = (value - value.min()) / span if span > 0 else np.zeros_like(value)
    pos = t * (len(_CMAP_STOPS) - 1)
    lo = np.clip(np.floor(pos).astype(int), 0, len(_CMAP_STOPS) - 2)
    frac = (pos - lo)[..., None]
    return _CMAP_STOPS[lo] * (1 - frac) + _CMAP_STOPS[lo + 1] * frac


def _overlay(rgb: np.ndarray, value: np.ndarray, alpha: float) -> np.ndarray:
    heat = upsample_nearest(_colourise(value), rgb.shape[:2])
    return np.clip((1 - alpha) * rgb + alpha * heat + 0.5, 0, 255).astype(np.uint8)


def draw_attention_grid(image: np.ndarray,
                        cls: np.ndarray,
                        patch_maps: np.ndarray,
                        rollout: np.ndarray,
                        patch: Tuple[int, int],
                        scale: int = 1,
                        alpha: float = 0.6,
                        titles: bool = True) -> np.ndarray:
    """Three rows of panels over the image, each map scaled to its own range.

    Row 1: the image with the chosen patch outlined (red), the rollout, the heads' mean
    class-token map, the heads' mean patch map. Row 2: the class-token map of each
    head. Row 3: the chosen patch's map of each head.

    Args:
        image: the view, BGR uint8 [H, W, 3] (H, W multiples of the grid).
        cls, patch_maps: [heads, h, w]. rollout: [h, w]. patch: (row, col).
        scale: nearest upscaling of every panel. alpha: weight of the heat map.
        titles: a title above each panel.

    Returns:
        RGB uint8 [H', W', 3].
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f'image: expected BGR uint8 [H, W, 3], got {image.dtype} '
                         f'{list(image.shape)}')
    cls, patch_maps, rollout = (np.asarray(m, np.float32) for m in (cls, patch_maps, rollout))
    if cls.ndim != 3 or patch_maps.shape != cls.shape or rollout.shape != cls.shape[1:]:
        raise ValueError(f'expected cls and patch_maps [heads, h, w] and rollout [h, w], got '
                         f'{list(cls.shape)}, {list(patch_maps.shape)}, {list(rollout.shape)}')
    heads, h, w = cls.shape
    rgb = image[..., ::-1].astype(np.float32)  # RGB: the grid is drawn for people
    H, W = rgb.shape[:2]
    marked = rgb.copy()
    r0, r1 = patch[0] * H // h, (patch[0] + 1) * H // h
    c0, c1 = patch[1] * W // w, (patch[1] + 1) * W // w
    red = np.array([255, 0, 0], np.float32)
    for rows, cols in (((r0, r0 + 1), (c0, c1)), ((r1 - 1, r1), (c0, c1)), ((r0, r1), (c0, c0 + 1)),
                       ((r0, r1), (c1 - 1, c1))):
        marked[rows[0]:rows[1], cols[0]:cols[1]] = red
    rows = [
        [(marked.astype(np.uint8), f'patch {tuple(patch)}'),
         (_overlay(rgb, rollout, alpha), 'rollout'), (_overlay(rgb, cls.mean(0),
                                                               alpha), 'cls mean'),
         (_overlay(rgb, patch_maps.mean(0), alpha), 'patch mean')],
        [(_overlay(rgb, cls[i], alpha), f'cls h{i}') for i in range(heads)],
        [(_overlay(rgb, patch_maps[i], alpha), f'patch h{i}') for i in range(heads)],
    ]
    columns = max(len(r) for r in rows)
    ph, pw, gap = H * scale, W * scale, 4
    header = 14 if titles else 0
    canvas = np.full((3 * (ph + header) + 2 * gap, columns * pw + (columns - 1) * gap, 3), 255,
                     np.uint8)
    labels = []
    for i, row in enumerate(rows):
        top = i * (ph + header + gap)
        for j, (panel, title) in enumerate(row):
            left = j * (pw + gap)
            canvas[top + header:top + header + ph, left:left + pw] = \
                panel.repeat(scale, 0).repeat(scale, 1)
            labels.append(((left + 2, top + 1), title[:max(1, pw // 6)]))
    if not titles:
        return canvas
    from PIL import Image, ImageDraw
    pil = Image.fromarray(canvas)
    draw = ImageDraw.Draw(pil)
    for xy, text in labels:
        draw.text(xy, text, fill=(0, 0, 0))
    return np.asarray(pil)


def save_attention_grid(out_file: str, *args, **kwargs) -> np.ndarray:
    """:func:`draw_attention_grid` written to ``out_file`` as a PNG; returns the grid."""
    return save_png(draw_attention_grid(*args, **kwargs), out_file)


def visualize_attention(model: nn.Module,
                        image: Any,
                        out_file: str,
                        scale: Optional[int] = None,
                        **kwargs) -> Dict[str, Any]:
    """:func:`compute_attention_maps` then :func:`save_attention_grid`; returns the maps.

    ``scale`` defaults to enough nearest upscaling for panels of >= 192 pixels.
    """
    maps = compute_attention_maps(model, image, **kwargs)
    if scale is None:
        scale = default_scale(maps['image'])
    save_attention_grid(
        out_file,
        maps['image'],
        maps['cls'],
        maps['patch_maps'],
        maps['rollout'],
        maps['patch'],
        scale=scale)
    return maps
