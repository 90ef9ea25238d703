"""UperNet with mmbeit's BEiT: parity with mmseg and transformers, sizes, lr decay, configs, tools.

Reference models are built by mmseg and transformers with random weights (every
parameter and BN statistic redrawn, so no zero table or unit gamma hides a
mistake), converted by :mod:`mmbeit.converters` and compared in fp32.
"""
import copy
import glob
import os.path as osp
import runpy
import sys

import numpy as np
import pytest
import torch
from mmengine.config import Config, ConfigDict

import mmbeit  # noqa: F401

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CFG_DIR = osp.join(ROOT, 'configs', 'upernet_beit')
TINY_CFG = osp.join(CFG_DIR, 'upernet_beit-tiny_1xb8-500_sample-64x64.py')
NUM_CLASSES = 5


def _scope():
    from mmengine.registry import init_default_scope
    init_default_scope('mmseg')


def _randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Redraw every parameter and BN statistic (BN variances positive)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in list(model.named_parameters()) + list(model.named_buffers()):
            if not t.is_floating_point():
                continue
            if name.endswith('running_var'):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            else:
                t.copy_(torch.randn(t.shape, generator=g) * 0.2)
    return model.eval()


def _seg_cfg(embed_dims: int,
             num_layers: int,
             num_heads: int,
             out_indices,
             img_size=64,
             channels: int = 16,
             aux_channels: int = 8,
             pool_scales=(1, 2, 3, 6)) -> dict:
    """Our segmentor: configs/_base_/models/upernet_beit.py with small sizes and BN."""
    cfg = Config.fromfile(osp.join(ROOT, 'configs', '_base_', 'models', 'upernet_beit.py'))
    model = cfg.model.to_dict()
    norm = dict(type='BN', requires_grad=True)
    model['backbone'].update(
        arch=dict(
            embed_dims=embed_dims,
            num_layers=num_layers,
            num_heads=num_heads,
            feedforward_channels=4 * embed_dims),
        img_size=img_size,
        out_indices=tuple(out_indices),
        drop_path_rate=0.)
    model['neck'].update(embed_dim=embed_dims, norm_cfg=norm)
    model['decode_head'].update(
        in_channels=[embed_dims] * 4,
        channels=channels,
        num_classes=NUM_CLASSES,
        norm_cfg=norm,
        pool_scales=pool_scales)
    model['auxiliary_head'].update(
        in_channels=embed_dims, channels=aux_channels, num_classes=NUM_CLASSES, norm_cfg=norm)
    return model


def _build(model_cfg: dict):
    from mmengine.registry import MODELS
    _scope()
    return MODELS.build(ConfigDict(copy.deepcopy(model_cfg))).eval()


def _metas(h: int, w: int, n: int = 1):
    return [dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w)) for _ in range(n)]


def _logits(model, x: torch.Tensor):
    """(decode logits at the input size, auxiliary head logits at 1/16)."""
    with torch.no_grad():
        metas = _metas(*x.shape[2:], n=x.shape[0])
        return model.encode_decode(x, metas), model.auxiliary_head(model.extract_feat(x))


# ----------------------------------------------------------------------------- parity
def test_converted_mmseg_upernet_beit_gives_mmseg_logits():
    from mmbeit.converters import load_pretrained
    _scope()
    out_indices = (1, 2, 3, 5)
    ours_cfg = _seg_cfg(32, 6, 2, out_indices)
    ref_cfg = copy.deepcopy(ours_cfg)
    ref_cfg['backbone'] = dict(
        type='BEiT',
        img_size=(64, 64),
        patch_size=16,
        embed_dims=32,
        num_layers=6,
        num_heads=2,
        mlp_ratio=4,
        out_indices=out_indices,
        qv_bias=True,
        init_values=0.1,
        final_norm=False,
        drop_path_rate=0.,
        norm_cfg=dict(type='LN', eps=1e-6))
    ref = _randomize(_build(ref_cfg))
    ours = _build(ours_cfg)
    load_pretrained(ours, {'state_dict': ref.state_dict()})  # strict: every key placed

    x = torch.randn(2, 3, 64, 64)
    (ref_dec, ref_aux), (our_dec, our_aux) = _logits(ref, x), _logits(ours, x)
    assert ref_dec.shape == (2, NUM_CLASSES, 64, 64)
    assert (ref_dec - our_dec).abs().max() <= 1e-4
    assert (ref_aux - our_aux).abs().max() <= 1e-4
    # the reference is sensitive to the weights: a different backbone gives other logits
    with torch.no_grad():
        ours.backbone.layers[5].gamma1.mul_(2)
    assert (ref_dec - _logits(ours, x)[0]).abs().max() > 1e-3


def test_converted_transformers_beit_segmentation_gives_its_logits():
    from transformers import BeitConfig, BeitForSemanticSegmentation

    from mmbeit.converters import load_pretrained
    hf_cfg = BeitConfig(
        hidden_size=32,
        num_hidden_layers=6,
        num_attention_heads=2,
        intermediate_size=128,
        image_size=64,
        patch_size=16,
        use_relative_position_bias=True,
        layer_scale_init_value=0.1,
        out_indices=[3, 4, 5, 6],
        pool_scales=[1, 2, 3, 6],
        use_auxiliary_head=True,
        auxiliary_channels=8,
        num_labels=NUM_CLASSES,
        layer_norm_eps=1e-6,
        hidden_act='gelu')
    torch.manual_seed(0)
    hf = _randomize(BeitForSemanticSegmentation(hf_cfg), seed=1)
    # transformers reads hidden_states[i - 1] for i in out_indices; hidden_states[0] is the
    # embedding output, so its index i is the output of layer i - 2
    ours = _build(_seg_cfg(32, 6, 2, [i - 2 for i in hf_cfg.out_indices], channels=32))
    load_pretrained(ours, hf.state_dict())

    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        hf_logits = hf(pixel_values=x).logits  # [B, K, H/4, W/4]
        feats = ours.extract_feat(x)
        our_logits = ours.decode_head(feats)  # same resolution, before resizing to the input
        hf_aux = hf.auxiliary_head(
            hf.fpn(
                tuple(h[:, 1:].transpose(1, 2).reshape(2, 32, 4, 4)
                      for h in (hf.beit(x, output_hidden_states=True).hidden_states[i - 1]
                                for i in hf_cfg.out_indices))))
    assert hf_logits.shape == our_logits.shape == (2, NUM_CLASSES, 16, 16)
    assert (hf_logits - our_logits).abs().max() <= 1e-4
    assert (hf_aux - ours.auxiliary_head(feats)).abs().max() <= 1e-4


# ------------------------------------------------------------------------------ sizes
@pytest.mark.parametrize('size', [(48, 48), (48, 80), (96, 64)])
def test_model_made_for_one_size_runs_at_others_in_whole_and_slide_mode(size):
    """Like a 640 checkpoint tested at 512 and at non-square sizes."""
    _scope()
    cfg = _seg_cfg(32, 4, 2, (0, 1, 2, 3), img_size=64)
    model = _randomize(_build(cfg))
    x = torch.randn(1, 3, *size)
    with torch.no_grad():
        model.test_cfg = ConfigDict(mode='whole')
        whole = model.inference(x, _metas(*size))
        # a model built for this size from the 64-pixel weights gives the same whole logits
        other = _build({**cfg, 'backbone': {**cfg['backbone'], 'img_size': size}})
        other.load_state_dict(model.state_dict())
        assert (other.inference(x, _metas(*size)) - whole).abs().max() <= 1e-4
        # sliding window with one crop covering the image == whole
        model.test_cfg = ConfigDict(mode='slide', crop_size=size, stride=(32, 32))
        assert (model.inference(x, _metas(*size)) - whole).abs().max() <= 1e-4
        # overlapping 32-pixel crops (stride 21, as 640 / 426): every pixel predicted
        model.test_cfg = ConfigDict(mode='slide', crop_size=(32, 32), stride=(21, 21))
        slide = model.inference(x, _metas(*size))
    assert whole.shape == slide.shape == (1, NUM_CLASSES, *size)
    assert torch.isfinite(slide).all() and (slide - whole).abs().max() > 1e-3


# ------------------------------------------------------------------------ layer decay
def test_layer_decay_lrs_of_the_segmentor():
    from mmengine.optim import build_optim_wrapper
    _scope()
    model = _build(_seg_cfg(32, 4, 2, (0, 1, 2, 3)))
    cfg = Config.fromfile(osp.join(ROOT, 'configs', '_base_', 'schedules', 'schedule_160k.py'))
    wrapper = build_optim_wrapper(model, copy.deepcopy(cfg.optim_wrapper))
    lr, rate, wd = 3e-5, 0.9, 0.05
    L = 4
    seen = {}
    for group in wrapper.optimizer.param_groups:
        for name in group['param_names']:
            seen[name] = (group['lr'], group['weight_decay'])
    assert set(seen) == {n for n, p in model.named_parameters() if p.requires_grad}

    def expected_depth(name):
        if name in ('backbone.cls_token', ) or name.startswith('backbone.patch_embed'):
            return 0
        if name.startswith('backbone.layers.'):
            return int(name.split('.')[2]) + 1
        return L + 1  # neck and heads

    for name, (group_lr, group_wd) in seen.items():
        assert group_lr == pytest.approx(lr * rate**(L + 1 - expected_depth(name))), name
        p = dict(model.named_parameters())[name]
        assert group_wd == (0. if p.ndim == 1 or name == 'backbone.cls_token' else wd), name
    assert seen['decode_head.conv_seg.weight'][0] == pytest.approx(lr)
    assert seen['backbone.layers.3.attn.qkv.weight'][0] == pytest.approx(lr * rate)
    assert seen['backbone.patch_embed.proj.weight'][0] == pytest.approx(lr * rate**5)

    # the same lrs as mmseg's LayerDecayOptimizerConstructor (which finds depths by names)
    from mmseg.engine.optimizers import LayerDecayOptimizerConstructor
    with pytest.warns(UserWarning):
        ref = LayerDecayOptimizerConstructor(
            dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=lr, weight_decay=wd)),
            dict(num_layers=L, layer_decay_rate=rate))
    for group in ref(model).optimizer.param_groups:
        for name in group['param_names']:
            assert seen[name][0] == pytest.approx(group['lr']), name


def test_layer_decay_constructor_rejects_unknown_keys():
    from mmbeit.engine.layer_decay_optim_wrapper_constructor import \
        LayerDecayOptimWrapperConstructor
    with pytest.raises(ValueError, match='layer_decay'):
        LayerDecayOptimWrapperConstructor(
            dict(optimizer=dict(type='AdamW', lr=1e-3)), dict(layer_decay=0.9))
    ctor = LayerDecayOptimWrapperConstructor(
        dict(optimizer=dict(type='AdamW', lr=1e-3)), dict(layer_decay_rate=0.9))
    with pytest.raises(TypeError, match='get_layer_depth'):
        ctor(torch.nn.Linear(2, 2))


# ---------------------------------------------------------------------------- configs
SEG_CONFIGS = sorted(glob.glob(osp.join(CFG_DIR, '*.py')))


@pytest.mark.parametrize('path', SEG_CONFIGS, ids=osp.basename)
def test_config_recipe(path):
    cfg = Config.fromfile(path)
    name = osp.basename(path)
    assert cfg.default_scope == 'mmseg'
    assert cfg.custom_imports == dict(imports=['mmbeit'], allow_failed_imports=False)
    bb = cfg.model.backbone
    assert bb.type == 'mmbeit.BEiT' and bb.out_type == 'featmap' and not bb.final_norm
    assert cfg.model.neck.type == 'Feature2Pyramid'
    assert cfg.model.decode_head.pool_scales == (1, 2, 3, 6)
    assert cfg.model.auxiliary_head.in_index == 2
    assert cfg.model.auxiliary_head.loss_decode.loss_weight == 0.4
    # the schedule decays over every iteration: warmup then poly to 0 at max_iters
    warmup, poly = cfg.param_scheduler
    assert warmup.type == 'LinearLR' and poly.type == 'PolyLR' and poly.eta_min == 0
    assert warmup.end == poly.begin and poly.end == cfg.train_cfg.max_iters
    assert cfg.optim_wrapper.constructor == 'mmbeit.LayerDecayOptimWrapperConstructor'
    if 'tiny' in name:
        assert cfg.model.neck.norm_cfg.type == 'BN'
        return
    assert cfg.model.neck.norm_cfg.type == 'SyncBN'
    assert cfg.optim_wrapper.optimizer.weight_decay == 0.05
    size = 640 if '640x640' in name else 512
    assert cfg.model.test_cfg == dict(
        mode='slide', crop_size=(size, size), stride=(426, 426) if size == 640 else (341, 341))
    assert cfg.crop_size == (size, size) and bb.img_size == size
    if 'large' in name:
        assert bb.arch == 'large' and bb.out_indices == (7, 11, 15, 23)
        assert cfg.model.decode_head.channels == 1024
        assert cfg.optim_wrapper.optimizer.lr == 2e-5
        assert cfg.optim_wrapper.paramwise_cfg.layer_decay_rate == 0.95
        # 160k updates of 8 x 1 x 2 accumulated = 320k iterations, 3000 warmup iterations
        assert cfg.optim_wrapper.accumulative_counts == 2 and cfg.train_dataloader.batch_size == 1
        assert cfg.train_cfg.max_iters == 2 * 160000 and warmup.end == 3000
    else:
        assert bb.arch == 'base' and bb.out_indices == (3, 5, 7, 11)
        assert cfg.model.decode_head.channels == 768
        assert cfg.optim_wrapper.optimizer.lr == 3e-5
        assert cfg.optim_wrapper.paramwise_cfg.layer_decay_rate == 0.9
        assert cfg.train_dataloader.batch_size == 2 and cfg.train_cfg.max_iters == 160000
        assert warmup.end == 1500
    if name.endswith('_ms.py'):
        tta = cfg.tta_pipeline[1]
        assert tta.type == 'TestTimeAug'
        scales = [t.scale for t in tta.transforms[0]]
        assert scales == [(int(2560 * r), int(640 * r)) for r in (0.5, 0.75, 1., 1.25, 1.5, 1.75)]
        assert sorted(t.prob for t in tta.transforms[1]) == [0., 1.]


def test_sample_config_names_the_sample_classes():
    from mmbeit.utils.sample_data import SAMPLE_SEG_CLASSES, SAMPLE_SEG_PALETTE
    cfg = Config.fromfile(TINY_CFG)
    for loader in (cfg.train_dataloader, cfg.test_dataloader):
        assert tuple(loader.dataset.metainfo.classes) == SAMPLE_SEG_CLASSES
        assert [list(c) for c in loader.dataset.metainfo.palette] == SAMPLE_SEG_PALETTE
    assert cfg.model.decode_head.num_classes == len(SAMPLE_SEG_CLASSES)
    data_root = osp.normpath(cfg.train_dataloader.dataset.data_root)
    assert data_root == osp.join(ROOT, 'data', 'sample', 'ade')


def test_metafile_lists_every_config_and_its_names_build():
    from mmbeit.apis.seg_inference import init_segmentor, list_segmentation_models
    models = list_segmentation_models()
    names = sorted(osp.basename(c) for c, _ in models.values())
    v2 = glob.glob(osp.join(ROOT, 'configs', 'beitv2', 'upernet_*.py'))  # BEiT v2's UperNet 512
    assert v2 and names == sorted(osp.basename(p) for p in SEG_CONFIGS + v2)
    assert all(osp.basename(c) == name + '.py' for name, (c, _) in models.items())
    model = init_segmentor('upernet_beit-tiny_1xb8-500_sample-64x64')  # no weights: initial ones
    assert model.decode_head.num_classes == NUM_CLASSES and not model.training
    with pytest.raises(FileNotFoundError, match='model name'):
        init_segmentor('upernet_beit-huge')


# ----------------------------------------------------------------- inference, overlay
def test_save_overlay_paints_classes_and_keeps_ignored_pixels(tmp_path):
    from PIL import Image

    from mmbeit.apis.seg_inference import save_overlay
    img = np.full((4, 6, 3), 100, np.uint8)  # BGR grey
    mask = np.zeros((4, 6), np.int64)
    mask[:, 3:] = 1
    mask[0, 0] = 255
    palette = [[255, 0, 0], [0, 0, 255]]
    out = save_overlay(img, mask, palette, str(tmp_path / 'o.png'), opacity=0.5)
    assert out[1, 0].tolist() == [178, 50, 50] and out[1, 5].tolist() == [50, 50, 178]
    assert out[0, 0].tolist() == [100, 100, 100]
    assert (np.asarray(Image.open(tmp_path / 'o.png')) == out).all()
    with pytest.raises(ValueError, match='mask shape'):
        save_overlay(img, mask[:2], palette)


@pytest.fixture(scope='module')
def sample_root(tmp_path_factory):
    from mmbeit.utils.sample_data import generate_sample_data
    root = tmp_path_factory.mktemp('sample')
    generate_sample_data(
        str(root), cls_train_per_class=1, cls_val_per_class=1, seg_train=16, seg_val=3)
    return str(root / 'ade')


LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


@pytest.fixture(scope='module')
def trained_tiny(sample_root, tmp_path_factory):
    """The tiny sample config trained for 4 iterations by mmbeit's Runner: its checkpoint."""
    from mmbeit.apis.run import build_runner_cfg, make_runner
    opts = {f'{loader}.dataset.data_root': sample_root for loader in LOADERS}
    opts.update({
        'train_cfg.max_iters': 4,
        'train_cfg.val_interval': 4,
        'train_dataloader.batch_size': 4,
        'default_hooks.checkpoint.interval': 4,
        'default_hooks.logger.interval': 2,
        'param_scheduler.0.end': 2,
        'param_scheduler.1.begin': 2,
        'param_scheduler.1.end': 4,
        'visualizer.name': 'vis_train'
    })
    work = tmp_path_factory.mktemp('train')
    make_runner(build_runner_cfg(TINY_CFG, cfg_options=opts, work_dir=str(work))).train()
    ckpt = work / 'iter_4.pth'
    assert ckpt.is_file()
    return str(ckpt)


def _tools_test(args, monkeypatch, capsys):
    monkeypatch.setattr(sys, 'argv', ['tools/test.py', *args])
    runpy.run_path(osp.join(ROOT, 'tools', 'test.py'), run_name='__main__')
    return capsys.readouterr().out


TEST_MODES = {
    'whole': [],
    'slide': [
        'model.test_cfg.mode=slide', 'model.test_cfg.crop_size=(32,32)',
        'model.test_cfg.stride=(21,21)'
    ],
    'tta': [],  # --tta: scales 0.5 to 1.75 and flips (the sample config's tta_pipeline)
}


@pytest.mark.parametrize('mode', ['whole', 'slide', 'tta'])
def test_tools_test_reports_miou_and_writes_overlays(mode, trained_tiny, sample_root, tmp_path,
                                                     monkeypatch, capsys):
    show = tmp_path / 'show'
    data = [f'{loader}.dataset.data_root={sample_root}' for loader in LOADERS]
    # one Runner per process in real use; here each run needs its own visualizer instance
    args = [
        TINY_CFG, trained_tiny, '--work-dir',
        str(tmp_path / 'work'), '--show-dir',
        str(show), '--cfg-options', *data, *TEST_MODES[mode], f'visualizer.name=vis_{mode}'
    ]
    if mode == 'tta':
        args.insert(2, '--tta')
    out = _tools_test(args, monkeypatch, capsys)
    assert "'mIoU'" in out
    pngs = glob.glob(str(show / '**' / '*.png'), recursive=True)
    assert len(pngs) == 3, pngs  # one overlay per validation image


def test_inference_segmentor_on_the_trained_tiny_model(trained_tiny, sample_root):
    from mmbeit.apis.seg_inference import inference_segmentor, init_segmentor
    model = init_segmentor(TINY_CFG, trained_tiny)
    assert tuple(model.dataset_meta['classes'])[1] == 'circle'
    img = osp.join(sample_root, 'images', 'validation', '00000.jpg')
    out = inference_segmentor(model, img)
    assert out['pred_mask'].shape == (64, 64) and out['seg_logits'].shape == (NUM_CLASSES, 64, 64)
    assert (out['pred_mask'] == out['seg_logits'].argmax(0).numpy()).all()
    import mmcv
    again = inference_segmentor(model, mmcv.imread(img))  # a BGR array gives the same mask
    assert (again['pred_mask'] == out['pred_mask']).all()
