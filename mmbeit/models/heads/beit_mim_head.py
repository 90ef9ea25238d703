"""BEiT's masked-image-modeling head: predict the visual token of every
masked patch (a linear layer to the tokenizer's vocabulary, cross-entropy)."""
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from mmengine.logging import MessageHub
from mmengine.model import BaseModule
from torch import nn

from mmbeit.registry import MODELS
from mmbeit.utils.errors import NonFiniteLossError

__all__ = ['BEiTMIMHead']


@MODELS.register_module()
class BEiTMIMHead(BaseModule):
    """Linear layer to the visual vocabulary, trained on masked patches only.

    Its linear layer is ``fc`` (``head.fc.weight`` in ``BEiTPretrain``), the
    name :mod:`mmbeit.converters` gives mmpretrain's ``head.cls_head`` and
    transformers' ``lm_head``.

    Args:
        embed_dims: the backbone's width C.
        num_embed: the vocabulary size. Defaults to 8192 (DALL-E).
        init_std: std of the truncated-normal weight init (zero bias).
            Defaults to 0.02.
        check_finite: raise :class:`NonFiniteLossError` naming the iteration
            when the loss is NaN or infinite, before anything is updated.
            Defaults to True.
        init_cfg: mmengine init config. Defaults to None.
    """

    def __init__(self,
                 embed_dims: int,
                 num_embed: int = 8192,
                 init_std: float = 0.02,
                 check_finite: bool = True,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.num_embed = num_embed
        self.check_finite = check_finite
        self.fc = nn.Linear(embed_dims, num_embed)
        nn.init.trunc_normal_(self.fc.weight, std=init_std)
        nn.init.zeros_(self.fc.bias)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """Token logits: [B, N, C] patch features -> [B, N, num_embed]."""
        return self.fc(feats)

    def loss(self, feats: torch.Tensor, target: torch.Tensor,
             mask: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Cross-entropy and accuracy on the masked patches.

        Args:
            feats: the backbone's 'raw' output [B, 1 + N, C] (class token
                first) or the patch features [B, N, C].
            target: the tokens, LongTensor [B, N].
            mask: bool [B, N] (or [B, H, W]), True where masked.

        Returns:
            ``loss`` (mean over masked patches) and ``accuracy`` (% of masked
            patches whose token is predicted, detached).
        """
        mask = mask.flatten(1).to(device=feats.device, dtype=torch.bool)
        if feats.shape[1] == mask.shape[1] + 1:
            feats = feats[:, 1:]  # drop the class token
        if feats.shape[:2] != mask.shape or target.shape != mask.shape:
            raise ValueError(f'BEiTMIMHead: features {tuple(feats.shape)}, targets '
                             f'{tuple(target.shape)} and mask {tuple(mask.shape)} must '
                             'agree on [B, N] (one token per patch: the tokenizer view '
                             'must be patch_size / 8 times smaller than the image)')
        logits = self(feats[mask])  # [M, num_embed], M masked patches
        target = target[mask]  # [M]
        loss = F.cross_entropy(logits.float(), target)
        if self.check_finite and not bool(torch.isfinite(loss)):
            raise NonFiniteLossError(f'non-finite MIM loss ({loss.item()}) at iteration '
                                     f'{_iteration()}: {int(mask.sum())} masked patches, '
                                     f'non-finite logits: {int((~torch.isfinite(logits)).sum())}. '
                                     'Lower the learning rate, keep warmup and gradient clipping '
                                     '(clip_grad=dict(max_norm=3.0)), then resume from the last '
                                     'checkpoint.')
        with torch.no_grad():
            accuracy = (logits.argmax(-1) == target).float().mean() * 100
        return dict(loss=loss, accuracy=accuracy)


def _iteration() -> str:
    """The 1-based training iteration from mmengine's MessageHub, if any."""
    hub = MessageHub.get_current_instance()
    it = hub.get_info('iter')
    return 'unknown' if it is None else str(it + 1)
