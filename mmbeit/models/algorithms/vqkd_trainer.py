"""Training the VQ-KD tokenizer of BEiT v2: vector-quantized knowledge distillation.

unilm's ``beit2/modeling_vqkd.py`` + ``engine_for_vqkd.py`` (Peng et al., 2022, Sec. 2.2):
the tokenizer (:class:`~mmbeit.models.target_generators.vqkd.VQKD`: ViT encoder,
``encode_task_layer``, normalised-EMA codebook) quantizes each patch; a small ViT
decoder (3 layers, 768 wide, on the 14x14 grid of codes, 1x1 "patches") and
``decode_task_layer`` reconstruct the patch features of a frozen teacher
(:class:`~mmbeit.models.target_generators.vit_teacher.ViTTeacher`, CLIP ViT-B/16 in the
paper). The loss is the cosine distance to the teacher's features plus the quantizer's
commitment loss; the codebook follows the encoder by EMA (k-means initialised, counts and
sums all-reduced across ranks), not by gradient.

Codebook collapse is the known failure (unilm issue 1724), so every step logs the code
usage of the global batch: ``codes_used`` (distinct codes), ``code_perplexity``
(exp of the entropy of the code histogram) and ``codes_unused`` (codes never chosen since
the counts were last reset, unilm's "Unused code"; the VQ-KD configs reset them at every
epoch with ``mmbeit.CodeUsageResetHook``, as unilm does).

Keys: ``tokenizer.*`` (exactly :class:`VQKD`'s), ``decoder.*`` (an ``mmbeit.BEiT``),
``decode_task_layer.{0,2}.*``, ``teacher.vit.*`` (timm's ViT). The trained tokenizer is
``tokenizer.*``; the converters load a trained checkpoint into ``mmbeit.VQKD`` by that
prefix (decoder and teacher dropped by name). Every ``load_state_dict`` of this model
(mmengine's ``load_checkpoint`` and ``load_from`` too) also reads unilm's VQ-KD files
completely (``encoder.*``, ``decoder.*``, ``*_task_layer.*``, ``quantize.*`` and the
teacher's ``teacher_model.*`` when the file has it; without it the teacher keeps its own
weights, which the log says).
"""
import copy
from collections import OrderedDict
from typing import Dict, List, Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModel

from mmbeit.layers.norm_ema_quantizer import all_reduce_sum
from mmbeit.models.target_generators.vqkd import VQKD_ENCODER
from mmbeit.registry import MODELS

__all__ = ['VQKDTrainer', 'VQKD_DECODER']

# unilm's vqkd_encoder_base_decoder_3x768x12: a ViT of 3 layers on the grid of codes
# (patch 1, in_chans = code dim; img_size, patch_size and in_channels are set from the
# tokenizer), the encoder's kind of ViT: absolute positions, no layer scale, final
# LayerNorm on every token.
_ENCODER_KIND = {k: v for k, v in VQKD_ENCODER.items() if k not in ('img_size', 'patch_size')}
VQKD_DECODER = dict(
    _ENCODER_KIND, arch=dict(embed_dims=768, num_layers=3, num_heads=12, feedforward_channels=3072))

# single-view images mapped to [-1, 1] (unilm's process_type='default')
DEFAULT_DATA_PREPROCESSOR = dict(
    type='ImgDataPreprocessor', mean=[127.5] * 3, std=[127.5] * 3, bgr_to_rgb=True)


@MODELS.register_module()
class VQKDTrainer(BaseModel):
    """VQ-KD: train a tokenizer to reconstruct a frozen teacher's patch features.

    Args:
        tokenizer: a ``VQKD`` config (``type`` may be left out); built with
            ``frozen=False``.
        teacher: a ``ViTTeacher`` config (``type`` may be left out).
        decoder: overrides of :data:`VQKD_DECODER`.
        data_preprocessor: defaults to mmengine's ``ImgDataPreprocessor`` mapping to
            [-1, 1] (RGB).
        init_cfg: mmengine init config. Defaults to None.
    """

    #: load_state_dict converts unilm's VQ-KD files itself (a load pre-hook), so mmbeit's
    #: Runner hands them over as they are
    converts_on_load = True

    def __init__(self,
                 tokenizer: dict,
                 teacher: dict,
                 decoder: Optional[dict] = None,
                 data_preprocessor: Optional[Union[dict, nn.Module]] = None,
                 init_cfg: Optional[dict] = None) -> None:
        if data_preprocessor is None:
            data_preprocessor = copy.deepcopy(DEFAULT_DATA_PREPROCESSOR)
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        tokenizer = dict(tokenizer)
        tokenizer.setdefault('type', 'mmbeit.VQKD')
        if tokenizer.get('frozen', False):
            raise ValueError('VQKDTrainer trains the tokenizer: leave frozen out (it is False)')
        tokenizer['frozen'] = False
        self.tokenizer = MODELS.build(tokenizer)
        teacher = dict(teacher)
        teacher.setdefault('type', 'mmbeit.ViTTeacher')
        self.teacher = MODELS.build(teacher)

        encoder = self.tokenizer.encoder
        grid = encoder.patch_resolution
        derived = dict(img_size=grid, patch_size=1, in_channels=self.tokenizer.embed_dims)
        given = [k for k in derived if k in (decoder or {})]
        if given:
            raise ValueError(f'VQKDTrainer: leave {given} out of the decoder config: they are '
                             f'set from the tokenizer ({derived})')
        decoder_cfg = copy.deepcopy(VQKD_DECODER)
        decoder_cfg.update(decoder or {})
        decoder_cfg.update(derived)
        self.decoder = MODELS.build(decoder_cfg)
        C = self.decoder.embed_dims
        self.decode_task_layer = nn.Sequential(
            nn.Linear(C, C), nn.Tanh(), nn.Linear(C, self.teacher.out_dims))
        for m in self.decode_task_layer:
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=.02)
                nn.init.zeros_(m.bias)
        # every load_state_dict also reads unilm's VQ-KD training files (decoder and teacher)
        self.register_load_state_dict_pre_hook(_convert_unilm_on_load)

    def forward(self,
                inputs: torch.Tensor,
                data_samples: Optional[list] = None,
                mode: str = 'tensor'):
        """mmengine's entry: 'loss' (training) or 'tensor' (the code ids [B, N])."""
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'tensor':
            return self.tokenizer(inputs)
        raise RuntimeError(f"VQKDTrainer: mode must be 'loss' or 'tensor', got {mode!r}")

    def reconstruct(self, img: torch.Tensor):
        """Encode, quantize and decode: [B, 3, H, W] in [-1, 1] ->
        (reconstruction [B, N, T], ids [B * N], commitment loss)."""
        quantized, ids, loss_quant = self.tokenizer.encode(img)  # [B, D, h, w]
        feats = self.decoder(quantized)[0][:, 1:]  # [B, N, C]
        return self.decode_task_layer(feats), ids, loss_quant

    def loss(self,
             inputs: torch.Tensor,
             data_samples: Optional[list] = None) -> Dict[str, torch.Tensor]:
        """The VQ-KD losses of a batch and the code usage of the global batch.

        Args:
            inputs: [B, 3, H, W] images in [-1, 1].
            data_samples: unused (labels play no part).

        Returns:
            ``loss_rec`` (cosine distance to the teacher), ``loss_quant`` (commitment),
            ``codes_used``, ``code_perplexity``, ``codes_unused`` (logged, not summed:
            mmengine sums the keys with 'loss').
        """
        if isinstance(inputs, (list, tuple)):
            inputs = torch.stack(list(inputs))
        target = self.teacher(inputs)  # [B, N, T], no gradient
        rec, ids, loss_quant = self.reconstruct(inputs)
        if rec.shape != target.shape:
            raise ValueError(f'VQKDTrainer: the teacher gives features {tuple(target.shape)} '
                             f'but the decoder {tuple(rec.shape)}: the teacher needs the same '
                             'patch grid as the tokenizer')
        loss_rec = (1 - (F.normalize(rec.float(), dim=-1) *
                         F.normalize(target.float(), dim=-1)).sum(-1)).mean()
        losses = dict(loss_rec=loss_rec, loss_quant=loss_quant)
        losses.update(self.code_usage(ids))
        return losses

    @torch.no_grad()
    def code_usage(self, ids: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Usage of the codebook by ``ids`` (this rank's), summed over the ranks."""
        K = self.tokenizer.vocab_size
        counts = all_reduce_sum(torch.bincount(ids.flatten(), minlength=K).float())  # [K]
        p = counts / counts.sum().clamp(min=1)
        entropy = -(p * p.clamp(min=1e-12).log()).sum()
        unused = (self.tokenizer.quantize.cluster_size == 0).sum()
        return dict(
            codes_used=(counts > 0).sum().float(),
            code_perplexity=entropy.exp(),
            codes_unused=unused.float())

    def reset_code_usage(self) -> None:
        """Zero the usage counts behind ``codes_unused`` (unilm: at each epoch start)."""
        self.tokenizer.quantize.reset_cluster_size()

    def extra_repr(self) -> str:
        return (f'vocab_size={self.tokenizer.vocab_size}, '
                f'teacher={self.teacher.kind}, teacher_dims={self.teacher.out_dims}')


def _convert_unilm_on_load(module: VQKDTrainer, state_dict: dict, prefix: str, local_metadata,
                           strict: bool, missing_keys: List[str], unexpected_keys: List[str],
                           error_msgs: List[str]) -> None:
    """Load pre-hook: unilm's VQ-KD training file -> this model's keys, completely or raise."""
    from mmengine.logging import print_log

    from mmbeit.converters.load import CheckpointMismatchError, state_dict_fits
    from mmbeit.converters.read import unwrap_checkpoint
    from mmbeit.converters.vqkd import convert_trainer, is_unilm_vqkd
    local = OrderedDict((k[len(prefix):], v) for k, v in state_dict.items() if k.startswith(prefix))
    own = module.state_dict()
    if not local or state_dict_fits(local, own):
        return  # our own keys: nothing to convert
    # mmengine's load_checkpoint hands over unilm's {'model': ...} wrapper as it is
    local, _ = unwrap_checkpoint(local)
    if not is_unilm_vqkd(local):
        return  # another layout: torch's strictness decides
    converted, teacher = convert_trainer(local)
    if teacher:
        converted.update(
            ('teacher.vit.' + k, v) for k, v in module.teacher.convert_state_dict(teacher).items())
    else:
        converted.update((k, v) for k, v in own.items() if k.startswith('teacher.'))
        print_log(
            'VQKDTrainer: the unilm VQ-KD file has no teacher_model.*; the teacher keeps '
            f'its own weights (checkpoint={module.teacher.checkpoint!r})',
            logger='current')
    missing = sorted(set(own) - set(converted))
    unexpected = sorted(set(converted) - set(own))
    shapes = sorted(k for k in set(own) & set(converted) if own[k].shape != converted[k].shape)
    if missing or unexpected or shapes:
        raise CheckpointMismatchError(
            f'unilm VQ-KD file (vqkd format) does not fit VQKDTrainer: missing {missing[:10]}, '
            f'unexpected {unexpected[:10]}, shapes differ {shapes[:10]}')
    for k in [k for k in state_dict if k.startswith(prefix)]:
        del state_dict[k]
    state_dict.update((prefix + k, v) for k, v in converted.items())
