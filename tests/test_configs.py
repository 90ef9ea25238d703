"""One generic test over every config in configs/: load, shrink, build, forward, backward,
gradients.

Shrinking keeps the config's structure (model types, heads, losses, preprocessors)
and replaces only sizes: the backbone becomes the tiny arch at 64 pixels, heads
and necks get matching small widths, pretrained weights are not fetched.
"""
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config, ConfigDict

import mmbeit  # noqa: F401

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = sorted(
    p for p in glob.glob(osp.join(ROOT, 'configs', '**', '*.py'), recursive=True)
    if f'{osp.sep}_base_{osp.sep}' not in p)
TINY_DIMS = 64
IMG = 64


def _is_v2_neck(neck) -> bool:
    return isinstance(neck, dict) and str(neck.get('type', '')).endswith('BEiTV2Neck')


def _shrink(node, parent_key: str = ''):
    """Replace sizes in a model config in place (recursively)."""
    if isinstance(node, (list, tuple)):
        for item in node:
            _shrink(item, parent_key)
        return
    if not isinstance(node, dict):
        return
    typ = str(node.get('type', ''))
    if typ.endswith('VQKDTrainer'):
        _shrink_vqkd(node)
        return
    if typ.endswith('BEiT') and 'arch' in node or typ == 'mmbeit.BEiT':
        node['arch'] = 'tiny'
        node['img_size'] = IMG
        node.pop('init_cfg', None)
        idx = node.get('out_indices', -1)
        if isinstance(idx, (list, tuple)) and len(idx) > 1 and not all(-4 <= i < 0 for i in idx):
            node['out_indices'] = tuple(range(len(idx)))  # negative ones fit the 4 tiny layers
    elif typ.endswith('VQKD'):
        node['encoder'] = dict(
            arch='tiny', img_size=IMG, patch_size=node.get('encoder', {}).get('patch_size', 16))
        node.update(num_embed=32, kmeans_init=False)
        node.pop('init_cfg', None)
        node.pop('checkpoint', None)
    elif typ.endswith('BEiTPretrain') and _is_v2_neck(node.get('neck')):
        # the patch aggregation reads the backbone's first output layer of the 4 tiny ones
        early = node['backbone'].get('out_indices', [-4])[0]
        node['neck']['early_layers'] = early % 4 + 1
    elif typ.endswith('DALLEEncoder'):
        node.update(n_hid=16, n_blk_per_group=1)
        node.pop('init_cfg', None)
        node.pop('checkpoint', None)
    for key in ('in_channels', 'embed_dim', 'embed_dims', 'num_features', 'input_features'):
        if key in node and not typ.endswith('BEiT') and 'DALLE' not in typ:
            v = node[key]
            node[key] = [TINY_DIMS] * len(v) if isinstance(v, (list, tuple)) else TINY_DIMS
    if 'channels' in node and typ.endswith(('Head', 'UPerHead')):
        node['channels'] = 16
    if typ.endswith('DataPreProcessor') and node.get('size') is not None:
        node['size'] = (IMG, IMG)  # segmentation pads inputs to the crop size
    if parent_key == 'test_cfg' and 'crop_size' in node:
        node.update(crop_size=(IMG, IMG), stride=(IMG // 2, IMG // 2))
    for key, value in list(node.items()):
        if key != 'init_cfg':
            _shrink(value, key)


def _shrink_vqkd(node: dict) -> None:
    """VQ-KD: tiny encoder and decoder, a small codebook, a tiny random teacher on the same grid."""
    tok = node['tokenizer']
    tok.update(num_embed=64, embed_dims=8)
    tok.pop('init_cfg', None)
    tok.pop('checkpoint', None)
    encoder = tok.setdefault('encoder', {})
    encoder.update(arch='tiny', img_size=IMG)
    patch = encoder.get('patch_size', 16)
    node['decoder'] = dict(
        node.get('decoder') or {},
        arch=dict(embed_dims=32, num_layers=1, num_heads=2, feedforward_channels=64))
    teacher = node['teacher']
    teacher.pop('checkpoint', None)
    kwargs = dict(patch_size=patch, embed_dim=32, depth=1, num_heads=2)
    if teacher.get('kind', 'clip') == 'clip':
        kwargs['num_classes'] = 16
    teacher.update(img_size=IMG, model_kwargs=kwargs, init_seed=0)


def _to_plain(cfg):
    return cfg.to_dict() if isinstance(cfg, ConfigDict) else cfg


def _fake_batch(model_type: str, cfg: Config, batch: int = 2):
    g = torch.Generator().manual_seed(0)
    inputs = torch.rand(batch, 3, IMG, IMG, generator=g) * 255
    if model_type.endswith(('ImageClassifier', 'BEiTClassifier')):
        from mmpretrain.structures import DataSample
        samples = [DataSample().set_gt_label(i % 2) for i in range(batch)]
        return dict(inputs=list(inputs), data_samples=samples)
    if model_type.endswith(('EncoderDecoder', 'BEiTSegmentor')):
        from mmengine.structures import PixelData
        from mmseg.structures import SegDataSample
        samples = []
        for i in range(batch):
            s = SegDataSample(
                metainfo=dict(img_shape=(IMG, IMG), ori_shape=(IMG, IMG), pad_shape=(IMG, IMG)))
            s.gt_sem_seg = PixelData(data=torch.randint(0, 2, (1, IMG, IMG), generator=g))
            samples.append(s)
        return dict(inputs=list(inputs), data_samples=samples)
    if model_type.endswith('BEiTPretrain'):
        from mmpretrain.structures import DataSample
        grid = IMG // cfg.model.backbone.get('patch_size', 16)
        # a token per patch: DALL-E's view has 8 px a token, VQ-KD's the backbone's patch size
        px = 8 if str(cfg.model.target_generator.type).endswith('DALLEEncoder') else IMG // grid
        second = torch.rand(batch, 3, grid * px, grid * px, generator=g) * 255
        samples = []
        for _ in range(batch):
            mask = torch.zeros(grid, grid, dtype=torch.bool)
            mask.view(-1)[torch.randperm(mask.numel(), generator=g)[:grid * grid // 3]] = True
            samples.append(DataSample().set_mask(mask))
        return dict(inputs=[list(inputs), list(second)], data_samples=samples)
    if model_type.endswith('VQKDTrainer'):
        return dict(inputs=list(inputs), data_samples=None)
    raise NotImplementedError(f'test_configs has no fake batch for model type {model_type!r}')


def test_there_are_configs():
    assert len(CONFIGS) > 0


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: osp.relpath(p, osp.join(ROOT, 'configs')))
def test_config_builds_trains_and_every_param_gets_gradient(path):
    from mmengine.registry import MODELS, init_default_scope
    cfg = Config.fromfile(path)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    model_cfg = _to_plain(cfg.model)
    if cfg.get('data_preprocessor') is not None:  # as mmengine's Runner merges it
        model_cfg.setdefault('data_preprocessor', _to_plain(cfg.data_preprocessor))
    _shrink(model_cfg)
    torch.manual_seed(0)
    model = MODELS.build(model_cfg)
    model.init_weights()
    model.train()
    data = model.data_preprocessor(_fake_batch(model_cfg['type'], cfg), training=True)
    losses = model(**data, mode='loss')
    loss = sum(v.sum() for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(loss)
    loss.backward()
    no_grad = [
        n for n, p in model.named_parameters()
        if p.requires_grad and (p.grad is None or not torch.isfinite(p.grad).all())
    ]
    assert not no_grad, f'trainable parameters without a gradient: {no_grad[:10]}'
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
