"""BEiT pretraining: masked image modeling with DALL-E visual tokens.

Each image arrives as two views of one crop (``TwoViewRandomResizedCrop``):
the backbone's view with a blockwise mask (``BEiTMaskGenerator``), and the
tokenizer's view at half the resolution (DALL-E gives a token per 8 pixels,
the backbone a patch per 16), whose tokens are the targets. The backbone
replaces the masked patches by its mask token; the head predicts the token of
every masked patch.
"""
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from mmengine.model import BaseModel
from torch import nn

from mmbeit.converters.hooks import register_conversion_hook
from mmbeit.registry import MODELS

__all__ = ['BEiTPretrain']

# ImageNet normalisation for the backbone's view, DALL-E's map_pixels for
# the tokenizer's (the defaults of TwoViewDataPreprocessor).
DEFAULT_DATA_PREPROCESSOR = dict(type='mmbeit.TwoViewDataPreprocessor')


@MODELS.register_module()
class BEiTPretrain(BaseModel):
    """BEiT masked image modeling (the paper's pretraining).

    Args:
        backbone: an ``mmbeit.BEiT`` config with ``use_mask_token=True`` and
            ``out_type='raw'`` (the paper: ``use_shared_rel_pos_bias=True``,
            ``use_rel_pos_bias=False``, ``layer_scale_init_value=0.1``).
        head: a ``BEiTMIMHead`` config; ``embed_dims`` and ``num_embed``
            default to the backbone's width and the tokenizer's vocabulary.
        target_generator: a ``DALLEEncoder`` config (the tokenizer).
        neck: BEiT v1 has none; must be None.
        data_preprocessor: defaults to ``TwoViewDataPreprocessor`` (ImageNet
            normalisation, DALL-E's range for the second view).
        init_cfg: mmengine init config. Defaults to None.
    """

    def __init__(self,
                 backbone: dict,
                 head: dict,
                 target_generator: dict,
                 neck: Optional[dict] = None,
                 data_preprocessor: Optional[Union[dict, nn.Module]] = None,
                 init_cfg: Optional[dict] = None) -> None:
        if neck is not None:
            raise ValueError(f'BEiTPretrain: BEiT v1 has no neck; got {neck}')
        if data_preprocessor is None:
            data_preprocessor = dict(DEFAULT_DATA_PREPROCESSOR)
        if isinstance(data_preprocessor, dict):
            data_preprocessor = MODELS.build(data_preprocessor)
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.backbone = MODELS.build(backbone)
        if getattr(self.backbone, 'mask_token', None) is None:
            raise ValueError('BEiTPretrain: the backbone needs a mask token; '
                             'build it with use_mask_token=True')
        if getattr(self.backbone, 'out_type', 'raw') != 'raw':
            raise ValueError("BEiTPretrain: the backbone's out_type must be "
                             f"'raw', got {self.backbone.out_type!r}")
        self.target_generator = MODELS.build(target_generator)
        head = dict(head)
        head.setdefault('embed_dims', self.backbone.embed_dims)
        head.setdefault('num_embed', self.target_generator.vocab_size)
        if head['embed_dims'] != self.backbone.embed_dims:
            raise ValueError(f"BEiTPretrain: head embed_dims={head['embed_dims']} but the "
                             f'backbone is {self.backbone.embed_dims} wide (leave it out)')
        if head['num_embed'] != self.target_generator.vocab_size:
            raise ValueError(f"BEiTPretrain: head num_embed={head['num_embed']} but the "
                             f'tokenizer has {self.target_generator.vocab_size} tokens '
                             '(leave it out)')
        self.head = MODELS.build(head)
        # any load_state_dict converts and fits every BEiT checkpoint format (mmbeit.converters)
        register_conversion_hook(self, target='pretrain')

    def forward(self,
                inputs: Union[torch.Tensor, List[torch.Tensor]],
                data_samples: Optional[list] = None,
                mode: str = 'tensor'):
        """mmengine's entry: ``mode`` 'loss' (training) or 'tensor'."""
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'tensor':
            return self.extract_feat(inputs)
        raise RuntimeError(f"BEiTPretrain: mode must be 'loss' or 'tensor', "
                           f'got {mode!r} (pretraining has no predictions; '
                           'evaluate the backbone by fine-tuning)')

    def extract_feat(
            self, inputs: Union[torch.Tensor, Sequence[torch.Tensor]]) -> Tuple[torch.Tensor, ...]:
        """Backbone features of unmasked images (of the first view if two)."""
        if isinstance(inputs, (list, tuple)):
            inputs = inputs[0]
        return self.backbone(inputs)

    def mim_logits(self, img: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Token logits of every patch: [B, 3, H, W], bool [B, N] ->
        [B, N, vocab]."""
        feats = self.backbone(img, mask)[0]  # [B, 1 + N, C]
        return self.head(feats[:, 1:])

    def loss(self, inputs: Sequence[torch.Tensor], data_samples: list) -> Dict[str, torch.Tensor]:
        """The MIM loss of a batch.

        Args:
            inputs: [backbone view [B, 3, H, W], tokenizer view [B, 3, H', W']
                mapped to DALL-E's range], as ``TwoNormDataPreprocessor``
                gives them.
            data_samples: with ``mask`` bool [H/p, W/p], True = masked.

        Returns:
            ``loss`` and ``accuracy`` (% of masked patches).
        """
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
            raise ValueError('BEiTPretrain: expected two views [image, tokenizer image] '
                             '(TwoViewRandomResizedCrop + TwoNormDataPreprocessor), got '
                             f'{type(inputs).__name__}')
        img, tokenizer_img = inputs
        mask = torch.stack([s.mask for s in data_samples]).to(img.device,
                                                              torch.bool).flatten(1)  # [B, N]
        feats = self.backbone(img, mask)[0]  # [B, 1 + N, C]
        # through forward, not get_tokens: an FSDP unit gathers its shards only in its forward
        target = self.target_generator(tokenizer_img).argmax(dim=1).flatten(1)  # [B, N]
        return self.head.loss(feats, target, mask)
