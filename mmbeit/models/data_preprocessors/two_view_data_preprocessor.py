"""Normalize BEiT's two views: the backbone's and the tokenizer's.

mmpretrain's ``TwoNormDataPreprocessor`` computes the same thing, but only
for batches that ``default_collate`` stacked: with mmengine's default
``pseudo_collate`` (lists of per-image tensors) it fails on
``_input[:, [2, 1, 0], ...]`` with a ``TypeError``. This one takes both.
"""
from typing import Optional, Sequence

import torch
from mmengine.model import BaseDataPreprocessor

from mmbeit.registry import MODELS

__all__ = ['TwoViewDataPreprocessor']

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)
# x / 318.75 + 0.1 == map_pixels(x / 255): pixels 0..255 -> [0.1, 0.9]
DALLE_MEAN = (-31.875, -31.875, -31.875)
DALLE_STD = (318.75, 318.75, 318.75)


@MODELS.register_module()
class TwoViewDataPreprocessor(BaseDataPreprocessor):
    """Stack, BGR->RGB and normalize ``inputs = [view, second_view]``.

    Args:
        mean: per-channel mean of the first view (0..255 scale). Defaults to
            ImageNet's.
        std: per-channel std of the first view. Defaults to ImageNet's.
        second_mean: of the second view. Defaults to -31.875, which with
            ``second_std=318.75`` maps 0..255 to DALL-E's [0.1, 0.9].
        second_std: of the second view. Defaults to 318.75.
        to_rgb: reverse the channels (images load as BGR). Defaults to True.
        non_blocking: asynchronous host-to-device copies.
    """

    def __init__(self,
                 mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD,
                 second_mean: Sequence[float] = DALLE_MEAN,
                 second_std: Sequence[float] = DALLE_STD,
                 to_rgb: bool = True,
                 non_blocking: Optional[bool] = False) -> None:
        super().__init__(non_blocking=non_blocking)
        for name, value in (('mean', mean), ('std', std), ('second_mean', second_mean),
                            ('second_std', second_std)):
            if len(value) not in (1, 3):
                raise ValueError(f'TwoViewDataPreprocessor: {name} needs 1 or '
                                 f'3 values, got {list(value)}')
            self.register_buffer(name,
                                 torch.tensor(value, dtype=torch.float32).view(1, -1, 1, 1), False)
        self.to_rgb = to_rgb

    def forward(self, data: dict, training: bool = False) -> dict:
        """``inputs``: two views, each a uint8 batch [B, 3, H, W] or a list of
        [3, H, W] -> two float batches, normalized."""
        data = self.cast_data(data)
        inputs = data['inputs']
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
            raise ValueError('TwoViewDataPreprocessor: expected inputs [view, '
                             'second_view] (from TwoViewRandomResizedCrop), got '
                             f'{type(inputs).__name__}' +
                             (f' of length {len(inputs)}' if isinstance(inputs, (list,
                                                                                 tuple)) else ''))
        views = []
        for view, mean, std in ((inputs[0], self.mean, self.std), (inputs[1], self.second_mean,
                                                                   self.second_std)):
            if isinstance(view, (list, tuple)):
                view = torch.stack(view)  # pseudo_collate: one per image
            if view.dim() != 4:
                raise ValueError('TwoViewDataPreprocessor: expected a view '
                                 f'[B, C, H, W], got {list(view.shape)}')
            if self.to_rgb:
                if view.shape[1] != 3:
                    raise ValueError('TwoViewDataPreprocessor: to_rgb needs 3 channels, '
                                     f'got {view.shape[1]}')
                view = view.flip(1)
            views.append((view.float() - mean) / std)
        return dict(inputs=views, data_samples=data.get('data_samples'))
