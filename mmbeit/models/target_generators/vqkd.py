"""The VQ-KD tokenizer of BEiT v2: a ViT encoder and a normalised-EMA codebook.

BEiT v2 (Peng et al., 2022) replaces DALL-E's tokens by the codes of a
vector-quantized knowledge-distillation tokenizer (VQ-KD, unilm's
``beit2/modeling_vqkd.py``, mmpretrain's ``VQKD``): a ViT-B/16 encoder (absolute
position embedding, no relative position bias, no layer scale, final LayerNorm on
the patch tokens) whose patch features go through ``encode_task_layer`` (Linear,
Tanh, Linear to 32 channels) and take the id of their nearest l2-normalised code in
an 8192 x 32 codebook (:class:`~mmbeit.layers.norm_ema_quantizer.NormEMAVectorQuantizer`).
One token per 16x16 patch, row-major.

Input: images mapped to [-1, 1] (``x / 127.5 - 1``: unilm's ``process_type='default'``,
mmpretrain's ``second_mean = second_std = 127.5``).

As BEiT v2's target generator (``frozen=True``, the default) it is frozen, always in
eval mode and runs without gradient or autocast. The VQ-KD training model
(:class:`mmbeit.models.algorithms.vqkd_trainer.VQKDTrainer`) builds it with
``frozen=False`` and trains its encoder and codebook.

Keys: ``encoder.*`` (an :class:`mmbeit.BEiT`), ``encode_task_layer.{0,2}.*``,
``quantize.embedding.weight`` [K, D], ``quantize.embedding.initted``,
``quantize.cluster_size``. Every loading door (``load_pretrained``, ``load_state_dict``,
mmengine's ``load_checkpoint``, ``init_cfg=dict(type='Pretrained')``) also reads unilm's
``vqkd_encoder_*.pth``, mmpretrain's VQKD and mmbeit's ``VQKDTrainer`` checkpoints
(:mod:`mmbeit.converters.vqkd`).
"""
import copy
from typing import Any, Mapping, Optional, Tuple, Union

import torch
import torch.nn as nn
from mmengine.model import BaseModule

from mmbeit.converters.hooks import register_conversion_hook
from mmbeit.layers.norm_ema_quantizer import NormEMAVectorQuantizer
from mmbeit.registry import MODELS
from mmbeit.utils.config_check import checkpoint_from_init_cfg

__all__ = ['VQKD', 'VQKD_ENCODER']

# The encoder of every published VQ-KD tokenizer: unilm's VisionTransformer with
# use_abs_pos_emb=True, init_values=0 (no layer scale), use_mean_pooling (its fc_norm is
# our final norm: a LayerNorm per token), as mmbeit.BEiT arguments.
VQKD_ENCODER = dict(
    type='mmbeit.BEiT',
    arch='base',
    img_size=224,
    patch_size=16,
    out_type='raw',
    final_norm=True,
    use_abs_pos_emb=True,
    use_rel_pos_bias=False,
    use_shared_rel_pos_bias=False,
    layer_scale_init_value=0.,
    norm_eps=1e-6)


@MODELS.register_module()
class VQKD(BaseModule):
    """VQ-KD tokenizer: ``forward(img) -> LongTensor [B, h*w]`` of code ids.

    Args:
        encoder: overrides of :data:`VQKD_ENCODER` (an ``mmbeit.BEiT`` config), e.g.
            ``dict(arch='tiny', img_size=64, patch_size=8)`` in tests.
        num_embed: codebook size (the vocabulary). Defaults to 8192.
        embed_dims: code dimension. Defaults to 32.
        decay: EMA decay of the codebook (training only). Defaults to 0.99.
        beta: weight of the commitment loss. Defaults to 1.0.
        kmeans_init: initialise the codebook by k-means on the first training batch
            (training only; a tokenizer loads its codebook). Defaults to True.
        frozen: a fixed target generator (no gradient, eval mode, float32). Defaults to
            True; the VQ-KD trainer passes False.
        checkpoint: weights loaded strictly by :meth:`init_weights` (unilm's
            ``vqkd_encoder_*.pth``, mmpretrain's ``vqkd_encoder.pth``, mmbeit's);
            a frozen tokenizer refuses to run until they are loaded.
        init_cfg: only ``dict(type='Pretrained', checkpoint=...)`` (mmpretrain's
            configs use it); it means ``checkpoint``.
    """

    #: the tokenizer's view in its input range, for ``TwoViewDataPreprocessor``: [-1, 1]
    #: (unilm modeling_vqkd.py pre_process 'default') of 0..255 pixels
    INPUT_VIEW = dict(second_mean=[127.5] * 3, second_std=[127.5] * 3)

    def __init__(self,
                 encoder: Optional[dict] = None,
                 num_embed: int = 8192,
                 embed_dims: int = 32,
                 decay: float = 0.99,
                 beta: float = 1.0,
                 kmeans_init: bool = True,
                 frozen: bool = True,
                 checkpoint: Optional[str] = None,
                 init_cfg: Optional[dict] = None) -> None:
        checkpoint = checkpoint_from_init_cfg('VQKD', init_cfg, checkpoint)
        super().__init__(init_cfg=None)
        encoder_cfg = copy.deepcopy(VQKD_ENCODER)
        encoder_cfg.update(encoder or {})
        if encoder_cfg.get('out_type') != 'raw':
            raise ValueError(f"VQKD: the encoder's out_type must be 'raw', got "
                             f"{encoder_cfg.get('out_type')!r}")
        self.encoder = MODELS.build(encoder_cfg)
        C = self.encoder.embed_dims
        self.patch_size = self.encoder.patch_size
        self.vocab_size = num_embed
        self.embed_dims = embed_dims
        # patch features -> code space; kept in float32 (as unilm: outside autocast)
        self.encode_task_layer = nn.Sequential(nn.Linear(C, C), nn.Tanh(), nn.Linear(C, embed_dims))
        for m in self.encode_task_layer:
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=.02)
                nn.init.zeros_(m.bias)
        self.quantize = NormEMAVectorQuantizer(num_embed, embed_dims, beta, decay, kmeans_init)
        self.frozen = frozen
        self.checkpoint = checkpoint
        # the checkpoint that init_weights() still has to load
        self._pending_checkpoint = checkpoint
        # every load_state_dict converts unilm's, mmpretrain's and VQKDTrainer's layouts
        register_conversion_hook(self, target='target_generator')
        if frozen:
            self.requires_grad_(False)
            super().train(False)

    # ------------------------------------------------------------- weights
    def init_weights(self) -> None:
        """Load ``checkpoint`` strictly (any VQ-KD format); without one keep the init."""
        if self.checkpoint is not None:
            self.load_weights(self.checkpoint)
        self._is_init = True

    def load_weights(self, checkpoint: Union[str, Mapping[str, Any]]) -> None:
        """Load weights strictly from a path, URL or state dict of any VQ-KD format."""
        from mmbeit.converters import load_pretrained
        load_pretrained(self, checkpoint)
        self._pending_checkpoint = None

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args, **kwargs) -> None:
        # runs the conversion hook first: the keys are ours afterwards
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        # any load that brings a codebook (a parent's load_state_dict, mmengine's
        # load_checkpoint) satisfies the pending checkpoint; a parent's load that hands back
        # this module's own tensors (a checkpoint without a tokenizer) loads nothing
        codebook = state_dict.get(prefix + 'quantize.embedding.weight')
        own = self.quantize.embedding.weight
        if codebook is not None and codebook.data_ptr() != own.data_ptr():
            self._pending_checkpoint = None

    def train(self, mode: bool = True) -> 'VQKD':
        """A frozen tokenizer stays in eval mode whatever the parent asks."""
        return super().train(False if self.frozen else mode)

    # ------------------------------------------------------------- forward
    def encode(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Quantize images.

        Args:
            x: [B, 3, H, W] images in [-1, 1], H and W multiples of the patch size.

        Returns:
            (quantized [B, embed_dims, h, w] l2-normalised codes (straight-through
            gradient in training), ids LongTensor [B * h * w] row-major, commitment
            loss), as mmpretrain's and unilm's ``encode``.
        """
        self._check_input(x)
        h, w = x.shape[2] // self.patch_size, x.shape[3] // self.patch_size
        feats = self.encoder(x)[0][:, 1:]  # [B, h*w, C], final norm applied
        with torch.autocast(x.device.type, enabled=False):
            z = self.encode_task_layer(feats.float())  # [B, h*w, D]
        z = z.transpose(1, 2).reshape(x.shape[0], self.embed_dims, h, w)  # [B, D, h, w]
        quantized, loss, ids = self.quantize(z)
        return quantized, ids, loss

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Code ids of images in [-1, 1]: [B, 3, H, W] -> LongTensor [B, h*w]."""
        if self.frozen:
            with torch.no_grad(), torch.autocast(x.device.type, enabled=False):
                _, ids, _ = self.encode(x.float())
        else:
            _, ids, _ = self.encode(x)
        return ids.view(x.shape[0], -1)

    def get_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Alias of :meth:`forward` (mmpretrain / unilm name)."""
        return self(x)

    def _check_input(self, x: torch.Tensor) -> None:
        if self.frozen and self._pending_checkpoint is not None:
            raise RuntimeError(f'VQKD: the weights of checkpoint={self._pending_checkpoint!r} '
                               'are not loaded yet; call init_weights() (the Runner does) or '
                               'load_weights() first')
        if self.frozen and not bool(self.quantize.embedding.initted):
            raise RuntimeError('VQKD: the codebook is not initialised (a frozen tokenizer never '
                               'runs k-means); load a trained tokenizer (checkpoint=...) or '
                               'build it with kmeans_init=False')
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f'VQKD: expected images [B, 3, H, W], got {list(x.shape)}')
        if not x.is_floating_point():
            raise ValueError(f'VQKD: expected a floating point input in [-1, 1], got {x.dtype}')
        if x.shape[2] % self.patch_size or x.shape[3] % self.patch_size:
            raise ValueError(f'VQKD: input size {tuple(x.shape[2:])} is not a multiple of '
                             f'the patch size {self.patch_size}')

    def extra_repr(self) -> str:
        return (f'vocab_size={self.vocab_size}, embed_dims={self.embed_dims}, '
                f'frozen={self.frozen}, checkpoint={self.checkpoint!r}')
