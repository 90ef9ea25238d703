"""The bundled sample data: deterministic files in the ImageNet and ADE20K folder formats,
read through mmpretrain's and mmseg's own dataset classes."""
import importlib.util
import os
import os.path as osp

import numpy as np
import pytest
from mmengine.registry import DefaultScope
from PIL import Image

from mmbeit.utils import sample_data
from mmbeit.utils.sample_data import (SAMPLE_CLS_CLASSES, SAMPLE_SEG_CLASSES, SAMPLE_SEG_PALETTE,
                                      draw_cls_image, draw_seg_sample, ensure_sample_data,
                                      generate_sample_data)

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
SMALL = dict(cls_train_per_class=4, cls_val_per_class=2, seg_train=12, seg_val=6)
K = len(SAMPLE_SEG_CLASSES)
SEG_SPLITS = (('train', 'training'), ('val', 'validation'))


def read_tree(root: str) -> dict:
    """{relative path: bytes} of every file under root."""
    files = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = osp.join(folder, name)
            with open(path, 'rb') as f:
                files[osp.relpath(path, root)] = f.read()
    return files


def label_maps(root: str, folder: str) -> np.ndarray:
    """The raw PNG label maps of one ADE split: uint8 [N, H, W]."""
    ann_dir = osp.join(root, 'ade', 'annotations', folder)
    return np.stack(
        [np.asarray(Image.open(osp.join(ann_dir, n))) for n in sorted(os.listdir(ann_dir))])


@pytest.fixture(scope='module')
def root(tmp_path_factory) -> str:
    return generate_sample_data(str(tmp_path_factory.mktemp('sample')), seed=0, **SMALL)


@pytest.fixture(scope='module')
def tree(root) -> dict:
    return read_tree(root)


def test_constants():
    assert list(SAMPLE_CLS_CLASSES) == sorted(SAMPLE_CLS_CLASSES)  # folder scans sort the names
    assert len(set(SAMPLE_CLS_CLASSES)) == len(SAMPLE_CLS_CLASSES)
    assert len(set(SAMPLE_SEG_CLASSES)) == K == len(SAMPLE_SEG_PALETTE)
    assert all(len(c) == 3 and all(0 <= v <= 255 for v in c) for c in SAMPLE_SEG_PALETTE)


def test_same_seed_same_bytes_other_seed_other_images(tmp_path, tree):
    assert read_tree(generate_sample_data(str(tmp_path / 'again'), seed=0, **SMALL)) == tree
    other = read_tree(generate_sample_data(str(tmp_path / 'seed1'), seed=1, **SMALL))
    assert other.keys() == tree.keys()
    images = [p for p in tree if p.lower().endswith(('.jpeg', '.jpg', '.png'))]
    assert images and all(other[p] != tree[p] for p in images)


def test_counts_do_not_change_shared_images(tmp_path, tree):
    fewer = read_tree(
        generate_sample_data(
            str(tmp_path / 'fewer'),
            seed=0,
            cls_train_per_class=2,
            cls_val_per_class=1,
            seg_train=5,
            seg_val=3))
    images = [p for p in fewer if p.lower().endswith(('.jpeg', '.jpg', '.png'))]
    assert len(images) == 5 * 3 + 2 * (5 + 3) + 2
    assert all(fewer[p] == tree[p] for p in images)


def test_layout_and_counts(root, tree):
    imagenet = osp.join(root, 'imagenet')
    with open(osp.join(imagenet, 'meta', 'classes.txt')) as f:
        assert f.read().splitlines() == list(SAMPLE_CLS_CLASSES)
    for split in ('train', 'val'):
        per_class = SMALL[f'cls_{split}_per_class']
        assert sorted(os.listdir(osp.join(imagenet, split))) == list(SAMPLE_CLS_CLASSES)
        with open(osp.join(imagenet, 'meta', f'{split}.txt')) as f:
            lines = [line.rsplit(' ', 1) for line in f.read().splitlines()]
        assert len(lines) == per_class * len(SAMPLE_CLS_CLASSES)
        for label, name in enumerate(SAMPLE_CLS_CLASSES):
            files = sorted(os.listdir(osp.join(imagenet, split, name)))
            assert len(files) == per_class and all(f.endswith('.JPEG') for f in files)
            assert sorted(rel for rel, lab in lines
                          if lab == str(label)) == [f'{name}/{f}' for f in files]
    for split, folder in SEG_SPLITS:
        images = sorted(os.listdir(osp.join(root, 'ade', 'images', folder)))
        anns = sorted(os.listdir(osp.join(root, 'ade', 'annotations', folder)))
        assert len(images) == SMALL[f'seg_{split}']
        assert [n[:-4] + '.png' for n in images] == anns and all(n.endswith('.jpg') for n in images)
    assert sorted(os.listdir(osp.join(root, 'demo'))) == ['circle.png', 'shapes.png']
    assert sample_data.MARKER_FILE in tree


def test_image_files(root, tree):
    for rel in tree:
        if rel.lower().endswith(('.jpeg', '.jpg')) or rel.startswith('demo'):
            with Image.open(osp.join(root, rel)) as img:
                assert img.mode == 'RGB' and img.size == (64, 64), rel
    seg = label_maps(root, 'training')
    assert seg.dtype == np.uint8 and seg.shape[1:] == (64, 64)  # one channel
    assert seg.max() <= K


def test_img_size(tmp_path):
    root = generate_sample_data(
        str(tmp_path),
        cls_train_per_class=1,
        cls_val_per_class=1,
        seg_train=1,
        seg_val=1,
        img_size=32)
    with Image.open(osp.join(root, 'imagenet', 'train', 'circle', 'circle_0000.JPEG')) as img:
        assert img.size == (32, 32)
    assert label_maps(root, 'validation').shape == (1, 32, 32)


def test_every_class_in_both_splits(root):
    for _, folder in SEG_SPLITS:
        values = set(np.unique(label_maps(root, folder)).tolist())
        assert set(range(1, K + 1)) <= values, folder


def test_pixel_classes_balanced():
    seg = np.stack([draw_seg_sample(np.random.default_rng([7, i]))[1] for i in range(60)])
    share = np.bincount(seg.ravel(), minlength=K + 1) / seg.size
    assert share[0] < 0.1  # ignore: only shape borders
    assert 0.4 < share[1] < 0.75  # background
    assert all(share[2:] > 0.05), share  # each shape class


def test_ignore_only_on_shape_borders():
    for i in range(20):
        img, seg = draw_seg_sample(np.random.default_rng([5, i]))
        assert img.shape == (64, 64, 3) and img.dtype == np.uint8
        # within 3 pixels (7x7) of a shape pixel: borders are one pixel wide, wider at sharp tips
        shape = np.pad(seg >= 2, 3)
        near_shape = np.zeros_like(seg, dtype=bool)
        for dy in range(7):
            for dx in range(7):
                near_shape |= shape[dy:dy + 64, dx:dx + 64]
        ignored = seg == 0
        assert ignored.any() and not np.any(ignored & ~near_shape), i


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match='hexagon'):
        draw_cls_image(np.random.default_rng(0), 'hexagon')
    with pytest.raises(ValueError, match='seg_val'):
        generate_sample_data(str(tmp_path), seg_val=0)
    with pytest.raises(ValueError, match='img_size'):
        generate_sample_data(str(tmp_path), img_size=16)
    with pytest.raises(TypeError, match='num_images'):
        ensure_sample_data(str(tmp_path), num_images=3)


def test_ensure_generates_only_when_missing(tmp_path, monkeypatch, tree):
    root = str(tmp_path / 'data')
    assert ensure_sample_data(root, **SMALL) == root
    assert read_tree(root) == tree

    def fail(*args, **kwargs):
        raise AssertionError('regenerated complete data')

    monkeypatch.setattr(sample_data, 'generate_sample_data', fail)
    ensure_sample_data(root, **SMALL)
    monkeypatch.undo()

    # an interrupted generation: files missing, no marker
    os.remove(osp.join(root, sample_data.MARKER_FILE))
    os.remove(osp.join(root, 'imagenet', 'train', 'circle', 'circle_0001.JPEG'))
    ensure_sample_data(root, **SMALL)
    assert read_tree(root) == tree

    # other settings: rewritten, with no stale files left
    ensure_sample_data(
        root, seed=0, cls_train_per_class=1, cls_val_per_class=1, seg_train=1, seg_val=1)
    assert len(os.listdir(osp.join(root, 'imagenet', 'train', 'circle'))) == 1
    assert os.listdir(osp.join(root, 'ade', 'images', 'training')) == ['00000.jpg']


def test_cli(tmp_path):
    path = osp.join(REPO, 'tools', 'make_sample_data.py')
    spec = importlib.util.spec_from_file_location('make_sample_data', path)
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    out = str(tmp_path / 'cli')
    cli.main(['--out', out, '--seed', '0'] +
             [f'--{k.replace("_", "-")}={v}' for k, v in SMALL.items()])
    assert sample_data.is_sample_data_complete(out, **SMALL)


def data_infos(dataset) -> list:
    return [dataset.get_data_info(i) for i in range(len(dataset))]


def test_mmpretrain_imagenet_reads_it(root):
    from mmpretrain.registry import DATASETS
    data_root = osp.join(root, 'imagenet')
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        for split in ('train', 'val'):
            dataset = DATASETS.build(
                dict(
                    type='ImageNet',
                    data_root=data_root,
                    split=split,
                    classes=SAMPLE_CLS_CLASSES,
                    pipeline=[dict(type='LoadImageFromFile'),
                              dict(type='PackInputs')]))
            assert len(dataset) == SMALL[f'cls_{split}_per_class'] * len(SAMPLE_CLS_CLASSES)
            assert dataset.CLASSES == SAMPLE_CLS_CLASSES
            infos = data_infos(dataset)
            assert sorted({d['gt_label'] for d in infos}) == list(range(len(SAMPLE_CLS_CLASSES)))
            for info in infos:  # the label is the class folder
                assert osp.basename(osp.dirname(
                    info['img_path'])) == SAMPLE_CLS_CLASSES[info['gt_label']]
            sample = dataset[0]
            assert tuple(sample['inputs'].shape) == (3, 64, 64)
            assert sample['data_samples'].gt_label.tolist() == [infos[0]['gt_label']]
            # without the annotation file, the class folders give the same classes and labels
            scanned = DATASETS.build(
                dict(type='CustomDataset', data_root=data_root, data_prefix=split))
            assert scanned.CLASSES == SAMPLE_CLS_CLASSES
            assert sorted((d['img_path'], d['gt_label']) for d in data_infos(scanned)) == \
                sorted((d['img_path'], d['gt_label']) for d in infos)


def seg_dataset_cfg(root: str, split_folder: str, **kwargs) -> dict:
    return dict(
        data_root=osp.join(root, 'ade'),
        data_prefix=dict(
            img_path=f'images/{split_folder}', seg_map_path=f'annotations/{split_folder}'),
        pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='LoadAnnotations', reduce_zero_label=True)
        ],
        **kwargs)


@pytest.mark.filterwarnings('ignore:`reduce_zero_label` will be deprecated')
def test_mmseg_reads_it(root):
    from mmseg.registry import DATASETS
    with DefaultScope.overwrite_default_scope('mmseg'):
        for split, folder in SEG_SPLITS:
            dataset = DATASETS.build(
                dict(
                    type='BaseSegDataset',
                    img_suffix='.jpg',
                    seg_map_suffix='.png',
                    reduce_zero_label=True,
                    metainfo=dict(classes=SAMPLE_SEG_CLASSES, palette=SAMPLE_SEG_PALETTE),
                    **seg_dataset_cfg(root, folder)))
            assert len(dataset) == SMALL[f'seg_{split}']
            assert dataset.metainfo['classes'] == SAMPLE_SEG_CLASSES
            assert dataset.metainfo['palette'] == SAMPLE_SEG_PALETTE
            assert dataset.metainfo['label_map'] is None
            raw = label_maps(root, folder)
            for i in range(len(dataset)):
                sample = dataset[i]
                assert sample['img'].shape == (64, 64, 3)
                gt = sample['gt_seg_map']
                assert set(np.unique(gt).tolist()) <= set(range(K)) | {255}
                np.testing.assert_array_equal(
                    gt, np.where(raw[i] == 0, 255, raw[i].astype(np.int64) - 1))
            # ADE20KDataset reads the same files (with ADE20K's 150 class names) ...
            ade = DATASETS.build(dict(type='ADE20KDataset', **seg_dataset_cfg(root, folder)))
            assert len(ade) == len(dataset) and len(ade.metainfo['classes']) == 150
            np.testing.assert_array_equal(ade[0]['gt_seg_map'], dataset[0]['gt_seg_map'])
        # ... but takes no other class names, hence BaseSegDataset in the configs
        with pytest.raises(ValueError, match='subset'):
            DATASETS.build(
                dict(
                    type='ADE20KDataset',
                    metainfo=dict(classes=SAMPLE_SEG_CLASSES),
                    **seg_dataset_cfg(root, 'validation')))
