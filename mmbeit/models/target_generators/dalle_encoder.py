"""The DALL-E tokenizer: OpenAI's discrete VAE encoder as BEiT's target.

The architecture is OpenAI's ``dall_e.Encoder`` (Ramesh et al., 2021): a 7x7
input convolution, ``group_count`` groups of ``n_blk_per_group`` residual
blocks (widths ``n_hid * 1, 2, 4, 8``) with 2x max-pooling between groups,
and a 1x1 convolution to ``vocab_size`` logits. BEiT's visual tokens are the
argmax of those logits: one token per 8x8 pixels of the tokenizer's view
(112x112 -> 14x14 tokens for 224x224 images with 16x16 patches). As every
tokenizer, ``forward`` returns the token ids [B, N] and ``vocab_size`` states
the vocabulary; :meth:`DALLEEncoder.logits` gives the logits.

The tokenizer is a fixed target: frozen, always in eval mode, run without
gradient and without autocast, so the tokens never depend on the precision
the rest of the model trains in. ``fast=True`` runs the body in float16 (or
bfloat16) with ``channels_last`` (weights cast once and cached) and the final
1x1 convolution in float32, as OpenAI's own CUDA path does. The float32 path
turns cuDNN's TF32 off while it runs.

Weights load from OpenAI's ``encoder.pkl``, OpenMMLab's ``dalle_encoder.pth``
or our own layout; see :mod:`mmbeit.converters.dalle`.
"""
import contextlib
import copy
import math
import warnings
from typing import Any, Iterator, Mapping, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import nn

from mmbeit.converters.convert import convert_checkpoint
from mmbeit.converters.hooks import register_conversion_hook
from mmbeit.converters.read import read_checkpoint
from mmbeit.registry import MODELS
from mmbeit.utils.config_check import checkpoint_from_init_cfg

__all__ = ['DALLEEncoder', 'DALLEEncoderBlock', 'map_pixels']

LOGIT_LAPLACE_EPS = 0.1
_FAST_DTYPES = {'float16': torch.float16, 'bfloat16': torch.bfloat16}


def map_pixels(x: torch.Tensor, eps: float = LOGIT_LAPLACE_EPS) -> torch.Tensor:
    """Map pixels in [0, 1] to the DALL-E input range [eps, 1 - eps]."""
    return (1 - 2 * eps) * x + eps


class DALLEEncoderBlock(nn.Module):
    """A residual block: ``shortcut(x) + post_gain * res_path(x)``.

    Args:
        in_channels: input channels.
        out_channels: output channels; the residual path is 4x narrower.
        post_gain: scale of the residual path, ``1 / num_blocks ** 2``.
    """

    def __init__(self, in_channels: int, out_channels: int, post_gain: float) -> None:
        super().__init__()
        hid_channels = out_channels // 4
        self.post_gain = post_gain
        self.shortcut = (
            nn.Conv2d(in_channels, out_channels, 1)
            if in_channels != out_channels else nn.Identity())
        self.conv1 = nn.Conv2d(in_channels, hid_channels, 3, padding=1)
        self.conv2 = nn.Conv2d(hid_channels, hid_channels, 3, padding=1)
        self.conv3 = nn.Conv2d(hid_channels, hid_channels, 3, padding=1)
        self.conv4 = nn.Conv2d(hid_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.relu(x))  # ReLU before every conv, not in place
        h = self.conv2(F.relu(h))
        h = self.conv3(F.relu(h))
        h = self.conv4(F.relu(h))
        return self.shortcut(x) + self.post_gain * h


@MODELS.register_module()
class DALLEEncoder(BaseModule):
    """The DALL-E dVAE encoder, used as BEiT's frozen tokenizer.

    Args:
        group_count: number of groups; the output stride is
            ``2 ** (group_count - 1)``. Defaults to 4 (stride 8).
        n_hid: width of the first group. Defaults to 256.
        n_blk_per_group: residual blocks per group. Defaults to 2.
        input_channels: channels of the input image. Defaults to 3.
        vocab_size: number of visual tokens. Defaults to 8192.
        fast: run the body in ``fast_dtype`` / channels_last (the last 1x1
            convolution stays float32, TF32 allowed). Meant for CUDA; on CPUs
            it is slower than float32. Defaults to False.
        fast_dtype: None (default: float16 on CUDA, bfloat16 on the CPU), ``'float16'``
            (OpenAI's own CUDA precision,
            whose logit error is ~8x smaller) or ``'bfloat16'`` (on random
            weights it flips ~1.5% of the tokens, float16 ~0.4%). A batch
            whose float16 logits overflow is redone in float32.
        checkpoint: a path or URL of weights in any supported layout, loaded
            strictly by :meth:`init_weights`. Until then :meth:`forward`
            refuses to run, so a random tokenizer can never be trained on by
            mistake. Defaults to None (random weights).
        init_seed: seed of the random initialization used when there is no
            checkpoint (OpenAI's: normal with std ``1/sqrt(fan_in)``, zero
            bias), so that every process builds the same tokenizer.
            Defaults to None (the global torch RNG).
        init_cfg: only ``dict(type='Pretrained', checkpoint=...)`` is
            accepted (mmpretrain's configs use it); it means ``checkpoint``.
    """

    #: the tokenizer's view in its input range, for ``TwoViewDataPreprocessor``: DALL-E's
    #: map_pixels, x / 318.75 + 0.1 in [0.1, 0.9], of 0..255 pixels
    INPUT_VIEW = dict(second_mean=[-31.875] * 3, second_std=[318.75] * 3)

    def __init__(self,
                 group_count: int = 4,
                 n_hid: int = 256,
                 n_blk_per_group: int = 2,
                 input_channels: int = 3,
                 vocab_size: int = 8192,
                 fast: bool = False,
                 fast_dtype: Optional[str] = None,
                 checkpoint: Optional[str] = None,
                 init_seed: Optional[int] = None,
                 init_cfg: Optional[dict] = None) -> None:
        checkpoint = checkpoint_from_init_cfg('DALLEEncoder', init_cfg, checkpoint)
        super().__init__(init_cfg=None)
        for name, value in (('group_count', group_count), ('n_hid', n_hid), ('n_blk_per_group',
                                                                             n_blk_per_group),
                            ('input_channels', input_channels), ('vocab_size', vocab_size)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f'DALLEEncoder: {name} must be a positive int, got '
                                 f'{value!r}')
        if n_hid % 4:
            raise ValueError(f'DALLEEncoder: n_hid must be a multiple of 4, got {n_hid}')
        self.group_count = group_count
        self.n_hid = n_hid
        self.n_blk_per_group = n_blk_per_group
        self.input_channels = input_channels
        self.vocab_size = vocab_size
        if fast_dtype is not None and fast_dtype not in _FAST_DTYPES:
            raise ValueError(f'DALLEEncoder: fast_dtype must be one of '
                             f'{sorted(_FAST_DTYPES)}, got {fast_dtype!r}')
        self.fast = fast
        self.fast_dtype = fast_dtype
        self.checkpoint = checkpoint
        self.init_seed = init_seed
        self.downsample = 2**(group_count - 1)

        post_gain = 1 / (group_count * n_blk_per_group)**2
        self.stem = nn.Conv2d(input_channels, n_hid, 7, padding=3)
        self.stages = nn.ModuleList()
        in_channels = n_hid
        for g in range(group_count):
            out_channels = n_hid * 2**g
            blocks = []
            for _ in range(n_blk_per_group):
                blocks.append(DALLEEncoderBlock(in_channels, out_channels, post_gain))
                in_channels = out_channels
            self.stages.append(nn.Sequential(*blocks))
        self.head = nn.Conv2d(in_channels, vocab_size, 1)

        self.requires_grad_(False)
        super().train(False)
        self.reset_parameters()
        # The checkpoint that init_weights() still has to load.
        self._pending_checkpoint = checkpoint
        # every load_state_dict (a parent's, mmengine's load_checkpoint, ...) converts any
        # DALL-E layout (OpenAI's, OpenMMLab's) and fits it completely, then marks it loaded
        register_conversion_hook(self, target='target_generator')
        self.register_load_state_dict_pre_hook(_mark_loaded)
        # (key of the fp32 weights it was cast from, fast_dtype stem + stages)
        self._fast_cache: Optional[Tuple[tuple, nn.Module]] = None

    # ------------------------------------------------------------- weights
    @torch.no_grad()
    def reset_parameters(self) -> None:
        """OpenAI's initialization, seeded by ``init_seed`` if given."""
        generator = None
        if self.init_seed is not None:
            generator = torch.Generator().manual_seed(self.init_seed)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
                # drawn on the CPU (the generator's device), then copied to
                # wherever the module lives: the same weights everywhere
                w = torch.empty(m.weight.shape).normal_(
                    std=1 / math.sqrt(fan_in), generator=generator)
                m.weight.copy_(w)
                m.bias.zero_()

    def init_weights(self) -> None:
        """Load ``checkpoint`` (strictly), or re-draw the random weights.

        Re-drawing undoes any layer-wise ``init_cfg`` of a parent module.
        """
        if self.checkpoint is not None:
            self.load_weights(self.checkpoint)
        else:
            self.reset_parameters()
        self._is_init = True

    def load_weights(self, checkpoint: Union[str, Mapping[str, Any], nn.Module]) -> None:
        """Load weights strictly from a file, URL, state dict or module.

        Any DALL-E layout the converters read (OpenAI's ``encoder.pkl`` or state dict,
        OpenMMLab's ``dalle_encoder.pth``, a whole pretraining checkpoint's
        ``target_generator.*``, ours) works; missing or unexpected keys raise.
        """
        checkpoint = read_checkpoint(checkpoint)  # a path or URL is read safely
        self.load_state_dict(convert_checkpoint(checkpoint, target='target_generator'), strict=True)

    def train(self, mode: bool = True) -> 'DALLEEncoder':
        """Stay in eval mode whatever the parent asks."""
        return super().train(False)

    # ------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Visual tokens (the tokenizer contract of :mod:`mmbeit.models.target_generators`).

        Args:
            x: [B, C, H, W] images mapped by :func:`map_pixels`, H and W
                divisible by the stride 8.

        Returns:
            LongTensor [B, H/8 * W/8]: the argmax of :meth:`logits`, row-major.
        """
        return self.logits(x).argmax(dim=1).flatten(1)

    def get_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Alias of :meth:`forward`: [B, 3, H, W] -> LongTensor [B, H*W/64]."""
        return self(x)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Token logits of images already mapped by :func:`map_pixels`.

        Args:
            x: [B, C, H, W] floating point, H and W divisible by the stride.

        Returns:
            [B, vocab_size, H / 8, W / 8] float32 logits (OpenAI's ``Encoder``
            output).
        """
        self._check_input(x)
        with torch.no_grad(), torch.autocast(x.device.type, enabled=False):
            if self.fast:
                dtype = self._fast_dtype_on(x.device)
                logits = self._logits(
                    self._fast_body(dtype),
                    x.to(_FAST_DTYPES[dtype], memory_format=torch.channels_last))
                if dtype == 'bfloat16' or bool(torch.isfinite(logits).all()):
                    return logits
                warnings.warn('DALLEEncoder: float16 overflowed; this batch '
                              'is tokenized in float32')
            with _ieee_fp32_convs(x.is_cuda):
                return self._logits(self, x.float())

    def _logits(self, body: nn.Module, x: torch.Tensor) -> torch.Tensor:
        # [B, C, H, W] -> [B, 8 * n_hid, H / 8, W / 8] in body's dtype
        x = body.stem(x)
        for g, stage in enumerate(body.stages):
            if g > 0:
                x = F.max_pool2d(x, kernel_size=2)
            x = stage(x)
        # -> [B, vocab_size, H / 8, W / 8], always float32
        return self.head(F.relu(x).float())

    def _check_input(self, x: torch.Tensor) -> None:
        if self._pending_checkpoint is not None:
            raise RuntimeError(f'DALLEEncoder: the weights of checkpoint='
                               f'{self._pending_checkpoint!r} are not loaded yet; call '
                               'init_weights() (the Runner does) or load_weights() first')
        if x.dim() != 4 or x.shape[1] != self.input_channels:
            raise ValueError(f'DALLEEncoder: expected input [B, {self.input_channels}, H, '
                             f'W], got {list(x.shape)}')
        if not x.is_floating_point():
            raise ValueError('DALLEEncoder: expected a floating point input mapped to '
                             f'[0.1, 0.9] (map_pixels), got dtype {x.dtype}')
        if x.shape[2] % self.downsample or x.shape[3] % self.downsample:
            raise ValueError(f'DALLEEncoder: input size {tuple(x.shape[2:])} is not '
                             f'divisible by the output stride {self.downsample}')

    def _fast_dtype_on(self, device: torch.device) -> str:
        """``fast_dtype``; by default (None) float16 on CUDA and bfloat16 on the
        CPU, whose float16 convolutions fall back to a slow reference kernel
        (4x slower than float32 there)."""
        if self.fast_dtype is None:
            return 'bfloat16' if device.type == 'cpu' else 'float16'
        return self.fast_dtype

    def _fast_body(self, dtype: str) -> nn.Module:
        """``dtype`` / channels_last copies of ``stem`` and ``stages``.

        Cast once and kept until the float32 weights change (a load, a move
        to another device), which the key of versions and pointers detects.
        """
        params = [p for n, p in self.named_parameters() if not n.startswith('head.')]
        key = (dtype, ) + tuple((p.device, p.data_ptr(), p._version) for p in params)
        if self._fast_cache is None or self._fast_cache[0] != key:
            self._fast_cache = None  # free the old copy first
            body = nn.Module()
            body.stem = copy.deepcopy(self.stem)
            body.stages = copy.deepcopy(self.stages)
            body.to(dtype=_FAST_DTYPES[dtype], memory_format=torch.channels_last)
            self._fast_cache = (key, body)
        return self._fast_cache[1]

    def extra_repr(self) -> str:
        return (f'vocab_size={self.vocab_size}, fast={self.fast}, '
                f'fast_dtype={self.fast_dtype!r}, checkpoint={self.checkpoint!r}')


def _mark_loaded(module: DALLEEncoder, state_dict: dict, prefix: str, *args) -> None:
    """Load-state-dict pre-hook (after the conversion hook): weights that are not the
    module's own tensors handed back (a checkpoint without a tokenizer: the fit stage
    keeps its init) settle its pending ``checkpoint``."""
    head = state_dict.get(prefix + 'head.weight')
    if head is not None and head.data_ptr() != module.head.weight.data_ptr():
        module._pending_checkpoint = None


@contextlib.contextmanager
def _ieee_fp32_convs(enabled: bool) -> Iterator[None]:
    """Float32 convolutions in full precision: cuDNN uses TF32 by default."""
    if not enabled:
        yield
        return
    conv = getattr(torch.backends.cudnn, 'conv', None)
    if conv is not None and hasattr(conv, 'fp32_precision'):  # torch >= 2.9
        previous = conv.fp32_precision
        conv.fp32_precision = 'ieee'
        try:
            yield
        finally:
            conv.fp32_precision = previous
    else:
        previous = torch.backends.cudnn.allow_tf32
        torch.backends.cudnn.allow_tf32 = False
        try:
            yield
        finally:
            torch.backends.cudnn.allow_tf32 = previous
