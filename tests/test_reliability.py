"""Bad input and faults fail clearly: each error names what is wrong and how to fix it.

Covered elsewhere, on purpose not repeated here:
* a URL that fails, times out or is cut short leaves no file in the cache:
  tests/test_checkpoint_io.py (test_broken_download_leaves_nothing, test_http_error_names_the_url,
  test_wrong_hash_prefix_is_refused);
* a malicious checkpoint is refused from a path, mmengine and a URL: tests/test_security.py
  (here: from ``tools/train.py --resume``);
* a SIGKILL and resume: tests/test_resume.py.
"""
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.model import BaseModel
from PIL import Image

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CLS_CFG = osp.join(ROOT, 'configs/beit/benchmarks/beit-tiny-p8_1xb32-20e_sample.py')
SEG_CFG = osp.join(ROOT, 'configs/upernet_beit/upernet_beit-tiny_1xb8-500_sample-64x64.py')

# --------------------------------------------------------------------------- model input


@pytest.fixture(scope='module')
def classifier():
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS
    init_default_scope('mmpretrain')
    model = MODELS.build(
        dict(
            type='ImageClassifier',
            backbone=dict(type='mmbeit.BEiT', arch='tiny', img_size=32, patch_size=16),
            head=dict(type='LinearClsHead', num_classes=3, in_channels=64)))
    return model.eval()


def test_input_size_not_a_multiple_of_the_patch_size(classifier):
    with torch.no_grad():
        assert classifier(torch.randn(1, 3, 48, 32), mode='tensor').shape == (1, 3)
        with pytest.raises(ValueError, match=r'40x32 is not a multiple of the patch size 16'):
            classifier(torch.randn(1, 3, 40, 32), mode='tensor')


def test_wrong_channel_count(classifier):
    with torch.no_grad(), pytest.raises(ValueError, match=r'input has 1 channels.*expects 3'):
        classifier(torch.randn(1, 1, 32, 32), mode='tensor')


# --------------------------------------------------------------------------- images


def _image_files(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
    files = {
        'L': Image.fromarray(rgb[..., 0]),
        'LA': Image.fromarray(rgb[..., 0]).convert('LA'),
        'P': Image.fromarray(rgb).convert('P'),
        'RGBA': Image.fromarray(np.dstack([rgb, rgb[..., :1]]), mode='RGBA'),
        'I;16': Image.fromarray((rgb[..., 0].astype(np.uint16) * 257)),
    }
    paths = {}
    for mode, img in files.items():
        paths[mode] = str(tmp_path / f'{mode.replace(";", "")}.png')
        img.save(paths[mode])
    return paths


@pytest.mark.parametrize('backend', ['cv2', 'pillow'])
def test_load_color_image_gives_three_channels(tmp_path, backend):
    from mmbeit.datasets.load_color_image_from_file import LoadColorImageFromFile
    load = LoadColorImageFromFile(imdecode_backend=backend)
    for mode, path in _image_files(tmp_path).items():
        img = load(dict(img_path=path))['img']
        assert img.shape == (40, 48, 3) and img.dtype == np.uint8, (mode, img.shape)


def _run_pipeline(config: str, section: str, img_path: str, seg_path: str = None):
    from mmengine.config import Config
    from mmengine.dataset import Compose
    from mmengine.registry import init_default_scope
    cfg = Config.fromfile(config)
    init_default_scope(cfg.default_scope)
    pipeline = Compose(cfg[section].dataset.pipeline)
    results = dict(img_path=img_path, sample_idx=0)
    if seg_path is not None:
        results.update(seg_map_path=seg_path, reduce_zero_label=True, seg_fields=[])
    return pipeline(results)['inputs']


def test_config_pipelines_make_gray_and_rgba_three_channel(tmp_path):
    """The tiny classification and segmentation configs' train pipelines."""
    files = _image_files(tmp_path)
    seg = str(tmp_path / 'seg.png')
    Image.fromarray(np.ones((40, 48), np.uint8)).save(seg)
    for mode in ('L', 'RGBA'):
        assert _run_pipeline(CLS_CFG, 'train_dataloader', files[mode]).shape == (3, 64, 64)
        assert _run_pipeline(SEG_CFG, 'train_dataloader', files[mode], seg).shape[0] == 3


def test_corrupt_or_missing_image_names_the_file(tmp_path):
    from mmbeit.datasets.load_color_image_from_file import LoadColorImageFromFile
    corrupt = tmp_path / 'corrupt.jpg'
    corrupt.write_bytes(b'\xff\xd8\xff\xe0 this is not a JPEG')
    missing = str(tmp_path / 'missing.jpg')
    for backend in ('cv2', 'pillow'):
        load = LoadColorImageFromFile(imdecode_backend=backend)
        with pytest.raises(OSError, match='cannot decode the image file') as info:
            load(dict(img_path=str(corrupt)))
        assert str(corrupt) in str(info.value)
        with pytest.raises(FileNotFoundError, match='image file not found') as info:
            load(dict(img_path=missing))
        assert missing in str(info.value)
    # skip mode: None (mmengine's training datasets then draw another sample), a warning names
    # the file
    load = LoadColorImageFromFile(on_error='skip')
    assert load(dict(img_path=str(corrupt))) is None
    with pytest.raises(ValueError, match="unknown on_error 'ignore'.*'raise', 'skip'"):
        LoadColorImageFromFile(on_error='ignore')


def test_missing_data_root(tmp_path):
    from mmengine.config import Config

    from mmbeit.utils.config_check import check_data_roots
    from mmbeit.utils.sample_data import generate_sample_data
    data = generate_sample_data(
        str(tmp_path / 'sample'),
        cls_train_per_class=1,
        cls_val_per_class=1,
        seg_train=1,
        seg_val=1)
    cfg = Config.fromfile(CLS_CFG)
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = f'{data}/imagenet'
    check_data_roots(cfg)  # every root exists
    cfg.train_dataloader.dataset.data_root = 'data/sample_missing/imagenet'
    with pytest.raises(FileNotFoundError) as info:
        check_data_roots(cfg)
    msg = str(info.value)
    assert 'train_dataloader.dataset.data_root' in msg and 'data/sample_missing/imagenet' in msg
    assert 'tools/make_sample_data.py' in msg and '--cfg-options' in msg
    # wrappers are looked through, remote roots are not checked
    cfg = Config(
        dict(
            train_dataloader=dict(
                dataset=dict(
                    type='ConcatDataset',
                    datasets=[
                        dict(data_root='s3://bucket/x'),
                        dict(data_root=str(tmp_path / 'no'))
                    ]))))
    with pytest.raises(
            FileNotFoundError, match=r'train_dataloader\.dataset\.datasets\.1\.data_root'):
        check_data_roots(cfg)


# --------------------------------------------------------------------------- config types


def test_unknown_type_lists_close_names():
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS

    from mmbeit.utils.config_check import UnknownTypeError, suggest_registered_names
    init_default_scope('mmpretrain')
    cfg = dict(
        type='ImageClassifier',
        backbone=dict(type='mmbeit.BEit', arch='tiny'),
        head=dict(type='LinearClsHead', num_classes=3, in_channels=64))
    with pytest.raises(KeyError, match='is not in the'):  # mmengine's own error, no suggestions
        MODELS.build(cfg)
    with pytest.raises(UnknownTypeError) as info, suggest_registered_names():
        MODELS.build(cfg)
    msg = str(info.value)
    assert "unknown type 'mmbeit.BEit'" in msg and "'mmbeit.BEiT'" in msg
    cfg['type'] = 'ImageClasifier'
    with pytest.raises(UnknownTypeError, match="Closest registered names: 'ImageClassifier'"), \
            suggest_registered_names():
        MODELS.build(cfg)
    # other KeyErrors pass through untouched
    with pytest.raises(KeyError, match='^.?plain.?$'), suggest_registered_names():
        raise KeyError('plain')


def test_unknown_transform_in_a_segmentation_config():
    from mmbeit.utils.config_check import suggest_types
    close = suggest_types('LoadAnnotation', 'transform', 'mmseg')
    assert close[0] == 'LoadAnnotations'
    assert 'mmbeit.LoadColorImageFromFile' in suggest_types('LoadColourImageFromFile', 'transform',
                                                            'mmseg')


# --------------------------------------------------------------------------- checkpoints


def _tiny_beit(**kwargs):
    from mmbeit.models.backbones.beit import BEiT
    return BEiT(arch='tiny', img_size=32, patch_size=16, **kwargs)


def test_checkpoint_keys_that_do_not_fit(tmp_path):
    from mmbeit.converters import CheckpointMismatchError, load_pretrained
    path = str(tmp_path / 'abs_pos.pth')
    source = _tiny_beit(use_abs_pos_emb=True, use_rel_pos_bias=False)
    torch.save({'state_dict': {'backbone.' + k: v for k, v in source.state_dict().items()}}, path)
    with pytest.raises(CheckpointMismatchError) as info:
        load_pretrained(_tiny_beit(), path)
    msg = str(info.value)
    assert path in msg and '(mmbeit format)' in msg
    assert 'missing in the checkpoint: ' in msg and 'rel_pos_bias.table' in msg
    assert 'unexpected (the model has no such keys): pos_embed' in msg


def test_unknown_checkpoint_format(tmp_path):
    from mmbeit.converters import detect_format, load_pretrained
    path = str(tmp_path / 'resnet.pth')
    torch.save({'conv1.weight': torch.zeros(2), 'fc.bias': torch.zeros(2)}, path)
    with pytest.raises(ValueError, match=r"cannot tell the format.*'conv1.weight'") as info:
        load_pretrained(_tiny_beit(), path)
    for fmt in ('mmbeit', 'unilm', 'timm', 'transformers', 'mmpretrain', 'mmseg', 'dalle'):
        assert f'  {fmt}: ' in str(info.value)
    with pytest.raises(ValueError, match='cannot tell the format'):
        detect_format({'model': {'x': torch.zeros(1)}})


# --------------------------------------------------------------------------- non-finite loss


class _ToyModel(BaseModel):
    """A model whose loss turns NaN, or whose weights turn inf, at a chosen call."""

    def __init__(self, nan_loss_at=None, inf_weight_at=None):
        super().__init__()
        self.linear = nn.Linear(2, 1)
        self.nan_loss_at, self.inf_weight_at, self.calls = nan_loss_at, inf_weight_at, 0

    def forward(self, inputs, data_samples=None, mode='loss'):
        self.calls += 1
        loss = self.linear(inputs).pow(2).mean()
        if self.calls == self.nan_loss_at:
            loss = loss * float('nan')
        if self.calls == self.inf_weight_at:
            with torch.no_grad():
                self.linear.bias.fill_(float('inf'))
            loss = loss.detach().requires_grad_()  # a finite loss, broken weights
        return dict(loss=loss)


def _toy_runner(tmp_path, ckpt_type, **model_kwargs):
    from mmengine.runner import Runner
    data = [dict(inputs=torch.randn(2)) for _ in range(8)]
    return Runner(
        model=_ToyModel(**model_kwargs),
        work_dir=str(tmp_path),
        train_dataloader=dict(
            dataset=data,
            sampler=dict(type='DefaultSampler', shuffle=False),
            batch_size=2,
            collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        train_cfg=dict(by_epoch=False, max_iters=6),
        default_hooks=dict(
            checkpoint=dict(type=ckpt_type, interval=1, by_epoch=False, max_keep_ckpts=1)),
        custom_hooks=[dict(type='mmbeit.NonFiniteCheckHook')],
        default_scope='mmengine',
        experiment_name=f'toy_{tmp_path.name}')


def _latest(tmp_path):
    with open(tmp_path / 'last_checkpoint') as f:
        return f.read().strip()


@pytest.mark.parametrize('ckpt_type', ['CheckpointHook', 'mmbeit.AtomicCheckpointHook'])
def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, ckpt_type):
    from mmbeit.engine.non_finite_check_hook import NonFiniteLossError
    runner = _toy_runner(tmp_path, ckpt_type, nan_loss_at=4)
    with pytest.raises(NonFiniteLossError, match=r'non-finite loss at iteration 4 .*loss=nan'):
        runner.train()
    latest = _latest(tmp_path)
    assert osp.basename(latest) == 'iter_3.pth' and not osp.exists(tmp_path / 'iter_4.pth')
    state = torch.load(latest, weights_only=True)['state_dict']
    assert all(torch.isfinite(v).all() for v in state.values())


def test_non_finite_weights_are_never_saved(tmp_path):
    from mmbeit.engine.non_finite_check_hook import NonFiniteLossError
    runner = _toy_runner(tmp_path, 'mmbeit.AtomicCheckpointHook', inf_weight_at=4)
    with pytest.raises(NonFiniteLossError, match=r'refusing to save a checkpoint.*linear\.bias'):
        runner.train()
    latest = _latest(tmp_path)
    # mmengine's CheckpointHook would have deleted iter_3.pth before trying to save iter_4.pth
    assert osp.basename(latest) == 'iter_3.pth' and osp.isfile(latest)
    assert sorted(p for p in os.listdir(tmp_path) if p.endswith(('.pth', '.tmp'))) == ['iter_3.pth']


# --------------------------------------------------------------------------- security


def test_resume_from_a_malicious_checkpoint_is_refused(tmp_path):
    from mmbeit.utils.sample_data import generate_sample_data
    data = generate_sample_data(
        str(tmp_path / 'sample'),
        cls_train_per_class=2,
        cls_val_per_class=1,
        seg_train=1,
        seg_val=1)
    marker = str(tmp_path / 'marker')

    class Payload:

        def __reduce__(self):
            return exec, (f'open({marker!r}, "w").write("pwned")', )

    evil = str(tmp_path / 'evil.pth')
    torch.save(dict(state_dict={}, meta=dict(epoch=1, iter=1), payload=Payload()), evil)
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.run([
        sys.executable, 'tools/train.py', CLS_CFG, '--work-dir',
        str(tmp_path / 'work'), '--resume', evil, '--no-validate', '--cfg-options',
        f'train_dataloader.dataset.data_root={data}/imagenet', 'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False', 'train_dataloader.batch_size=2'
    ],
                          cwd=ROOT,
                          env=env,
                          capture_output=True,
                          text=True,
                          timeout=600)
    assert proc.returncode != 0
    assert 'UnpicklingError' in proc.stderr and 'for safety' in proc.stderr and evil in proc.stderr
    assert not osp.exists(marker)
