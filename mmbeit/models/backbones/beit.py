"""BEiT: the one vision transformer behind pretraining, classification and segmentation.

Reads top to bottom: the arch table, the model, its helpers for layer-wise
learning-rate decay. Loading (any checkpoint format, resizing, shared -> per-layer
tables) is :mod:`mmbeit.converters`' pipeline, run by a state-dict pre-hook.
"""
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.model import BaseModule
from torch.utils.checkpoint import checkpoint

from mmbeit.converters.hooks import register_conversion_hook
from mmbeit.converters.load import init_skipped
from mmbeit.layers.patch_embed import PatchEmbed
from mmbeit.layers.pos_resize import check_rel_pos_resize_mode, resize_abs_pos_embed
from mmbeit.layers.relative_position_bias import RelativePositionBias, RelPosWindow
from mmbeit.layers.transformer_layer import BEiTTransformerLayer, init_beit_weights_
from mmbeit.registry import MODELS
from mmbeit.utils.config_check import check_img_size, check_out_indices, suggest_arguments

ARCH_KEYS = ('embed_dims', 'num_layers', 'num_heads', 'feedforward_channels')

ARCH_ZOO: Dict[str, dict] = {
    'tiny': dict(embed_dims=64, num_layers=4, num_heads=4, feedforward_channels=256),
    'small': dict(embed_dims=384, num_layers=12, num_heads=6, feedforward_channels=1536),
    'base': dict(embed_dims=768, num_layers=12, num_heads=12, feedforward_channels=3072),
    'large': dict(embed_dims=1024, num_layers=24, num_heads=16, feedforward_channels=4096),
}
ARCH_ALIASES = {'t': 'tiny', 's': 'small', 'b': 'base', 'l': 'large'}
OUT_TYPES = ('raw', 'cls_token', 'featmap', 'avg_featmap')


def resolve_arch(arch: Union[str, dict]) -> dict:
    """Arch name, alias or custom dict -> validated dict of :data:`ARCH_KEYS`."""
    if isinstance(arch, str):
        name = ARCH_ALIASES.get(arch.lower(), arch.lower())
        if name not in ARCH_ZOO:
            allowed = sorted(ARCH_ZOO) + sorted(ARCH_ALIASES)
            raise ValueError(f'unknown BEiT arch {arch!r}; choose one of {allowed} or pass a dict '
                             f'with keys {ARCH_KEYS}')
        return dict(ARCH_ZOO[name])
    if isinstance(arch, dict):
        missing = [k for k in ARCH_KEYS if k not in arch]
        if missing:
            raise ValueError(f'custom BEiT arch is missing keys {missing}; it needs {ARCH_KEYS}')
        return {k: int(arch[k]) for k in ARCH_KEYS}
    raise TypeError(f'arch must be a str or a dict, got {type(arch).__name__}')


@MODELS.register_module()
@suggest_arguments  # an unknown keyword names the closest argument
class BEiT(BaseModule):
    """BEiT vision transformer.

    Args:
        arch: 'tiny' | 'small' | 'base' | 'large' (or 't' | 's' | 'b' | 'l'), or a dict
            with ``embed_dims``, ``num_layers``, ``num_heads``, ``feedforward_channels``.
        img_size: configured input size, int or (H, W). Other sizes work at run time.
        patch_size: patch side p. Defaults to 16.
        in_channels: image channels. Defaults to 3.
        out_type: 'raw' [B, 1+N, C], 'cls_token' [B, C], 'featmap' [B, C, H/p, W/p] or
            'avg_featmap' (mean of patch tokens through ``fc_norm``) [B, C].
        out_indices: layers whose outputs are returned (negative counts from the end).
        drop_rate: dropout after position embedding and projections.
        attn_drop_rate: dropout on attention weights.
        drop_path_rate: stochastic depth of the last layer; linear from 0.
        qkv_bias: learn q and v biases (no k bias).
        layer_scale_init_value: initial layer scale; 0 disables it.
        use_abs_pos_emb: learn an absolute position embedding.
        use_rel_pos_bias: a relative position bias per layer (fine-tuning).
        use_shared_rel_pos_bias: one relative position bias for all layers (pretraining).
        use_mask_token: learn a mask token for masked image modeling.
        rel_pos_resize: how relative position tables (shared and per layer) are
            resized when an input of another size arrives: 'unilm' (default; the
            BEiT paper's geometric offsets and cubic spline, as a model built for
            that size from the same checkpoint gets on load) or 'bilinear'
            (transformers' ``interpolate_pos_encoding``). See
            :mod:`mmbeit.layers.pos_resize`.
        final_norm: LayerNorm on the last layer's output. Defaults to None: True
            unless ``out_type='avg_featmap'`` (which has its own ``fc_norm``).
        norm_eps: LayerNorm epsilon.
        with_cp: gradient checkpointing of every layer in training.
        frozen_stages: freeze the embeddings and this many first layers; 0 or -1 freezes
            nothing (as mmpretrain).
        init_cfg: mmengine init config; ``dict(type='Pretrained', checkpoint=...)`` loads
            any supported BEiT checkpoint format.
    """

    #: tokens before the patch tokens: the class token (mmpretrain's ViTs name it so, and
    #: its tools/visualization/vis_cam.py --vit-like reads it with ``patch_resolution``)
    num_extra_tokens = 1

    def __init__(self,
                 arch: Union[str, dict] = 'base',
                 img_size: Union[int, Sequence[int]] = 224,
                 patch_size: int = 16,
                 in_channels: int = 3,
                 out_type: str = 'avg_featmap',
                 out_indices: Union[int, Sequence[int]] = -1,
                 drop_rate: float = 0.,
                 attn_drop_rate: float = 0.,
                 drop_path_rate: float = 0.,
                 qkv_bias: bool = True,
                 layer_scale_init_value: float = 0.1,
                 use_abs_pos_emb: bool = False,
                 use_rel_pos_bias: bool = True,
                 use_shared_rel_pos_bias: bool = False,
                 use_mask_token: bool = False,
                 rel_pos_resize: str = 'unilm',
                 final_norm: Optional[bool] = None,
                 norm_eps: float = 1e-6,
                 with_cp: bool = False,
                 frozen_stages: int = -1,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.arch = resolve_arch(arch)
        self.embed_dims = C = self.arch['embed_dims']
        self.num_layers = self.arch['num_layers']
        self.num_heads = self.arch['num_heads']
        if out_type not in OUT_TYPES:
            raise ValueError(f'unknown out_type {out_type!r}; choose one of {OUT_TYPES}')
        self.out_type = out_type
        self.img_size = check_img_size(img_size)  # (H, W); ValueError naming a bad value
        self.patch_size = patch_size
        if self.img_size[0] % patch_size or self.img_size[1] % patch_size:
            raise ValueError(
                f'img_size {self.img_size} is not a multiple of patch_size {patch_size}')
        self.patch_resolution = (self.img_size[0] // patch_size, self.img_size[1] // patch_size)
        self.with_cp = with_cp
        if final_norm is None:
            final_norm = out_type != 'avg_featmap'
        self.final_norm = final_norm

        self.out_indices = check_out_indices(out_indices, self.num_layers)

        self.patch_embed = PatchEmbed(in_channels, C, patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, C))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, C)) if use_mask_token else None
        num_patches = self.patch_resolution[0] * self.patch_resolution[1]
        self.pos_embed = (
            nn.Parameter(torch.zeros(1, 1 + num_patches, C)) if use_abs_pos_emb else None)
        self.drop_after_pos = nn.Dropout(drop_rate)
        self.rel_pos_resize = check_rel_pos_resize_mode(rel_pos_resize)
        self.rel_pos_bias = (
            RelativePositionBias(self.patch_resolution, self.num_heads, rel_pos_resize)
            if use_shared_rel_pos_bias else None)
        self.use_rel_pos_bias = use_rel_pos_bias

        dpr = torch.linspace(0, drop_path_rate, self.num_layers).tolist()
        self.layers = nn.ModuleList([
            BEiTTransformerLayer(
                C,
                self.num_heads,
                self.arch['feedforward_channels'],
                window_size=self.patch_resolution if use_rel_pos_bias else None,
                qkv_bias=qkv_bias,
                drop_rate=drop_rate,
                attn_drop_rate=attn_drop_rate,
                drop_path_rate=dpr[i],
                layer_scale_init_value=layer_scale_init_value,
                norm_eps=norm_eps,
                rel_pos_resize=rel_pos_resize) for i in range(self.num_layers)
        ])
        self.norm = nn.LayerNorm(C, eps=norm_eps) if final_norm else None
        self.fc_norm = nn.LayerNorm(C, eps=norm_eps) if out_type == 'avg_featmap' else None

        self.frozen_stages = frozen_stages
        # every load_state_dict runs mmbeit's loading pipeline on the keys under this
        # module's prefix (foreign layouts, shared -> per-layer tables, resizing)
        register_conversion_hook(self, target='backbone')
        self._init_parameters()
        self._freeze_stages()

    # ------------------------------------------------------------------ init
    def _init_parameters(self) -> None:
        """Truncated-normal init, then rescale residual projections by depth (as unilm).

        Nothing is written under :func:`~mmbeit.converters.load.no_init` (the weights
        are loaded next): the memory of the weights stays untouched.
        """
        if init_skipped():
            return
        for p in (self.cls_token, self.mask_token, self.pos_embed):
            if p is not None:
                nn.init.trunc_normal_(p, std=.02)
        init_beit_weights_(self, self.layers)

    def init_weights(self) -> None:
        """Load ``init_cfg=dict(type='Pretrained', checkpoint=..., prefix=...)``, any format."""
        cfg = self.init_cfg
        if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained':
            from mmbeit.converters import load_pretrained
            load_pretrained(self, cfg['checkpoint'], prefix=cfg.get('prefix'))
            self._is_init = True
            return
        super().init_weights()

    # --------------------------------------------------------------- forward
    def _pos_embed_for(self, hw: Tuple[int, int]) -> torch.Tensor:
        return resize_abs_pos_embed(self.pos_embed, self.patch_resolution, hw)

    def forward(self,
                x: torch.Tensor,
                mask: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, ...]:
        """x: [B, in, H, W]; mask: bool [B, H/p, W/p] or [B, N], True = masked patch.

        Returns one output per ``out_indices`` entry, shaped by ``out_type``.
        """
        x, hw = self.patch_embed(x)  # [B, N, C]
        B, N, _ = x.shape
        if mask is not None:
            if self.mask_token is None:
                raise ValueError('a mask was given but the backbone has no mask token; '
                                 'build it with use_mask_token=True')
            if mask.numel() != B * N:
                raise ValueError(f'mask of shape {tuple(mask.shape)} does not match '
                                 f'{B} images of {hw[0]}x{hw[1]} patches')
            w = mask.reshape(B, N, 1).to(x.dtype)
            x = x * (1 - w) + self.mask_token.to(x.dtype) * w
        x = torch.cat([self.cls_token.expand(B, -1, -1).to(x.dtype), x], dim=1)  # [B, 1+N, C]
        if self.pos_embed is not None:
            x = x + self._pos_embed_for(hw)
        x = self.drop_after_pos(x)
        # one window for every table: the index and resize weights of this input size are
        # made once per forward (on first use), not once per layer
        window = RelPosWindow(hw, x.device)
        shared_bias = self.rel_pos_bias(hw, window) if self.rel_pos_bias is not None else None

        outs = []
        last = self.num_layers - 1
        stop = max(self.out_indices)  # layers above the highest output are skipped
        for i, layer in enumerate(self.layers[:stop + 1]):
            if self.with_cp and self.training and x.requires_grad:
                x = checkpoint(layer, x, hw, shared_bias, window, use_reentrant=False)
            else:
                x = layer(x, hw, shared_bias, window)
            if i == last and self.norm is not None:
                x = self.norm(x)
            if i in self.out_indices:
                outs.append(self._format_output(x, hw))
        return tuple(outs)

    def _format_output(self, x: torch.Tensor, hw: Tuple[int, int]) -> torch.Tensor:
        if self.out_type == 'raw':
            return x  # [B, 1+N, C]
        if self.out_type == 'cls_token':
            return x[:, 0]  # [B, C]
        patches = x[:, 1:]  # [B, N, C]
        if self.out_type == 'featmap':
            return patches.reshape(x.shape[0], hw[0], hw[1], -1).permute(0, 3, 1, 2)
        return self.fc_norm(patches.mean(dim=1))  # [B, C]

    # -------------------------------------------------------------- training
    def _freeze_stages(self) -> None:
        if self.frozen_stages <= 0:
            return
        frozen = [self.patch_embed, self.drop_after_pos]
        frozen += list(self.layers[:self.frozen_stages])
        if self.rel_pos_bias is not None:
            frozen.append(self.rel_pos_bias)
        if self.frozen_stages >= self.num_layers and self.norm is not None:
            frozen.append(self.norm)
        for m in frozen:
            m.eval()
            for p in m.parameters():
                p.requires_grad = False
        for p in (self.cls_token, self.mask_token, self.pos_embed):
            if p is not None:
                p.requires_grad = False

    def train(self, mode: bool = True) -> 'BEiT':
        super().train(mode)
        self._freeze_stages()
        return self

    def get_layer_depth(self, param_name: str, prefix: str = '') -> Tuple[int, int]:
        """Depth of a parameter for layer-wise lr decay (mmpretrain's protocol).

        Embeddings are depth 0, layer i is depth i+1, everything else (norms, the
        shared relative position bias, heads) the top depth.

        Returns:
            (layer_depth, num_depths) with num_depths = num_layers + 2.
        """
        num_depths = self.num_layers + 2
        if not param_name.startswith(prefix):
            return num_depths - 1, num_depths
        name = param_name[len(prefix):]
        if name in ('cls_token', 'mask_token', 'pos_embed') or name.startswith('patch_embed'):
            return 0, num_depths
        if name.startswith('layers.'):
            return int(name.split('.')[1]) + 1, num_depths
        return num_depths - 1, num_depths
