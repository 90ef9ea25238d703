"""Speed and memory of mmbeit and of the other BEiT implementations, side by side.

Used by ``tools/analysis_tools/benchmark.py``; it lives beside it, outside the
installed package, because it builds timm, transformers, mmpretrain and mmseg
peers. Every model of a job is built in this one process, fed the same inputs,
warmed up, then timed in interleaved rounds (the order rotates every round) so
that a load spike on a shared machine hits every model alike. Reads top to bottom:
sizes, memory measurement, inputs, one builder per implementation, the job
table, the harness, the report.

A builder returns a :class:`Model`: the module (for parameters, train/eval and
the optimizer) and a function of the job's inputs that gives the loss (training
jobs) or the output (inference jobs). A builder whose library is not installed
raises :class:`Missing`; any other exception is reported as an error. Nothing
is dropped silently: every entry of every job appears in the JSON and the table.

Peak memory is ``static + transient``: static is the bytes of the parameters,
buffers and optimizer state (counted from the tensors), transient the growth
above the memory in use just before one measured step (CUDA:
``torch.cuda.max_memory_allocated``; CPU: the kernel's peak resident set size
``VmHWM``, reset through ``/proc/self/clear_refs`` after ``malloc_trim``). It is
comparable across models although the other models of the job stay resident.
"""
import contextlib
import ctypes
import datetime
import gc
import glob
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

# ------------------------------------------------------------------- sizes


@dataclass(frozen=True)
class Sizes:
    """Model and input sizes of every job; :data:`BASE` is the real benchmark."""

    embed_dims: int = 768
    num_layers: int = 12
    num_heads: int = 12
    feedforward_channels: int = 3072
    patch_size: int = 16
    cls_img: int = 224
    num_classes: int = 1000
    seg_img: int = 640
    seg_classes: int = 150
    seg_out_indices: Tuple[int, ...] = (3, 5, 7, 11)
    seg_channels: int = 768  # UPerHead channels
    aux_channels: int = 256  # FCNHead channels
    mim_img: int = 224
    tok_img: int = 112  # tokenizer view: 8x down-sampling gives mim_img / patch_size tokens a side
    num_masked: int = 75
    vocab_size: int = 8192
    tok_hidden: int = 256
    drop_path_rate: float = 0.1

    @property
    def arch(self) -> dict:
        return dict(
            embed_dims=self.embed_dims,
            num_layers=self.num_layers,
            num_heads=self.num_heads,
            feedforward_channels=self.feedforward_channels)


BASE = Sizes()
TINY = Sizes(
    embed_dims=64,
    num_layers=4,
    num_heads=4,
    feedforward_channels=256,
    cls_img=32,
    num_classes=10,
    seg_img=64,
    seg_classes=5,
    seg_out_indices=(0, 1, 2, 3),
    seg_channels=32,
    aux_channels=16,
    mim_img=64,
    tok_img=32,
    num_masked=6,
    vocab_size=512,
    tok_hidden=64)
SIZES = {'base': BASE, 'tiny': TINY}


class Missing(Exception):
    """The implementation (or a library it needs) is not installed or not written yet."""


def _require(module: str, package: str):
    """Import ``module`` or raise :class:`Missing` with an install hint."""
    import importlib
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise Missing(f'{module} not importable ({e}); install with `pip install {package}`') from e


# ------------------------------------------------------------------ memory


def _read_status_kib(key: str) -> Optional[int]:
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith(key + ':'):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _malloc_trim() -> None:
    """Give glibc's cached free memory back to the kernel, so RSS tracks live memory."""
    with contextlib.suppress(Exception):
        ctypes.CDLL('libc.so.6').malloc_trim(0)


def memory_method(device: torch.device) -> str:
    """How :class:`PeakMemory` measures on ``device``."""
    if device.type == 'cuda':
        return 'torch.cuda.max_memory_allocated'
    if _read_status_kib('VmHWM') is not None and os.access('/proc/self/clear_refs', os.W_OK):
        return 'peak RSS (VmHWM after clear_refs=5, malloc_trim)'
    return 'unavailable'


class PeakMemory:
    """Bytes by which memory in use grew at its peak inside the ``with`` block."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.method = memory_method(device)
        self.transient: Optional[int] = None

    def __enter__(self) -> 'PeakMemory':
        gc.collect()
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        elif self.method != 'unavailable':
            _malloc_trim()
            with open('/proc/self/clear_refs', 'w') as f:
                f.write('5')  # resets VmHWM to the current RSS
            self._base = _read_status_kib('VmRSS') * 1024
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)
            self.transient = torch.cuda.max_memory_allocated(self.device) - self._base
        elif self.method != 'unavailable':
            self.transient = max(0, _read_status_kib('VmHWM') * 1024 - self._base)


def tensor_bytes(module: nn.Module, optimizer: Optional[torch.optim.Optimizer] = None) -> int:
    """Bytes of the parameters, buffers and optimizer state (each storage once)."""
    seen, total = set(), 0
    tensors = list(module.parameters()) + list(module.buffers())
    if optimizer is not None:
        for state in optimizer.state.values():
            tensors += [v for v in state.values() if torch.is_tensor(v)]
    for t in tensors:
        key = (t.device, t.untyped_storage().data_ptr())
        if key not in seen:
            seen.add(key)
            total += t.untyped_storage().nbytes()
    return total


# ------------------------------------------------------------------ inputs


def make_inputs(job: str,
                batch: int,
                sizes: Sizes,
                device: torch.device,
                seed: int = 0) -> Dict[str, Any]:
    """The synthetic inputs every model of ``job`` gets (the same tensors for all)."""
    g = torch.Generator().manual_seed(seed)
    if job.startswith('cls'):
        s = sizes.cls_img
        x = dict(
            img=torch.randn(batch, 3, s, s, generator=g),
            labels=torch.randint(sizes.num_classes, (batch, ), generator=g))
    elif job.startswith('seg'):
        s = sizes.seg_img
        x = dict(
            img=torch.randn(batch, 3, s, s, generator=g),
            labels=torch.randint(sizes.seg_classes, (batch, s, s), generator=g))
    elif job == 'mim-train':
        grid = sizes.mim_img // sizes.patch_size
        n = grid * grid
        # a fixed number of masked patches per image; the pattern does not change the cost
        order = torch.rand(batch, n, generator=g).argsort(dim=1)
        mask = torch.zeros(batch, n, dtype=torch.bool)
        mask.scatter_(1, order[:, :sizes.num_masked], True)
        x = dict(
            img=torch.randn(batch, 3, sizes.mim_img, sizes.mim_img, generator=g),
            tok_img=_map_pixels(torch.rand(batch, 3, sizes.tok_img, sizes.tok_img, generator=g)),
            mask=mask.view(batch, grid, grid))
    elif job == 'tokenizer':
        x = dict(
            tok_img=_map_pixels(torch.rand(batch, 3, sizes.tok_img, sizes.tok_img, generator=g)))
    else:
        raise ValueError(f'unknown job {job!r}; choose one of {list(JOBS)}')
    return {k: v.to(device) for k, v in x.items()}


def _map_pixels(x: torch.Tensor, eps: float = 0.1) -> torch.Tensor:
    """[0, 1] pixels to the DALL-E encoder's input range (dall_e.map_pixels)."""
    return (1 - 2 * eps) * x + eps


# ---------------------------------------------------------------- builders


@dataclass
class Model:
    """A built implementation: ``fn(inputs)`` gives the loss (training) or the output."""

    module: nn.Module
    fn: Callable[[Dict[str, Any]], Any]


@dataclass
class BuildContext:
    sizes: Sizes
    train: bool
    device: torch.device
    dtype: str = 'fp32'


def _cls_loss(logits: torch.Tensor, inputs: dict, train: bool):
    return F.cross_entropy(logits.float(), inputs['labels']) if train else logits


class _LinearClassifier(nn.Module):
    """backbone -> last output [B, C] -> linear head [B, classes] (mmpretrain's LinearClsHead)."""

    def __init__(self, backbone: nn.Module, embed_dims: int, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(embed_dims, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x)[-1])


def build_cls_mmbeit(ctx: BuildContext) -> Model:
    from mmbeit.models.backbones.beit import BEiT
    s = ctx.sizes
    backbone = BEiT(
        arch=s.arch,
        img_size=s.cls_img,
        patch_size=s.patch_size,
        out_type='avg_featmap',
        final_norm=False,
        use_rel_pos_bias=True,
        layer_scale_init_value=0.1,
        drop_path_rate=s.drop_path_rate)
    model = _LinearClassifier(backbone, s.embed_dims, s.num_classes)
    return Model(model, lambda x: _cls_loss(model(x['img']), x, ctx.train))


def build_cls_mmpretrain(ctx: BuildContext) -> Model:
    _require('mmpretrain', 'mmpretrain')
    from mmpretrain.models.backbones import BEiTViT
    s = ctx.sizes
    backbone = BEiTViT(
        arch=s.arch,
        img_size=s.cls_img,
        patch_size=s.patch_size,
        out_type='avg_featmap',
        final_norm=False,
        use_rel_pos_bias=True,
        layer_scale_init_value=0.1,
        drop_path_rate=s.drop_path_rate)
    model = _LinearClassifier(backbone, s.embed_dims, s.num_classes)
    return Model(model, lambda x: _cls_loss(model(x['img']), x, ctx.train))


def build_cls_timm(ctx: BuildContext) -> Model:
    timm = _require('timm', 'timm')
    s = ctx.sizes
    model = timm.create_model(
        'beit_base_patch16_224',
        pretrained=False,
        num_classes=s.num_classes,
        img_size=s.cls_img,
        patch_size=s.patch_size,
        embed_dim=s.embed_dims,
        depth=s.num_layers,
        num_heads=s.num_heads,
        mlp_ratio=s.feedforward_channels / s.embed_dims,
        drop_path_rate=s.drop_path_rate)
    return Model(model, lambda x: _cls_loss(model(x['img']), x, ctx.train))


def _hf_config(s: Sizes, attn: str, img_size: int, **kwargs):
    transformers = _require('transformers', 'transformers')
    args = dict(
        hidden_size=s.embed_dims,
        num_hidden_layers=s.num_layers,
        num_attention_heads=s.num_heads,
        intermediate_size=s.feedforward_channels,
        image_size=img_size,
        patch_size=s.patch_size,
        use_relative_position_bias=True,
        use_mean_pooling=True,
        layer_scale_init_value=0.1,
        drop_path_rate=s.drop_path_rate)
    cfg = transformers.BeitConfig(**{**args, **kwargs})
    cfg._attn_implementation = attn
    return transformers, cfg


def _build_cls_hf(ctx: BuildContext, attn: str) -> Model:
    s = ctx.sizes
    transformers, cfg = _hf_config(s, attn, s.cls_img, num_labels=s.num_classes)
    model = transformers.BeitForImageClassification(cfg)
    return Model(model, lambda x: _cls_loss(model(pixel_values=x['img']).logits, x, ctx.train))


def build_cls_hf_sdpa(ctx: BuildContext) -> Model:
    return _build_cls_hf(ctx, 'sdpa')


def build_cls_hf_eager(ctx: BuildContext) -> Model:
    return _build_cls_hf(ctx, 'eager')


# segmentation ---------------------------------------------------------------


def _mmseg_models():
    _require('mmseg', 'mmsegmentation')
    try:
        import mmseg.models  # noqa: F401
        from mmseg.registry import MODELS
    except ImportError as e:
        raise Missing(f'mmseg.models does not import ({e})') from e
    return MODELS


def _build_in_scope(registry, cfg: dict, scope: str) -> nn.Module:
    """registry.build(cfg) with ``scope`` as the default scope (unprefixed names resolve there)."""
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope(scope):
        return registry.build(cfg)


def _seg_heads(s: Sizes) -> dict:
    """mmseg's UperNet-BEiT neck and heads (configs/_base_/models/upernet_beit.py), BN on one
    process."""
    norm_cfg = dict(type='BN', requires_grad=True)
    return dict(
        neck=dict(
            type='Feature2Pyramid',
            embed_dim=s.embed_dims,
            rescales=[4, 2, 1, 0.5],
            norm_cfg=norm_cfg),
        decode_head=dict(
            type='UPerHead',
            in_channels=[s.embed_dims] * 4,
            in_index=[0, 1, 2, 3],
            pool_scales=(1, 2, 3, 6),
            channels=s.seg_channels,
            dropout_ratio=0.1,
            num_classes=s.seg_classes,
            norm_cfg=norm_cfg,
            align_corners=False,
            loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
        auxiliary_head=dict(
            type='FCNHead',
            in_channels=s.embed_dims,
            in_index=2,
            channels=s.aux_channels,
            num_convs=1,
            concat_input=False,
            dropout_ratio=0.1,
            num_classes=s.seg_classes,
            norm_cfg=norm_cfg,
            align_corners=False,
            loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=0.4)),
        train_cfg=dict(),
        test_cfg=dict(mode='whole'))


def _sum_losses(losses: dict) -> torch.Tensor:
    """Sum every loss term, as mmengine's parse_losses does."""
    total = 0.
    for k, v in losses.items():
        if 'loss' in k:
            total = total + (sum(t.mean() for t in v) if isinstance(v, (list, tuple)) else v.mean())
    return total


def _seg_model(ctx: BuildContext, model: nn.Module) -> Model:
    """fn for an mmseg EncoderDecoder: full-size logits (inference) or the summed losses."""
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    s = ctx.sizes
    shape = (s.seg_img, s.seg_img)
    meta = dict(
        img_shape=shape, pad_shape=shape, ori_shape=shape, scale_factor=(1.0, 1.0), flip=False)
    cache: Dict[int, list] = {}

    def samples(labels: torch.Tensor) -> list:
        if id(labels) not in cache:  # build the data samples once, outside the timed steps
            out = []
            for lab in labels:
                ds = SegDataSample(metainfo=meta)
                ds.gt_sem_seg = PixelData(data=lab[None])
                out.append(ds)
            cache.clear()
            cache[id(labels)] = out
        return cache[id(labels)]

    def fn(x: dict):
        if ctx.train:
            return _sum_losses(model.loss(x['img'], samples(x['labels'])))
        return model.encode_decode(x['img'], [meta] * x['img'].shape[0])  # [B, classes, H, W]

    return Model(model, fn)


def _find_config(pattern: str) -> Optional[str]:
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', 'configs'))
    found = sorted(glob.glob(os.path.join(root, pattern), recursive=True))
    return found[0] if found else None


def _config_name(path: str) -> str:
    return os.path.join(os.path.basename(os.path.dirname(path)), os.path.basename(path))


def _replace_types(cfg: Any, old: str, new: str) -> Any:
    if isinstance(cfg, dict):
        return {
            k: (new if k == 'type' and v == old else _replace_types(v, old, new))
            for k, v in cfg.items()
        }
    if isinstance(cfg, (list, tuple)):
        return type(cfg)(_replace_types(v, old, new) for v in cfg)
    return cfg


def build_seg_mmbeit(ctx: BuildContext) -> Model:
    """mmbeit.BEiT in mmseg's EncoderDecoder; from configs/upernet_beit/ when it exists."""
    MODELS = _mmseg_models()
    import mmbeit.models  # noqa: F401  (registers mmbeit.BEiT)
    s = ctx.sizes
    is_base = (s.arch, s.seg_classes) == (BASE.arch, BASE.seg_classes)
    path = _find_config('upernet_beit/upernet_beit-base_*640x640.py') if is_base else None
    if path is not None:
        from mmengine.config import Config
        cfg = Config.fromfile(path).model.to_dict()
        cfg = _replace_types(cfg, 'SyncBN', 'BN')  # one process, as mmengine's Runner does
        cfg.pop('data_preprocessor', None)
        cfg['backbone'].pop('init_cfg', None)  # random weights, no download
        cfg['backbone']['img_size'] = s.seg_img
        cfg['test_cfg'] = dict(mode='whole')  # one 640 crop: the same as 'slide' at 640
    else:
        cfg = dict(
            type='EncoderDecoder',
            backbone=dict(
                type='mmbeit.BEiT',
                arch=s.arch,
                img_size=s.seg_img,
                patch_size=s.patch_size,
                out_type='featmap',
                out_indices=s.seg_out_indices,
                final_norm=False,
                use_rel_pos_bias=True,
                layer_scale_init_value=0.1,
                drop_path_rate=s.drop_path_rate),
            **_seg_heads(s))
    model = _build_in_scope(MODELS, cfg, 'mmseg')
    model.bench_note = (f'{_config_name(path)} (BN, img_size {s.seg_img})'
                        if path else 'built directly')
    return _seg_model(ctx, model)


def build_seg_mmseg(ctx: BuildContext) -> Model:
    MODELS = _mmseg_models()
    s = ctx.sizes
    cfg = dict(
        type='EncoderDecoder',
        backbone=dict(
            type='BEiT',
            img_size=(s.seg_img, s.seg_img),
            patch_size=s.patch_size,
            in_channels=3,
            embed_dims=s.embed_dims,
            num_layers=s.num_layers,
            num_heads=s.num_heads,
            mlp_ratio=s.feedforward_channels // s.embed_dims,
            out_indices=s.seg_out_indices,
            qv_bias=True,
            attn_drop_rate=0.0,
            drop_path_rate=s.drop_path_rate,
            norm_cfg=dict(type='LN', eps=1e-6),
            act_cfg=dict(type='GELU'),
            norm_eval=False,
            init_values=0.1),
        **_seg_heads(s))
    return _seg_model(ctx, _build_in_scope(MODELS, cfg, 'mmseg'))


def build_seg_hf_sdpa(ctx: BuildContext) -> Model:
    """transformers' BeitForSemanticSegmentation (its own FPN + UperHead + FCN head)."""
    s = ctx.sizes
    transformers, cfg = _hf_config(
        s,
        'sdpa',
        s.seg_img,
        num_labels=s.seg_classes,
        out_indices=[i + 1 for i in s.seg_out_indices],
        auxiliary_channels=s.aux_channels,
        use_auxiliary_head=True)
    model = transformers.BeitForSemanticSegmentation(cfg)

    def fn(x: dict):
        if ctx.train:
            return model(pixel_values=x['img'], labels=x['labels']).loss
        logits = model(pixel_values=x['img']).logits  # [B, classes, H/4, W/4]
        return F.interpolate(logits, size=x['img'].shape[-2:], mode='bilinear', align_corners=False)

    return Model(model, fn)


# masked image modeling and the tokenizer --------------------------------------


def _mmpretrain_models():
    _require('mmpretrain', 'mmpretrain')
    import mmpretrain.models  # noqa: F401
    from mmpretrain.registry import MODELS
    return MODELS


def _mask_samples(mask: torch.Tensor, cache: dict) -> list:
    """mmpretrain DataSamples carrying the MIM mask, built once per mask tensor."""
    from mmpretrain.structures import DataSample
    if id(mask) not in cache:
        cache.clear()
        samples = []
        for m in mask:
            ds = DataSample()
            ds.set_field(m, 'mask')
            samples.append(ds)
        cache[id(mask)] = samples
    return cache[id(mask)]


def build_mim_mmpretrain(ctx: BuildContext) -> Model:
    """mmpretrain's BEiT algorithm
    (configs/beit/beit_beit-base-p16_8xb256-amp-coslr-300e_in1k.py)."""
    MODELS = _mmpretrain_models()
    s = ctx.sizes
    model = _build_in_scope(
        MODELS,
        dict(
            type='BEiT',
            backbone=dict(
                type='BEiTPretrainViT',
                arch=s.arch,
                img_size=s.mim_img,
                patch_size=s.patch_size,
                drop_path_rate=s.drop_path_rate,
                final_norm=True,
                out_type='raw',
                layer_scale_init_value=0.1),
            neck=None,
            head=dict(
                type='BEiTV1Head',
                embed_dims=s.embed_dims,
                num_embed=s.vocab_size,
                loss=dict(type='CrossEntropyLoss')),
            target_generator=dict(type='DALL-E', n_hid=s.tok_hidden, vocab_size=s.vocab_size)),
        'mmpretrain')
    cache: dict = {}
    return Model(
        model, lambda x: _sum_losses(
            model.loss([x['img'], x['tok_img']], _mask_samples(x['mask'], cache))))


def build_mim_mmbeit(ctx: BuildContext) -> Model:
    """mmbeit.BEiTPretrain with mmbeit.DALLEEncoder; from its base config when it exists."""
    from mmbeit.registry import MODELS
    s = ctx.sizes
    if 'BEiTPretrain' not in _registered(MODELS):
        raise Missing('mmbeit.BEiTPretrain is not registered (not written yet)')
    is_base = (s.arch, s.vocab_size, s.tok_hidden) == (BASE.arch, BASE.vocab_size, BASE.tok_hidden)
    path = _find_config('beit/beit_beit-base-p16_8xb256-*in1k.py') if is_base else None
    if path is not None:
        from mmengine.config import Config
        cfg = Config.fromfile(path).model.to_dict()
        cfg.pop('data_preprocessor', None)
        cfg['backbone']['img_size'] = s.mim_img
        tok = cfg['target_generator']
    else:
        cfg = dict(
            type='mmbeit.BEiTPretrain',
            backbone=dict(
                type='mmbeit.BEiT',
                arch=s.arch,
                img_size=s.mim_img,
                patch_size=s.patch_size,
                drop_path_rate=s.drop_path_rate,
                layer_scale_init_value=0.1,
                use_mask_token=True,
                use_rel_pos_bias=False,
                use_shared_rel_pos_bias=True,
                final_norm=True,
                out_type='raw'),
            head=dict(type='mmbeit.BEiTMIMHead'),
            target_generator=dict(
                type='mmbeit.DALLEEncoder', n_hid=s.tok_hidden, vocab_size=s.vocab_size))
        tok = cfg['target_generator']
    for key in ('checkpoint', 'init_cfg'):
        tok.pop(key, None)  # random tokenizer weights, no download
    # the bf16 tokenizer path only in a 16-bit run: on an fp32 run every model computes in fp32
    tok['fast'] = ctx.dtype != 'fp32'
    model = _build_in_scope(MODELS, cfg, 'mmpretrain')
    model.bench_note = ((_config_name(path) if path else 'built directly') +
                        f', tokenizer fast={tok["fast"]}')
    cache: dict = {}
    return Model(
        model, lambda x: _sum_losses(
            model.loss([x['img'], x['tok_img']], _mask_samples(x['mask'], cache))))


def build_mim_hf_dalle(ctx: BuildContext) -> Model:
    """transformers' BeitForMaskedImageModeling (sdpa) with OpenAI's dall_e Encoder as tokenizer."""
    s = ctx.sizes
    _require('dall_e', 'dall-e attrs requests')
    from dall_e import Encoder
    transformers, cfg = _hf_config(
        s,
        'sdpa',
        s.mim_img,
        vocab_size=s.vocab_size,
        use_mask_token=True,
        use_shared_relative_position_bias=True,
        use_relative_position_bias=False,
        use_mean_pooling=False)
    model = nn.ModuleDict(
        dict(
            mim=transformers.BeitForMaskedImageModeling(cfg),
            tokenizer=Encoder(n_hid=s.tok_hidden, vocab_size=s.vocab_size,
                              device=ctx.device).eval()))

    def fn(x: dict):
        mask = x['mask'].flatten(1)  # [B, N]
        with torch.no_grad():
            tokens = model['tokenizer'](x['tok_img'].float()).argmax(1).flatten(1)  # [B, N]
        return model['mim'](pixel_values=x['img'], bool_masked_pos=mask, labels=tokens[mask]).loss

    return Model(model, fn)


def _registered(registry) -> set:
    registry.import_from_location()
    return set(registry.module_dict)


def build_tok_dalle(ctx: BuildContext) -> Model:
    _require('dall_e', 'dall-e attrs requests')
    from dall_e import Encoder
    s = ctx.sizes
    model = Encoder(n_hid=s.tok_hidden, vocab_size=s.vocab_size, device=ctx.device).eval()
    return Model(model, lambda x: model(x['tok_img'].float()).argmax(1))  # [B, h, w] tokens


def build_tok_mmpretrain(ctx: BuildContext) -> Model:
    MODELS = _mmpretrain_models()
    s = ctx.sizes
    model = _build_in_scope(
        MODELS, dict(type='DALL-E', n_hid=s.tok_hidden, vocab_size=s.vocab_size, device=ctx.device),
        'mmpretrain').eval()
    return Model(model, lambda x: model(x['tok_img']).argmax(1))


def _build_tok_mmbeit(ctx: BuildContext, fast: bool) -> Model:
    from mmbeit.registry import MODELS
    s = ctx.sizes
    if 'DALLEEncoder' not in _registered(MODELS):
        raise Missing('mmbeit.DALLEEncoder is not registered (not written yet)')
    cfg = dict(type='mmbeit.DALLEEncoder', n_hid=s.tok_hidden, vocab_size=s.vocab_size, fast=fast)
    if fast and ctx.device.type == 'cpu':
        cfg['fast_dtype'] = 'bfloat16'  # float16 convolutions take aten's slow path on CPUs
    model = MODELS.build(cfg).eval()
    model.bench_note = (f"fast=True ({getattr(model, 'fast_dtype', 'reduced precision')} "
                        'channels-last body)') if fast else ''
    return Model(model, lambda x: model(x['tok_img']).argmax(1))  # [B, h, w] tokens


def build_tok_mmbeit(ctx: BuildContext) -> Model:
    """mmbeit.DALLEEncoder; its bf16 path when the run is in a 16-bit dtype."""
    return _build_tok_mmbeit(ctx, fast=ctx.dtype != 'fp32')


def build_tok_mmbeit_fast(ctx: BuildContext) -> Model:
    """mmbeit.DALLEEncoder(fast=True) whatever the run's dtype."""
    return _build_tok_mmbeit(ctx, fast=True)


# -------------------------------------------------------------------- jobs


@dataclass(frozen=True)
class Job:
    title: str
    train: bool
    gpu_batch: int
    cpu_batch: int
    entries: Dict[str, Callable[[BuildContext], Model]]


_CLS = {
    'mmbeit': build_cls_mmbeit,
    'timm': build_cls_timm,
    'timm+compile': build_cls_timm,
    'hf-sdpa': build_cls_hf_sdpa,
    'hf-eager': build_cls_hf_eager,
    'mmpretrain': build_cls_mmpretrain
}
_SEG = {'mmbeit': build_seg_mmbeit, 'mmseg': build_seg_mmseg, 'hf-sdpa': build_seg_hf_sdpa}

JOBS: Dict[str, Job] = {
    'cls-infer':
    Job('BEiT-B/16 @224, 1000 classes: inference', False, 256, 8, _CLS),
    'cls-train':
    Job('BEiT-B/16 @224, 1000 classes: train step (AdamW)', True, 128, 4, _CLS),
    'seg-infer':
    Job('UperNet + BEiT-B @640, 150 classes: inference', False, 16, 1, _SEG),
    # training needs 2 images at least: the BN after UPerHead's 1x1 pooling sees one value per image
    'seg-train':
    Job('UperNet + BEiT-B @640: train step (AdamW)', True, 16, 2, _SEG),
    'mim-train':
    Job(
        'BEiT-B MIM pretraining step with the DALL-E tokenizer @224/112', True, 128, 2, {
            'mmbeit': build_mim_mmbeit,
            'mmpretrain': build_mim_mmpretrain,
            'hf-sdpa+dall_e': build_mim_hf_dalle
        }),
    'tokenizer':
    Job(
        'DALL-E tokenizer @112: tokens', False, 256, 8, {
            'mmbeit': build_tok_mmbeit,
            'mmbeit-fast': build_tok_mmbeit_fast,
            'dall_e': build_tok_dalle,
            'mmpretrain': build_tok_mmpretrain
        }),
}

# ------------------------------------------------------------------ harness


@dataclass
class Entry:
    """One implementation in one job: its build, timings and memory."""

    label: str
    status: str = 'ok'  # 'ok' | 'missing: ...' | 'error: ...'
    note: str = ''
    rounds: List[float] = field(default_factory=list)  # images/s (wall clock) of each timed round
    cpu_rounds: List[float] = field(default_factory=list)  # images per CPU-second of each round
    build_s: Optional[float] = None
    warmup_s: Optional[float] = None
    static_bytes: Optional[int] = None
    transient_bytes: Optional[int] = None
    params: Optional[int] = None
    top1_agree: Optional[float] = None  # fraction of sample images whose top-1 class matches fp32
    max_abs_diff: Optional[float] = None  # largest |logit - fp32 logit| on the sample images
    ref_logit_std: Optional[float] = None  # spread of the fp32 logits, to read the diff against
    step: Optional[Callable[[], None]] = None

    @property
    def img_per_s(self) -> Optional[float]:
        return statistics.median(self.rounds) if self.rounds else None

    @property
    def img_per_cpu_s(self) -> Optional[float]:
        return statistics.median(self.cpu_rounds) if self.cpu_rounds else None

    @property
    def peak_bytes(self) -> Optional[int]:
        if self.static_bytes is None or self.transient_bytes is None:
            return None
        return self.static_bytes + self.transient_bytes

    def fail(self, e: BaseException) -> None:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ''
        self.status = (f'missing: {msg}'
                       if isinstance(e, Missing) else f'error: {type(e).__name__}: {msg}')[:300]
        self.step = None


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def _autocast(device: torch.device, dtype: str):
    if dtype in ('fp32', 'int8'):
        return contextlib.nullcontext
    amp = {'bf16': torch.bfloat16, 'fp16': torch.float16}[dtype]
    return lambda: torch.autocast(device.type, dtype=amp)


#: what a label's ``+method`` suffix does: compile (inductor; with freezing for inference),
#: int8 through torchao's PT2E flow or through onnxruntime's static QDQ quantization
METHODS = ('compile', 'pt2e', 'ort')
#: dtypes: autocast (bf16, fp16), none (fp32) or int8 (dynamic int8 linear layers, or the
#: ``+pt2e`` / ``+ort`` static int8 entries of cls-infer)
DTYPES = ('fp32', 'bf16', 'fp16', 'int8')
#: the static int8 entries int8 runs add to cls-infer (their models map an image batch to logits)
INT8_STATIC = ('mmbeit+pt2e', 'timm+pt2e', 'mmbeit+ort')


def split_label(label: str) -> Tuple[str, str, str]:
    """'mmbeit+compile@bf16' -> ('mmbeit', 'compile', 'bf16'); no suffix: 'eager', 'fp32'."""
    label, _, dtype = label.partition('@')
    base, _, method = label.partition('+')
    if method not in METHODS:  # a peer named with a '+' (e.g. 'hf-sdpa+dall_e')
        base, method = label, ''
    return base, method or 'eager', dtype or 'fp32'


def variant_labels(job_name: str, dtypes: Sequence[str], compile_mmbeit: bool) -> List[str]:
    """The labels of a job's entries for ``dtypes``, in run order: 'mmbeit', 'timm+compile',
    'mmbeit@bf16', 'mmbeit@int8' (dynamic int8), 'mmbeit+pt2e@int8', ..."""
    job = JOBS[job_name]
    labels = []
    for dtype in dtypes:
        names = []
        for k in job.entries:
            if dtype == 'int8' and split_label(k)[1] == 'compile':
                continue  # dynamic int8 linear layers run eager
            names.append(k)
            if k == 'mmbeit' and compile_mmbeit and dtype != 'int8':
                names.append('mmbeit+compile')
        if dtype == 'int8' and job_name == 'cls-infer':
            names += list(INT8_STATIC)
        labels += [k if dtype == 'fp32' else f'{k}@{dtype}' for k in names]
    return labels


def _move_off_init(module: nn.Module, seed: int = 0, std: float = 0.02) -> None:
    """Add N(0, std) noise to every parameter (deterministic), so that zero-initialised tables
    and near-zero heads take part in the accuracy comparison as trained weights would."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(module.named_parameters()):
            p.add_(torch.randn(p.shape, generator=g).to(p) * std)


def sample_image_batches(batch: int, num: int, size: int, seed: int = 0) -> List[torch.Tensor]:
    """``num`` batches [batch, 3, size, size] of mmbeit's synthetic sample-data images
    (:func:`mmbeit.utils.sample_data.draw_cls_image`, every class in turn), normalised with
    the ImageNet mean and std: the inputs of the accuracy comparison and of int8 calibration."""
    import numpy as np

    from mmbeit.utils.sample_data import SAMPLE_CLS_CLASSES, draw_cls_image
    rng = np.random.default_rng(seed)
    classes = SAMPLE_CLS_CLASSES
    imgs = [draw_cls_image(rng, classes[i % len(classes)], size) for i in range(batch * num)]
    x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float()  # [N, 3, H, W] RGB
    mean = torch.tensor([123.675, 116.28, 103.53]).view(1, 3, 1, 1)
    std = torch.tensor([58.395, 57.12, 57.375]).view(1, 3, 1, 1)
    return list(((x - mean) / std).split(batch))


def _logits(out: Any) -> torch.Tensor:
    return out if torch.is_tensor(out) else out.logits


def _apply_variant(model: Model, label: str, inputs: dict, calibration: List[torch.Tensor],
                   train: bool) -> Model:
    """The model of ``label``'s method and dtype: compiled, int8-quantized or as built."""
    from mmbeit.deployment import quantize
    _, method, dtype = split_label(label)
    module, fn = model.module, model.fn
    if dtype == 'int8' and train:
        raise ValueError('int8 is for inference jobs only')
    if method == 'compile':
        return Model(module, torch.compile(fn) if train else quantize.compile_frozen(fn))
    if dtype != 'int8':
        return model
    if method == 'eager':
        # timm and mmpretrain call their fused qkv as F.linear(x, qkv.weight, bias): it stays fp32
        skip = ('qkv', ) if split_label(label)[0] in ('timm', 'mmpretrain') else ()
        quantize.quantize_linear_int8(module, skip)
        if skip:
            module.bench_note = 'qkv kept fp32 (called as F.linear with its weight)'
        return Model(module, fn)
    module.eval()
    img = inputs['img']
    if method == 'pt2e':
        run = quantize.quantize_pt2e_int8(module, img, calibration)
        return Model(module, lambda x: run(x['img']))
    # method == 'ort': export, quantize (QDQ), run in onnxruntime with torch's thread count
    import tempfile

    import onnxruntime as ort

    from mmbeit.deployment import export_module
    tmp = tempfile.mkdtemp(prefix='bench_ort_')
    fp32 = export_module(module, img, os.path.join(tmp, 'fp32.onnx'))
    path = quantize.quantize_onnx_int8(fp32, os.path.join(tmp, 'int8.onnx'), calibration)
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])
    name = session.get_inputs()[0].name
    weights = nn.Module()  # the session holds the weights; count the int8 file's size
    weights.register_buffer('onnx', torch.empty(os.path.getsize(path), dtype=torch.uint8))
    weights.bench_note = 'onnxruntime static QDQ int8, per-channel weights'
    return Model(weights,
                 lambda x: torch.from_numpy(session.run(None, {name: x['img'].numpy()})[0]))


def _make_step(model: Model, inputs: dict, train: bool, device: torch.device, dtype: str,
               adamw: str) -> Tuple[Callable[[], None], Optional[torch.optim.Optimizer]]:
    module, fn = model.module, model.fn
    amp = _autocast(device, dtype)
    if not train:

        def step() -> None:
            with torch.no_grad(), amp():
                fn(inputs)

        return step, None
    params = [p for p in module.parameters() if p.requires_grad]
    kwargs = {'default': {}, 'foreach': dict(foreach=True), 'fused': dict(fused=True)}[adamw]
    optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.05, **kwargs)

    def train_step() -> None:
        with amp():
            loss = fn(inputs)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return train_step, optimizer


def run_job(job_name: str,
            batch: int,
            device: torch.device,
            dtype: Union[str, Sequence[str]] = 'fp32',
            iters: int = 5,
            warmup: int = 2,
            rounds: int = 3,
            sizes: Sizes = BASE,
            compile_mmbeit: bool = False,
            only: Optional[Sequence[str]] = None,
            exclude: Sequence[str] = (),
            adamw: str = 'default',
            log: Callable[[str], None] = lambda s: None,
            accuracy: Optional[bool] = None) -> List[Entry]:
    """Build, warm up and time every entry of one job, interleaved; see the module doc.

    ``dtype`` may list several dtypes: every entry runs in each (labels ``name@dtype``), all
    in the same interleaved rounds. ``accuracy`` (default: on for cls-infer) compares every
    entry's logits on sample-data images with the fp32 logits of the same implementation.
    """
    if job_name not in JOBS:
        raise ValueError(f'unknown job {job_name!r}; choose one of {list(JOBS)}')
    job = JOBS[job_name]
    dtypes = [dtype] if isinstance(dtype, str) else list(dtype)
    labels = [
        k for k in variant_labels(job_name, dtypes, compile_mmbeit)
        if (not only or k in only or k.partition('@')[0] in only) and not any(
            e and e in (k if '@' in k else k + '@fp32') for e in exclude)
    ]
    inputs = make_inputs(job_name, batch, sizes, device)
    accuracy = job_name == 'cls-infer' if accuracy is None else accuracy
    samples = sample_image_batches(batch, 2, sizes.cls_img) if accuracy else []
    references: Dict[str, List[torch.Tensor]] = {}  # implementation -> its fp32 logits
    entries = []
    for label in labels:
        entry = Entry(label)
        entries.append(entry)
        base, _, entry_dtype = split_label(label)
        builders = dict(JOBS[job_name].entries, **{'mmbeit+compile': job.entries['mmbeit']})
        builder = builders.get(base, builders.get(label.partition('@')[0]))
        ctx = BuildContext(sizes=sizes, train=job.train, device=device, dtype=entry_dtype)
        try:
            torch.manual_seed(0)
            t0 = time.perf_counter()
            model = builder(ctx)
            model.module.to(device).train(job.train)
            if accuracy:
                _move_off_init(model.module)
                if base not in references:  # the same weights in fp32, eager
                    with torch.no_grad():
                        references[base] = [_logits(model.fn(dict(img=x))) for x in samples]
            model = _apply_variant(model, label, inputs, samples, job.train)
            entry.build_s = time.perf_counter() - t0
            entry.note = getattr(model.module, 'bench_note', '')
            entry.params = sum(p.numel() for p in model.module.parameters())
            entry.step, optimizer = _make_step(model, inputs, job.train, device, entry_dtype, adamw)
            t0 = time.perf_counter()
            for _ in range(max(1, warmup)):  # the first step compiles, allocates, caches
                entry.step()
            _sync(device)
            entry.warmup_s = time.perf_counter() - t0
            entry.static_bytes = tensor_bytes(model.module, optimizer)
            with PeakMemory(device) as mem:
                entry.step()
            entry.transient_bytes = mem.transient
            if accuracy:
                with torch.no_grad(), _autocast(device, entry_dtype)():
                    outs = [_logits(model.fn(dict(img=x))).float() for x in samples]
                ref, out = torch.cat(references[base]), torch.cat(outs)
                entry.top1_agree = (ref.argmax(1) == out.argmax(1)).float().mean().item()
                entry.max_abs_diff = (ref - out).abs().max().item()
                entry.ref_logit_std = ref.std().item()
            log(f'[{job_name}] {label}: built in {entry.build_s:.1f}s, warmed up in '
                f'{entry.warmup_s:.1f}s' + (f', top-1 agreement {entry.top1_agree:.3f}, max '
                                            f'|diff| {entry.max_abs_diff:.3g}' if accuracy else ''))
        except Exception as e:  # noqa: BLE001  (any failure is reported, not raised)
            entry.fail(e)
            log(f'[{job_name}] {label}: {entry.status}')
        gc.collect()

    live = [e for e in entries if e.step is not None]
    for r in range(rounds):
        order = live[r % len(live):] + live[:r % len(live)] if live else []
        for entry in order:
            if entry.step is None:
                continue
            try:
                _sync(device)
                t0, c0 = time.perf_counter(), time.process_time()
                for _ in range(iters):
                    entry.step()
                _sync(device)
                entry.rounds.append(batch * iters / (time.perf_counter() - t0))
                entry.cpu_rounds.append(batch * iters / max(time.process_time() - c0, 1e-9))
                log(f'[{job_name}] round {r + 1}/{rounds} {label_pad(entry.label)} '
                    f'{entry.rounds[-1]:8.2f} img/s, {entry.cpu_rounds[-1]:8.2f} img/CPU-s')
            except Exception as e:  # noqa: BLE001
                entry.fail(e)
                entry.rounds.clear()
                entry.cpu_rounds.clear()
    for entry in entries:
        entry.step = None
    return entries


def label_pad(label: str) -> str:
    return f'{label:<15}'


def environment(device: torch.device, threads: int) -> dict:
    """Device, software versions and load, for the report."""
    info = dict(
        date=datetime.datetime.now().astimezone().isoformat(timespec='seconds'),
        python=platform.python_version(),
        torch=torch.__version__,
        device=str(device),
        threads=threads,
        memory_method=memory_method(device),
        load_avg=list(os.getloadavg()) if hasattr(os, 'getloadavg') else None,
        command=' '.join([os.path.basename(sys.executable)] + sys.argv))
    if device.type == 'cuda':
        info['device_name'] = torch.cuda.get_device_name(device)
    else:
        name = platform.processor()
        with contextlib.suppress(OSError):
            with open('/proc/cpuinfo') as f:
                name = next(
                    (ln.split(':', 1)[1].strip() for ln in f if ln.startswith('model name')), name)
        info['device_name'] = f'{name} ({os.cpu_count()} logical CPUs)'
    versions = {}
    for mod in ('mmbeit', 'timm', 'transformers', 'mmpretrain', 'mmseg', 'mmengine', 'dall_e'):
        try:
            from importlib.metadata import version
            dist = {'mmseg': 'mmsegmentation', 'dall_e': 'DALL-E'}.get(mod, mod)
            versions[mod] = version(dist)
        except Exception:  # noqa: BLE001
            versions[mod] = None
    info['versions'] = versions
    return info


def run_benchmark(jobs: Sequence[str],
                  device: str = 'cpu',
                  batch_sizes: Optional[Dict[str, int]] = None,
                  dtype: Union[None, str, Sequence[str]] = None,
                  iters: int = 5,
                  warmup: int = 2,
                  rounds: int = 3,
                  threads: Union[None, int, Sequence[int]] = None,
                  sizes: Sizes = BASE,
                  compile_mmbeit: bool = False,
                  only: Optional[Sequence[str]] = None,
                  exclude: Sequence[str] = (),
                  adamw: str = 'default',
                  log: Callable[[str], None] = lambda s: None) -> dict:
    """Run ``jobs`` and return the JSON-ready report (``meta`` and one table per job).

    Args:
        jobs: names from :data:`JOBS`.
        device: 'cpu', 'cuda' or 'cuda:N'.
        batch_sizes: job -> batch; defaults to the job's GPU or CPU batch.
        dtype: one or several of :data:`DTYPES`: 'bf16' | 'fp16' (autocast) | 'fp32' |
            'int8' (inference jobs, CPU); several run in the same interleaved rounds.
            Defaults to bf16 on CUDA, fp32 on the CPU.
        iters: steps per timed round; warmup: untimed steps first; rounds: interleaved rounds.
        threads: torch.set_num_threads, when given; several thread counts run one after the
            other (every model built anew), their tables keyed ``'JOB@Nt'``.
        sizes: :data:`BASE` (the benchmark) or :data:`TINY` (tests).
        compile_mmbeit: add an 'mmbeit+compile' entry to every job (with inductor freezing for
            inference jobs).
        only / exclude: keep only these labels (a name without '@dtype' keeps it in every
            dtype) / drop labels containing these strings (fp32 labels match with an '@fp32'
            suffix, so 'timm+compile@fp32' drops only the fp32 one).
        adamw: 'default' | 'foreach' | 'fused' AdamW implementation, the same for every model.
    """
    dev = torch.device(device)
    if dev.type == 'cuda' and not torch.cuda.is_available():
        raise RuntimeError(f'device {device!r} was asked for but CUDA is not available')
    dtypes = [dtype] if isinstance(dtype, str) else list(dtype or [])
    dtypes = dtypes or ['bf16' if dev.type == 'cuda' else 'fp32']
    bad = [d for d in dtypes if d not in DTYPES]
    if bad:
        raise ValueError(f'unknown dtype {bad}; choose from {DTYPES}')
    unknown = [j for j in jobs if j not in JOBS]
    if unknown:
        raise ValueError(f'unknown jobs {unknown}; choose from {list(JOBS)}')
    if 'int8' in dtypes:
        if dev.type != 'cpu':
            raise ValueError('dtype int8 runs on the CPU only')
        trained = [j for j in jobs if JOBS[j].train]
        if trained:
            raise ValueError(f'dtype int8 is for inference jobs; drop the training jobs {trained}')
    thread_counts = [threads] if isinstance(threads, int) else list(threads or [None])
    import mmbeit  # noqa: F401  (compatibility fixes before the peers import)
    if thread_counts[0]:
        torch.set_num_threads(thread_counts[0])
    meta = environment(dev, torch.get_num_threads())
    meta.update(
        dtype=dtypes[0] if len(dtypes) == 1 else dtypes,
        iters=iters,
        warmup=warmup,
        rounds=rounds,
        adamw=adamw,
        sizes=asdict(sizes))
    if len(thread_counts) > 1:
        meta['threads'] = thread_counts
    report = dict(meta=meta, jobs={})
    for n_threads in thread_counts:
        if n_threads:
            torch.set_num_threads(n_threads)
        torch._dynamo.reset()  # compiled code is specialised to the thread count
        for name in jobs:
            job = JOBS[name]
            batch = (batch_sizes
                     or {}).get(name) or (job.gpu_batch if dev.type == 'cuda' else job.cpu_batch)
            load0 = os.getloadavg()[0] if hasattr(os, 'getloadavg') else None
            t0 = time.perf_counter()
            entries = run_job(name, batch, dev, dtypes, iters, warmup, rounds, sizes,
                              compile_mmbeit, only, exclude, adamw, log)
            key = name if len(thread_counts) == 1 else f'{name}@{n_threads}t'
            report['jobs'][key] = dict(
                job=name,
                title=job.title,
                batch=batch,
                threads=torch.get_num_threads(),
                seconds=round(time.perf_counter() - t0, 1),
                load_avg_1min=[load0,
                               os.getloadavg()[0] if hasattr(os, 'getloadavg') else None],
                results={e.label: _entry_json(e)
                         for e in entries})
            gc.collect()
            if dev.type == 'cuda':
                torch.cuda.empty_cache()
    return report


def _mib(n: Optional[int]) -> Optional[float]:
    return None if n is None else round(n / 2**20, 1)


def _entry_json(e: Entry) -> dict:
    return dict(
        status=e.status,
        note=e.note,
        img_per_s=_round(e.img_per_s),
        img_per_s_rounds=[_round(v) for v in e.rounds],
        img_per_cpu_s=_round(e.img_per_cpu_s),
        img_per_cpu_s_rounds=[_round(v) for v in e.cpu_rounds],
        peak_mib=_mib(e.peak_bytes),
        static_mib=_mib(e.static_bytes),
        transient_mib=_mib(e.transient_bytes),
        params_m=None if e.params is None else round(e.params / 1e6, 2),
        build_s=_round(e.build_s),
        warmup_s=_round(e.warmup_s),
        top1_agree=_round(e.top1_agree),
        max_abs_diff=_round(e.max_abs_diff),
        ref_logit_std=_round(e.ref_logit_std))


def _round(v: Optional[float]) -> Optional[float]:
    return None if v is None else float(f'{v:.4g}')  # 4 significant digits


# ------------------------------------------------------------------- report


def markdown_table(report: dict) -> str:
    """One row per (job, implementation), with mmbeit's speed over the row's.

    On the CPU the ratio uses images per CPU-second (process time), which a busy
    shared machine disturbs far less than the wall clock; on CUDA, wall-clock img/s.
    Runs with several dtypes add the row's speed over the fastest fp32 peer (an
    implementation other than mmbeit, eager or compiled, in the same table) and, where
    measured, the accuracy against the same implementation in fp32. Both ratios divide by
    an fp32 entry (eager mmbeit, the best peer); a run without fp32 (``--dtype bf16``,
    CUDA's default) divides by its first dtype's entries instead.
    """
    on_cpu = report['meta']['device'] == 'cpu'
    key = 'img_per_cpu_s' if on_cpu else 'img_per_s'
    results = [r for job in report['jobs'].values() for r in job['results'].values()]
    multi = any('@' in label for job in report['jobs'].values() for label in job['results'])
    acc = any(r.get('top1_agree') is not None for r in results)
    head = '| job | threads | batch | implementation | img/s wall: median (min-max) |'
    head += ' img/CPU-s: median (min-max) |' if on_cpu else ''
    head += ' mmbeit / this |'
    head += ' this / best fp32 peer |' if multi else ''
    head += ' top-1 = fp32 | max abs logit diff (fp32 logit std) |' if acc else ''
    head += ' peak MiB (static + transient) | note |'
    ncols = head.count(' |')
    rows = [head, '|' + '---|' * ncols]
    for job in report['jobs'].values():
        res = job['results']
        name = job.get('job', '')
        # the reference dtype: fp32 where the run has it, else the run's first dtype
        dtypes = [split_label(label)[2] for label in res]
        ref_dtype = 'fp32' if 'fp32' in dtypes or not dtypes else dtypes[0]
        ref = next(
            (r[key]
             for label, r in res.items() if split_label(label) == ('mmbeit', 'eager', ref_dtype)),
            None)
        peers = [
            r[key] for label, r in res.items()
            if r['status'] == 'ok' and r[key] and split_label(label)[0] != 'mmbeit'
            and split_label(label)[2] == ref_dtype and split_label(label)[1] in ('eager', 'compile')
        ]
        best_peer = max(peers) if peers else None
        for label, r in res.items():
            lead = f'| {name} | {job.get("threads", "")} | {job["batch"]} | {label} |'
            if r['status'] != 'ok':
                rows.append(f'{lead} {r["status"]} |' + ' |' * (ncols - 5))
                continue
            cells = [_speed(r['img_per_s'], r['img_per_s_rounds'])]
            if on_cpu:
                cells.append(_speed(r['img_per_cpu_s'], r['img_per_cpu_s_rounds']))
            cells.append(f'{ref / r[key]:.2f}x' if ref and r[key] else '')
            if multi:
                cells.append(f'{r[key] / best_peer:.2f}x' if best_peer and r[key] else '')
            if acc:
                agree = r.get('top1_agree')
                cells.append('' if agree is None else f'{agree:.0%}')
                diff, std = r.get('max_abs_diff'), r.get('ref_logit_std')
                cells.append('' if diff is None else f'{diff:.2g} ({std:.2g})')
            cells.append(f'{r["peak_mib"]:.0f} ({r["static_mib"]:.0f} + {r["transient_mib"]:.0f})'
                         if r['peak_mib'] is not None else 'n/a')
            cells.append(r['note'])
            rows.append(f'{lead} ' + ' | '.join(cells) + ' |')
    return '\n'.join(rows)


def _speed(median: float, rounds: List[float]) -> str:
    return f'{_fmt(median)} ({_fmt(min(rounds))}-{_fmt(max(rounds))})'


def _fmt(v: float) -> str:
    """Three significant digits without exponents: 2150, 215, 21.5, 2.15, 0.215, 0.0215."""
    return f'{v:.0f}' if v >= 100 else f'{v:.{max(0, 2 - math.floor(math.log10(max(v, 1e-9))))}f}'


def parse_batch_sizes(items: Sequence[str]) -> Dict[str, int]:
    """['cls-infer=8', 'seg-train=1'] or ['8'] (every job) -> {job: batch}."""
    out: Dict[str, int] = {}
    for item in items:
        if '=' in item:
            job, _, value = item.partition('=')
            if job not in JOBS:
                raise ValueError(
                    f'--batch-size names unknown job {job!r}; choose from {list(JOBS)}')
            out[job] = int(value)
        else:
            out.update({job: int(item) for job in JOBS})
    return out


__all__ = [
    'DTYPES', 'METHODS', 'split_label', 'variant_labels', 'sample_image_batches', 'BASE', 'TINY',
    'SIZES', 'JOBS', 'Job', 'Sizes', 'Missing', 'PeakMemory', 'make_inputs', 'run_job',
    'run_benchmark', 'markdown_table', 'parse_batch_sizes', 'tensor_bytes'
]
