"""BEiT v2's data: the config's 224/224 two-view pipeline and VQ-KD's [-1, 1] view."""
import os.path as osp

import numpy as np
import torch
from mmcv.transforms import Compose
from mmengine.config import Config
from mmengine.dataset import default_collate

import mmbeit.datasets  # noqa: F401  (registers the transforms)
from mmbeit.registry import MODELS

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG = osp.join(ROOT, 'configs', 'beitv2', 'beitv2_beit-base-p16_8xb256-amp-coslr-300e_in1k.py')


def _image(h: int, w: int) -> np.ndarray:
    import cv2
    small = np.random.default_rng(0).integers(0, 256, (h // 16, w // 16, 3)).astype(np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def test_config_pipeline_gives_two_identical_224_views_and_75_masked_patches():
    from mmengine.registry import init_default_scope
    cfg = Config.fromfile(CONFIG)
    init_default_scope('mmpretrain')
    # without LoadImageFromFile and ColorJitter: an in-memory image, the crop is what is tested
    steps = [
        t for t in cfg.train_dataloader.dataset.pipeline
        if t.type not in ('LoadImageFromFile', 'ColorJitter')
    ]
    pipeline = Compose(steps)
    np.random.seed(0)
    sample = pipeline(dict(img=_image(300, 400), img_shape=(300, 400), ori_shape=(300, 400)))
    view, second = sample['inputs']
    assert view.shape == second.shape == (3, 224, 224)
    # the same crop, size and interpolation: the tokenizer sees the backbone's pixels
    assert torch.equal(view, second)
    mask = sample['data_samples'].mask
    assert mask.shape == (14, 14) and int(mask.sum()) == 75

    # crop scale (0.2, 1): over many draws the crop covers from ~20% of the image up
    crop = next(t for t in pipeline.transforms if type(t).__name__ == 'TwoViewRandomResizedCrop')
    areas = []
    for _ in range(300):
        top, left, h, w = crop.get_params(300, 400)
        areas.append(h * w / (300 * 400))
    assert 0.19 <= min(areas) < 0.3 and max(areas) > 0.9

    # the preprocessor maps the tokenizer's view to [-1, 1] (x / 127.5 - 1, RGB)
    pre = MODELS.build(cfg.data_preprocessor)
    batch = pre(default_collate([sample]))
    img, tok = batch['inputs']
    raw = second.flip(0).float()  # BGR -> RGB
    assert torch.allclose(tok[0], raw / 127.5 - 1, atol=1e-6)
    assert tok.min() >= -1 and tok.max() <= 1
    mean = torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1)
    std = torch.tensor([58.395, 57.12, 57.375]).view(3, 1, 1)
    assert torch.allclose(img[0], (raw - mean) / std, atol=1e-5)


def test_default_preprocessor_follows_the_tokenizer():
    """Without a data_preprocessor, the tokenizer's view gets its tokenizer's range."""
    import pytest
    backbone = dict(type='BEiT', arch='tiny', img_size=64, out_type='raw', use_mask_token=True)
    pixels = torch.tensor([0., 255.]).view(1, 1, 1, 2).expand(1, 3, 1, 2)
    for tokenizer, expected in (
        (dict(type='DALLEEncoder', n_hid=8, n_blk_per_group=1, vocab_size=16), (0.1, 0.9)),
        (dict(
            type='mmbeit.VQKD',
            encoder=dict(arch='tiny', img_size=64),
            num_embed=16,
            kmeans_init=False), (-1., 1.)),
    ):
        model = MODELS.build(
            dict(
                type='BEiTPretrain',
                backbone=backbone,
                head=dict(type='BEiTMIMHead'),
                target_generator=tokenizer))
        pre = model.data_preprocessor
        out = (pixels - pre.second_mean) / pre.second_std
        assert torch.allclose(out[0, 0, 0], torch.tensor(expected)), tokenizer['type']
    with pytest.raises(ValueError, match='no default data_preprocessor'):
        MODELS.build(
            dict(
                type='BEiTPretrain',
                backbone=backbone,
                head=dict(type='BEiTMIMHead'),
                target_generator=dict(type='BEiTMIMHead', embed_dims=8)))

    # a new tokenizer states its range (the tokenizer contract); nothing else names it
    class _UnitTokenizer(torch.nn.Module):
        INPUT_VIEW = dict(second_mean=[0.] * 3, second_std=[255.] * 3)  # [0, 1]
        vocab_size = 4

        def forward(self, img):
            return torch.zeros(img.shape[0], 64, dtype=torch.long)

    model = MODELS.build(
        dict(
            type='BEiTPretrain',
            backbone=backbone,
            head=dict(type='BEiTMIMHead'),
            target_generator=dict(type=_UnitTokenizer)))
    pre = model.data_preprocessor
    assert torch.allclose(((pixels - pre.second_mean) / pre.second_std)[0, 0, 0],
                          torch.tensor((0., 1.)))
