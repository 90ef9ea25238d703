"""BEiT pretraining (v1 and v2): masked image modeling with visual tokens.

Each image arrives as two views of one crop (``TwoViewRandomResizedCrop``):
the backbone's view with a blockwise mask (``BEiTMaskGenerator``), and the
tokenizer's view, whose tokens are the targets. The backbone replaces the
masked patches by its mask token; the head predicts the token of every masked
patch.

* v1 (Bao et al., 2021): DALL-E's tokens (one per 8 pixels of a 112x112
  view), no neck, the loss of the last layer.
* v2 (Peng et al., 2022): VQ-KD's tokens (one per 16 pixels of a 224x224
  view), the patch-aggregation neck (:class:`~mmbeit.models.necks.BEiTV2Neck`)
  and the sum of two losses, as unilm's ``engine_for_pretraining.py``.

The tokenizer contract: a target generator is a module with ``vocab_size``
(the number of codes) whose ``forward(img [B, 3, H', W'])`` returns the token
ids, LongTensor [B, N], one per backbone patch, row-major. Training calls
``forward`` (an FSDP unit gathers its shards only in its forward).
"""
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from mmengine.model import BaseModel
from torch import nn

from mmbeit.converters.hooks import register_conversion_hook
from mmbeit.layers.relative_position_bias import RelPosWindow
from mmbeit.registry import MODELS

__all__ = ['BEiTPretrain']


def default_data_preprocessor(target_generator: dict) -> dict:
    """``TwoViewDataPreprocessor``: ImageNet normalisation for the backbone's view (its
    default), the tokenizer's view in the range the tokenizer reads: its class attribute
    ``INPUT_VIEW`` (``second_mean`` / ``second_std`` of 0..255 pixels; the tokenizer contract)."""
    kind = target_generator.get('type', '')
    cls = kind if isinstance(kind, type) else MODELS.get(kind)
    view = getattr(cls, 'INPUT_VIEW', None)
    if view is None:
        raise ValueError(f'BEiTPretrain: no default data_preprocessor for the tokenizer {kind!r} '
                         '(it declares no INPUT_VIEW); pass data_preprocessor='
                         "dict(type='mmbeit.TwoViewDataPreprocessor', second_mean=..., "
                         'second_std=...) mapping 0..255 pixels to its input range')
    return dict(type='mmbeit.TwoViewDataPreprocessor', **view)


@MODELS.register_module()
class BEiTPretrain(BaseModel):
    """BEiT masked image modeling (v1 without a neck, v2 with one).

    Args:
        backbone: an ``mmbeit.BEiT`` config with ``use_mask_token=True`` and
            ``out_type='raw'`` (the papers: ``use_shared_rel_pos_bias=True``,
            ``use_rel_pos_bias=False``). v2: ``final_norm=False`` (the neck's
            norm is shared) and ``out_indices=[early_layers - 1, -1]``.
        head: a ``BEiTMIMHead`` config; ``embed_dims`` and ``num_embed``
            default to the backbone's width and the tokenizer's vocabulary.
        target_generator: the tokenizer (``DALLEEncoder``, ``VQKD``), any
            module of the tokenizer contract (see the module's docstring).
        neck: None (v1) or a ``BEiTV2Neck`` config (v2); its
            ``backbone_arch`` defaults to the backbone's.
        data_preprocessor: defaults to ``TwoViewDataPreprocessor`` with ImageNet
            normalisation and the tokenizer's range for the second view (DALL-E's
            [0.1, 0.9], VQ-KD's [-1, 1]; the tokenizer's ``INPUT_VIEW``).
        init_cfg: mmengine init config. Defaults to None.
    """

    def __init__(self,
                 backbone: dict,
                 head: dict,
                 target_generator: dict,
                 neck: Optional[dict] = None,
                 data_preprocessor: Optional[Union[dict, nn.Module]] = None,
                 init_cfg: Optional[dict] = None) -> None:
        if data_preprocessor is None:
            data_preprocessor = default_data_preprocessor(target_generator)
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
        vocab_size = getattr(self.target_generator, 'vocab_size', None)
        if not isinstance(vocab_size, int) or vocab_size < 1:
            raise ValueError(f'BEiTPretrain: the target generator '
                             f'{type(self.target_generator).__name__} must state its vocabulary '
                             f'size as an int attribute vocab_size, got {vocab_size!r}')
        self.neck = None
        if neck is not None:
            neck = dict(neck)
            neck.setdefault('backbone_arch', dict(self.backbone.arch))
            self.neck = MODELS.build(neck)
            self._check_v2_backbone()
        head = dict(head)
        head.setdefault('embed_dims', self.backbone.embed_dims)
        head.setdefault('num_embed', vocab_size)
        if head['embed_dims'] != self.backbone.embed_dims:
            raise ValueError(f"BEiTPretrain: head embed_dims={head['embed_dims']} but the "
                             f'backbone is {self.backbone.embed_dims} wide (leave it out)')
        if head['num_embed'] != vocab_size:
            raise ValueError(f"BEiTPretrain: head num_embed={head['num_embed']} but the "
                             f'tokenizer has {vocab_size} tokens (leave it out)')
        self.head = MODELS.build(head)
        # any load_state_dict converts and fits every BEiT checkpoint format (mmbeit.converters)
        register_conversion_hook(self, target='pretrain')

    def _check_v2_backbone(self) -> None:
        """v2: the backbone gives the early and the last layer, not normalized."""
        early = self.neck.early_layers
        wanted = [early - 1, self.backbone.num_layers - 1]
        if list(self.backbone.out_indices) != wanted:
            raise ValueError(
                f"BEiTPretrain: with the neck (early_layers={early}) the backbone's "
                f'out_indices must be {wanted} (or [{early - 1 - self.backbone.num_layers},'
                f' -1]), got {self.backbone.out_indices}')
        if getattr(self.backbone, 'norm', None) is not None:
            raise ValueError('BEiTPretrain: with the neck the backbone needs final_norm=False '
                             "(the neck's norm is shared by both paths)")
        if self.neck.embed_dims != self.backbone.embed_dims:
            raise ValueError(f'BEiTPretrain: the neck is {self.neck.embed_dims} wide but the '
                             f'backbone {self.backbone.embed_dims} (leave backbone_arch out)')

    @property
    def with_neck(self) -> bool:
        """True for BEiT v2 (the patch-aggregation neck)."""
        return self.neck is not None

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

    def _features(self, img: torch.Tensor, mask: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """Normalized patch features [B, N, C] of each path: one (v1) or two
        (v2: the last layer's, the patch aggregation's)."""
        feats = self.backbone(img, mask)
        if self.neck is None:
            return (feats[0][:, 1:], )  # [B, N, C], normalized by the backbone
        p = self.backbone.patch_size
        hw = (img.shape[-2] // p, img.shape[-1] // p)
        # the neck attends with the backbone's shared table, as unilm's cls_pt_layers
        window = RelPosWindow(hw, img.device)
        rel_pos_bias = self.backbone.rel_pos_bias
        shared_bias = rel_pos_bias(hw, window) if rel_pos_bias is not None else None
        return self.neck(feats, hw, shared_bias, window)

    def mim_logits(self, img: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Token logits of every patch (v2: of the last layer's path):
        [B, 3, H, W], bool [B, N] -> [B, N, vocab]."""
        if self.neck is None:
            return self.head(self.backbone(img, mask)[0][:, 1:])
        last = self.backbone(img, mask)[-1]  # [B, 1 + N, C]
        return self.head(self.neck.norm(last[:, 1:]))

    def loss(self, inputs: Sequence[torch.Tensor], data_samples: list) -> Dict[str, torch.Tensor]:
        """The MIM loss of a batch.

        Args:
            inputs: [backbone view [B, 3, H, W], tokenizer view [B, 3, H', W']
                in the tokenizer's range], as ``TwoViewDataPreprocessor``
                gives them.
            data_samples: with ``mask`` bool [H/p, W/p], True = masked.

        Returns:
            v1: ``loss`` and ``accuracy`` (% of masked patches). v2: ``loss_1``
            (the last layer's), ``loss_2`` (the patch aggregation's) and
            ``accuracy_1``, ``accuracy_2``; mmengine logs their sum as ``loss``
            (unilm's ``loss = loss_1 + loss_2``, ``mlm_acc_1``, ``mlm_acc_2``).
        """
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
            raise ValueError('BEiTPretrain: expected two views [image, tokenizer image] '
                             '(TwoViewRandomResizedCrop + TwoViewDataPreprocessor), got '
                             f'{type(inputs).__name__}')
        img, tokenizer_img = inputs
        mask = torch.stack([s.mask for s in data_samples]).to(img.device,
                                                              torch.bool).flatten(1)  # [B, N]
        feats = self._features(img, mask)
        # through forward, not a helper: an FSDP unit gathers its shards only in its forward
        target = self.target_generator(tokenizer_img)  # [B, N]
        self._check_target(target, img.shape[0])
        if len(feats) == 1:
            return self.head.loss(feats[0], target, mask)
        losses = {}
        for i, path in enumerate(feats, start=1):
            out = self.head.loss(path, target, mask)
            losses[f'loss_{i}'] = out['loss']
            losses[f'accuracy_{i}'] = out['accuracy']
        return losses

    def _check_target(self, target: torch.Tensor, batch_size: int) -> None:
        name = type(self.target_generator).__name__
        if (not isinstance(target, torch.Tensor) or target.dim() != 2
                or target.shape[0] != batch_size or target.is_floating_point()):
            got = (f'{target.dtype} {tuple(target.shape)}'
                   if isinstance(target, torch.Tensor) else type(target).__name__)
            raise ValueError(f'BEiTPretrain: the target generator {name} must return token ids, '
                             f'an integer tensor [B={batch_size}, N], got {got}')
