"""The transformers export writes ``preprocessor_config.json``: transformers' own
``pipeline('image-classification', model=OUT_DIR)`` then classifies an image as mmbeit does.
"""
import glob
import os.path as osp
import runpy
import sys

import numpy as np
import pytest
import torch

import mmbeit  # noqa: F401
from helpers import randomize_  # tests/helpers.py

TOOL = osp.join(
    osp.dirname(osp.dirname(osp.abspath(__file__))), 'tools', 'model_converters',
    'mmbeit_to_transformers.py')
C, CLASSES, IMG = 32, 5, 32
IMAGENET_MEAN, IMAGENET_STD = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]

CONFIG = f"""
default_scope = 'mmpretrain'
model = dict(
    type='mmbeit.BEiTClassifier',
    backbone=dict(
        type='mmbeit.BEiT',
        arch=dict(embed_dims={C}, num_layers=2, num_heads=2, feedforward_channels={4 * C}),
        img_size={IMG},
        patch_size=16,
        out_type='avg_featmap',
        use_rel_pos_bias=True,
        norm_eps=1e-6),
    neck=None,
    head=dict(type='LinearClsHead', num_classes={CLASSES}, in_channels={C}),
    data_preprocessor=dict(
        num_classes={CLASSES}, mean={IMAGENET_MEAN}, std={IMAGENET_STD}, to_rgb=True))
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=({IMG}, {IMG}), backend='pillow', interpolation='bicubic'),
    dict(type='PackInputs'),
]
"""


def test_transformers_pipeline_classifies_the_export_as_mmbeit(tmp_path, monkeypatch):
    import mmcv
    from mmengine.config import Config
    from transformers import pipeline

    from mmbeit.apis import inference_model
    cfg_path = tmp_path / 'beit_tiny.py'
    cfg_path.write_text(CONFIG)
    cfg = Config.fromfile(str(cfg_path))
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = randomize_(MODELS.build(cfg.model), seed=21)
    ckpt = str(tmp_path / 'ours.pth')
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, ckpt)
    names = [f'kind {i}' for i in range(CLASSES)]
    (tmp_path / 'classes.txt').write_text('\n'.join(names))

    out = str(tmp_path / 'hf')
    monkeypatch.setattr(sys, 'argv', [
        TOOL, ckpt, out, '--task', 'classification', '--config',
        str(cfg_path), '--classes',
        str(tmp_path / 'classes.txt')
    ])
    runpy.run_path(TOOL, run_name='__main__')
    assert osp.isfile(osp.join(out, 'preprocessor_config.json'))

    def classify(size, **kwargs):
        rng = np.random.default_rng(size[0])
        image = str(tmp_path / f'image{size[0]}x{size[1]}.png')
        mmcv.imwrite(rng.integers(0, 256, (*size, 3), dtype=np.uint8), image)
        theirs = pipeline('image-classification', model=out, top_k=CLASSES, **kwargs)(image)
        ours = inference_model(str(cfg_path), image, checkpoint=ckpt)
        assert theirs[0]['label'] == names[ours['pred_label']]
        scores = {d['label']: d['score'] for d in theirs}
        return np.array([scores[n] for n in names]), ours['pred_scores'], image

    # an image of the model's size: the default (fast, torchvision) processor, no resize
    theirs, ours, _ = classify((IMG, IMG))
    np.testing.assert_allclose(theirs, ours, atol=1e-5)
    # another size: the PIL backend of BeitImageProcessor resizes as mmbeit's pipeline (PIL
    # bicubic); transformers 5's default torchvision backend rounds bicubic differently
    from transformers import AutoImageProcessor
    theirs, ours, image = classify(
        (40, 50), image_processor=AutoImageProcessor.from_pretrained(out, backend='pil'))
    np.testing.assert_allclose(theirs, ours, atol=1e-5)
    # and mmbeit reads the export back with the same preprocessing
    back = inference_model(out, image)
    np.testing.assert_allclose(back['pred_scores'], ours, atol=1e-5)


CLASSIFIER_CONFIGS = sorted(
    glob.glob(osp.join(osp.dirname(TOOL), '..', '..', 'configs', '*', 'benchmarks', '*.py')))


@pytest.mark.parametrize(
    'path',
    CLASSIFIER_CONFIGS,
    ids=lambda p: osp.relpath(p, osp.dirname(osp.dirname(osp.dirname(p)))))
def test_processor_mean_std_are_what_the_built_model_normalises_with(path):
    """The export's mean/std are the built model's, wherever the config sets them (a
    top-level ``data_preprocessor``, as the v2 fine-tuning config, was ignored: BEiT's 0.5)."""
    from mmengine.config import Config

    from mmbeit.apis.builder import build_model
    from mmbeit.apis.folder_config import processor_from_config
    from mmbeit.converters import no_init
    cfg = Config.fromfile(path)
    cfg.model.backbone.pop('init_cfg', None)
    with no_init():
        model = build_model(cfg)
    pre = model.data_preprocessor
    got = processor_from_config(cfg)
    assert torch.allclose(torch.tensor(got['mean']) * 255, pre.mean.flatten())
    assert torch.allclose(torch.tensor(got['std']) * 255, pre.std.flatten())
