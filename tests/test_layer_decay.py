"""Layer-wise lr decay of the classification configs: mmpretrain's constructor on mmbeit.BEiT.

With L layers and decay d: patch embedding and tokens get lr * d**(L+1), layer i
gets lr * d**(L-i), the head and the backbone's final norms get lr (unilm's rule).
"""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope

from mmbeit.apis.inference import _build

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
BENCH = osp.join(ROOT, 'configs', 'beit', 'benchmarks')


def _tiny(config: str, **backbone) -> Config:
    cfg = Config.fromfile(osp.join(BENCH, config))
    cfg.model.backbone.update(arch='tiny', img_size=32, init_cfg=None, **backbone)
    cfg.model.head.in_channels = 64
    return cfg


def _groups(cfg: Config) -> dict:
    """{param name: param group} of the optimizer the config builds for its (tiny) model."""
    torch.manual_seed(0)
    model = _build(cfg)
    optim_cfg = cfg.optim_wrapper.copy()
    optim_cfg['type'] = 'OptimWrapper'  # AmpOptimWrapper needs a GPU; the groups are the same
    optim_cfg.pop('loss_scale', None)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        wrapper = build_optim_wrapper(model, optim_cfg)
    names = {id(p): n for n, p in model.named_parameters()}
    out = {}
    for group in wrapper.optimizer.param_groups:
        for p in group['params']:
            out[names[id(p)]] = group
    assert set(out) == {n for n, p in model.named_parameters() if p.requires_grad}
    return out


def expected_scale(name: str, decay: float, num_layers: int) -> float:
    """unilm's rule, written independently of BEiT.get_layer_depth."""
    if name.startswith(('backbone.patch_embed', 'backbone.cls_token', 'backbone.pos_embed',
                        'backbone.mask_token')):
        return decay**(num_layers + 1)
    if name.startswith('backbone.layers.'):
        i = int(name.split('.')[2])
        return decay**(num_layers - i)
    return 1.0


@pytest.mark.parametrize('config,lr,decay', [
    ('beit-base-p16_8xb128-coslr-100e_in1k.py', 4e-3, 0.65),
    ('beit-large-p16_in21k-pre_8xb64-accu2-amp-coslr-50e_in1k.py', 1e-3, 0.75),
    ('beit-base-p16_in21k-ft-pre_8xb64-amp-coslr-30e_in1k.py', 2e-5, 0.85),
    ('beit-tiny-p8_1xb32-20e_sample.py', 2e-3, 0.75),
])
def test_lr_per_layer(config, lr, decay):
    cfg = _tiny(config)
    assert cfg.optim_wrapper.optimizer.lr == lr
    assert cfg.optim_wrapper.paramwise_cfg.layer_decay_rate == decay
    groups = _groups(cfg)
    L = 4  # tiny
    for name, group in groups.items():
        assert group['lr'] == pytest.approx(lr * expected_scale(name, decay, L), rel=1e-9), name
    # spot checks with literal values
    assert groups['backbone.patch_embed.proj.weight']['lr'] == pytest.approx(lr * decay**5)
    assert groups['backbone.cls_token']['lr'] == pytest.approx(lr * decay**5)
    assert groups['backbone.layers.0.attn.qkv.weight']['lr'] == pytest.approx(lr * decay**4)
    assert groups['backbone.layers.3.mlp.fc2.weight']['lr'] == pytest.approx(lr * decay)
    assert groups['backbone.fc_norm.weight']['lr'] == pytest.approx(lr)
    assert groups['head.fc.weight']['lr'] == pytest.approx(lr)
    # the per-layer relative position tables decay with their layer
    table = groups['backbone.layers.2.attn.rel_pos_bias.table']
    assert table['lr'] == pytest.approx(lr * decay**2)


def test_weight_decay_per_parameter():
    cfg = _tiny('beit-base-p16_8xb128-coslr-100e_in1k.py')
    groups = _groups(cfg)
    wd = cfg.optim_wrapper.optimizer.weight_decay
    assert wd == 0.05
    no_decay = [
        'backbone.cls_token', 'backbone.patch_embed.proj.bias', 'backbone.layers.0.gamma1',
        'backbone.layers.0.attn.q_bias', 'backbone.layers.0.attn.v_bias',
        'backbone.layers.0.norm1.weight', 'backbone.fc_norm.bias', 'head.fc.bias'
    ]
    decay = [
        'backbone.patch_embed.proj.weight', 'backbone.layers.0.attn.qkv.weight',
        'backbone.layers.1.mlp.fc1.weight', 'head.fc.weight',
        'backbone.layers.0.attn.rel_pos_bias.table'
    ]  # 2-D: decayed, as unilm
    for name in no_decay:
        assert groups[name]['weight_decay'] == 0.0, name
    for name in decay:
        assert groups[name]['weight_decay'] == pytest.approx(wd), name


def test_shared_table_and_abs_pos_embed_depths():
    """A shared table sits on top (as mmpretrain); an absolute position embedding with the
    embeddings."""
    cfg = _tiny(
        'beit-base-p16_8xb128-coslr-100e_in1k.py',
        use_rel_pos_bias=False,
        use_shared_rel_pos_bias=True,
        use_abs_pos_emb=True)
    groups = _groups(cfg)
    lr, decay = 4e-3, 0.65
    assert groups['backbone.pos_embed']['lr'] == pytest.approx(lr * decay**5)
    assert groups['backbone.pos_embed']['weight_decay'] == 0.0
    assert groups['backbone.rel_pos_bias.table']['lr'] == pytest.approx(lr)


def test_linear_probe_trains_only_the_probe():
    cfg = Config.fromfile(osp.join(BENCH, 'beit-base-p16_8xb128-linear-coslr-100e_in1k.py'))
    cfg.model.backbone.update(arch='tiny', img_size=32, init_cfg=None, frozen_stages=4)
    cfg.model.neck.input_features = 64
    cfg.model.head.in_channels = 64
    torch.manual_seed(0)
    model = _build(cfg)
    trainable = sorted(n for n, p in model.named_parameters() if p.requires_grad)
    assert trainable == [
        'backbone.fc_norm.bias', 'backbone.fc_norm.weight', 'head.fc.bias', 'head.fc.weight'
    ]
    model.train()  # frozen parts stay in eval mode (no dropout / drop path)
    assert not model.backbone.layers[0].training and not model.backbone.norm.training
    assert model.neck.training
    x = torch.randn(2, 3, 32, 32)
    loss = model.head.loss(model.extract_feat(x), [_sample(0), _sample(1)])['loss']
    loss.backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if p.requires_grad)


def _sample(label: int):
    from mmpretrain.structures import DataSample
    return DataSample().set_gt_label(label)
