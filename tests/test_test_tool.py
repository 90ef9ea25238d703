"""tools/test.py as the README runs it, on a machine with only the validation data: no
training folder, ``--show-dir`` overlays for segmentation and classification (RGB, legible),
non-square segmentation images padded to the patch size.

The tiny sample configs with a checkpoint of their initial weights; the data is the sample
data with its training folders deleted.
"""
import glob
import os
import os.path as osp
import runpy
import shutil
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from mmbeit.apis import get_model
from mmbeit.utils.sample_data import generate_sample_data

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOOL = osp.join(REPO, 'tools', 'test.py')
CLS_TINY = osp.join(REPO, 'configs/beit/benchmarks/beit-tiny-p8_1xb32-20e_sample.py')
SEG_TINY = osp.join(REPO, 'configs/upernet_beit/upernet_beit-tiny_1xb8-500_sample-64x64.py')


def _tool(*args: str) -> None:
    """Run tools/test.py in this process, as its command line would."""
    argv = sys.argv
    sys.argv = [TOOL, *args]
    try:
        runpy.run_path(TOOL, run_name='__main__')
    finally:
        sys.argv = argv


@pytest.fixture(scope='module')
def val_only(tmp_path_factory):
    """Sample data with the training folders (and lists) deleted: validation data only."""
    root = str(tmp_path_factory.mktemp('val_only') / 'sample')
    generate_sample_data(root, cls_train_per_class=1, cls_val_per_class=1, seg_train=1, seg_val=2)
    for sub in ('imagenet/train', 'imagenet/meta/train.txt', 'ade/images/training',
                'ade/annotations/training'):
        path = osp.join(root, sub)
        shutil.rmtree(path) if osp.isdir(path) else os.remove(path)
    return root


def _checkpoint(config: str, path) -> str:
    torch.save({'state_dict': get_model(config).state_dict()}, str(path))
    return str(path)


def _widen_first_seg_image(root: str) -> None:
    """The first validation image and its annotation at 96x64 (W x H): the test pipeline's
    64-pixel resize makes it 64x43, not a multiple of the 8-pixel patches."""
    for sub, resample in (('images', Image.BILINEAR), ('annotations', Image.NEAREST)):
        folder = osp.join(root, sub, 'validation')
        path = osp.join(folder, sorted(os.listdir(folder))[0])
        Image.open(path).resize((96, 64), resample).save(path)


def test_segmentation_show_dir_without_training_data(val_only, tmp_path, monkeypatch):
    # mmseg's SegVisualizationHook asks runner.iter for every image, which built the train
    # loop and listed the (absent) training folder: a crash after the first image
    monkeypatch.chdir(tmp_path)  # the README's relative overlays/ folder
    ckpt = _checkpoint(SEG_TINY, tmp_path / 'seg.pth')
    root = osp.join(val_only, 'ade')
    _widen_first_seg_image(root)  # a non-square photo: padded to the patch size, as mmseg does
    _tool(SEG_TINY, ckpt, '--show-dir', 'overlays/', '--work-dir', str(tmp_path / 'work'),
          '--cfg-options', f'test_dataloader.dataset.data_root={root}')
    pngs = sorted(glob.glob(str(tmp_path / 'overlays' / '**' / '*.png'), recursive=True))
    assert len(pngs) == 2, pngs
    assert Image.open(pngs[0]).size == (96 * 2, 64)  # mmseg draws image | prediction
    assert osp.isfile(tmp_path / 'work' / 'test_metrics.json')


@pytest.fixture
def red_val_image(val_only):
    """The first classification validation image, replaced by a plain red one."""
    with open(osp.join(val_only, 'imagenet', 'meta', 'val.txt')) as f:
        first = f.readline().split()[0]
    path = osp.join(val_only, 'imagenet', 'val', first)
    Image.new('RGB', (64, 64), (230, 20, 20)).save(path, format='JPEG', quality=95)
    return osp.join(val_only, 'imagenet'), osp.basename(first)


def test_classification_show_dir_is_rgb_and_legible(red_val_image, tmp_path):
    root, name = red_val_image
    ckpt = _checkpoint(CLS_TINY, tmp_path / 'cls.pth')
    out = tmp_path / 'overlays'
    _tool(CLS_TINY, ckpt, '--show-dir', str(out), '--work-dir', str(tmp_path / 'work'),
          '--cfg-options', f'test_dataloader.dataset.data_root={root}')
    assert len(os.listdir(out)) == 5  # one per validation image, no training data needed
    png = np.asarray(Image.open(out / f'{name}_0.png').convert('RGB')).astype(int)
    H, W = png.shape[:2]
    # scaled up from 64x64, so that mmpretrain's adaptive text is 14 pt instead of 2 pt
    assert min(H, W) >= 448
    # drawn red, as the image is (the BGR input drawn as RGB was blue)
    r, g, b = png[H // 2:, W // 2:].reshape(-1, 3).mean(0)
    assert r > 200 and g < 60 and b < 60, (r, g, b)
    # the label: a dark box with light text in the top-left corner, tall enough to read
    corner = png[:H // 4, :W // 2]
    rows_with_text = ((corner.min(axis=2) > 180).sum(axis=1) > 0).sum()
    assert rows_with_text >= 20, rows_with_text
    assert (png[:H // 4, :W // 2, 0] < 150).mean() > 0.2  # the label box is not red


def test_test_runner_drops_training_parts():
    from mmengine.config import Config

    from mmbeit.apis.run import TRAIN_ONLY, without_training
    cfg = without_training(Config.fromfile(SEG_TINY))
    assert all(cfg.get(key) is None for key in TRAIN_ONLY)
    assert cfg.test_dataloader is not None and cfg.model is not None
