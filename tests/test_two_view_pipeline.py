"""The two-view pipeline: one crop -> backbone view + tokenizer view, and
the data preprocessor that maps the tokenizer view to the DALL-E range."""
import numpy as np
import pytest
import torch
from mmcv.transforms import Compose
from mmengine.dataset import default_collate

from mmbeit.datasets.two_view_random_resized_crop import TwoViewRandomResizedCrop
from mmbeit.models.target_generators.dalle_encoder import map_pixels
from mmbeit.registry import TRANSFORMS


def natural_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth random uint8 BGR image."""
    import cv2
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (h // 16, w // 16, 3)).astype(np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def test_views_come_from_one_crop():
    np.random.seed(0)
    crop = TwoViewRandomResizedCrop(size=224, second_size=112)
    results = crop(dict(img=natural_image(300, 400)))
    view, second = results['img']
    assert view.shape == (224, 224, 3) and second.shape == (112, 112, 3)
    assert view.dtype == second.dtype == np.uint8
    assert results['img_shape'] == (224, 224)
    # the second view is the first one at half the size
    import mmcv
    half = mmcv.imresize(view, (112, 112), interpolation='bicubic', backend='pillow').astype(float)
    assert np.abs(half - second).mean() < 3
    # ... and the crop box is where both came from
    x1, y1, x2, y2 = results['crop_bbox']
    src = natural_image(300, 400)[y1:y2, x1:x2]
    ref = mmcv.imresize(src, (112, 112), interpolation='lanczos', backend='pillow')
    assert np.array_equal(ref, second)


def test_antialiased_downsizing():
    """OpenCV's Lanczos aliases when shrinking (mmpretrain's); Pillow's
    does not. Period-3 stripes average to 85 with almost no texture."""
    img = np.zeros((448, 448, 3), np.uint8)
    img[:, ::3] = 255
    for backend, max_std in (('pillow', 5), ('cv2', None)):
        crop = TwoViewRandomResizedCrop(scale=(1, 1), ratio=(1, 1), backend=backend)
        second = crop(dict(img=img))['img'][1].astype(float)
        if max_std is None:
            assert second.std() > 40  # aliasing, as mmpretrain's
        else:
            assert second.std() < max_std
            assert abs(second.mean() - 85) < 3


def test_crop_params_cover_the_image():
    """Every offset is possible, including the last (mmpretrain's
    randint(0, H - h) never gives it)."""
    crop = TwoViewRandomResizedCrop(scale=(0.81, 0.81), ratio=(1, 1))
    np.random.seed(0)
    params = {crop.get_params(10, 10) for _ in range(200)}
    assert params == {(0, 0, 9, 9), (0, 1, 9, 9), (1, 0, 9, 9), (1, 1, 9, 9)}
    # the fallback keeps the aspect ratio within bounds, centred
    assert crop.get_params(10, 100) == (0, 45, 10, 10)


@pytest.mark.parametrize('kwargs, match', [
    (dict(scale=(1.0, 0.5)), 'scale'),
    (dict(ratio=(2.0, 1.0)), 'ratio'),
    (dict(backend='skimage'), 'backend'),
    (dict(second_interpolation='area'), 'second_interpolation'),
    (dict(size=0), 'size'),
])
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TwoViewRandomResizedCrop(**kwargs)


def test_pipeline_and_preprocessor():
    """The mmpretrain recipe's pipeline with our crop and mask generator,
    collated and preprocessed by mmpretrain's TwoNormDataPreprocessor."""
    from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS
    from mmpretrain.registry import TRANSFORMS as MMPRETRAIN_TRANSFORMS
    pipeline = Compose([
        MMPRETRAIN_TRANSFORMS.build(t) for t in [
            dict(type='ColorJitter', brightness=0.4, contrast=0.4, saturation=0.4, hue=0.),
            dict(type='RandomFlip', prob=0.5, direction='horizontal'),
            dict(
                type='mmbeit.TwoViewRandomResizedCrop',
                size=224,
                second_size=112,
                interpolation='bicubic',
                second_interpolation='lanczos',
                scale=(0.08, 1.0)),
            dict(
                type='mmbeit.BEiTMaskGenerator',
                input_size=(14, 14),
                num_masking_patches=75,
                min_num_patches=16,
                seed=0),
            dict(type='PackInputs'),
        ]
    ])
    np.random.seed(0)
    samples = [pipeline(dict(img=natural_image(256, 320, seed=i))) for i in range(2)]
    batch = default_collate(samples)
    preprocessor = MMPRETRAIN_MODELS.build(
        dict(
            type='TwoNormDataPreprocessor',
            mean=[123.675, 116.28, 103.53],
            std=[58.395, 57.12, 57.375],
            second_mean=[-31.875, -31.875, -31.875],
            second_std=[318.75, 318.75, 318.75],
            to_rgb=True))
    data = preprocessor(batch, training=True)
    view, second = data['inputs']
    assert view.shape == (2, 3, 224, 224) and second.shape == (2, 3, 112, 112)
    # second view: RGB mapped to the DALL-E range [0.1, 0.9]
    raw = torch.stack([s['inputs'][1] for s in samples]).float()
    expected = map_pixels(raw[:, [2, 1, 0]] / 255)
    assert (second - expected).abs().max() < 1e-5
    assert second.min() >= 0.1 - 1e-6 and second.max() <= 0.9 + 1e-6
    # first view normalized per channel, RGB
    raw = torch.stack([s['inputs'][0] for s in samples]).float()[:, [2, 1, 0]]
    mean = torch.tensor([123.675, 116.28, 103.53]).view(1, 3, 1, 1)
    std = torch.tensor([58.395, 57.12, 57.375]).view(1, 3, 1, 1)
    assert (view - (raw - mean) / std).abs().max() < 1e-5
    masks = torch.stack([s.mask for s in data['data_samples']])
    assert masks.shape == (2, 14, 14) and masks.dtype == torch.bool
    assert (masks.flatten(1).sum(1) == 75).all()


def test_two_view_data_preprocessor():
    """Ours equals mmpretrain's TwoNormDataPreprocessor on stacked batches
    and also takes mmengine's default pseudo_collate (lists), which
    mmpretrain's fails on."""
    from mmengine.dataset import pseudo_collate
    from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS

    from mmbeit.registry import MODELS
    g = torch.Generator().manual_seed(0)
    samples = [
        dict(inputs=[
            torch.randint(0, 256, (3, 32, 32), generator=g, dtype=torch.uint8),
            torch.randint(0, 256, (3, 16, 16), generator=g, dtype=torch.uint8)
        ]) for _ in range(3)
    ]
    ours = MODELS.build(dict(type='TwoViewDataPreprocessor'))
    ref = MMPRETRAIN_MODELS.build(
        dict(
            type='TwoNormDataPreprocessor',
            mean=[123.675, 116.28, 103.53],
            std=[58.395, 57.12, 57.375],
            second_mean=[-31.875, -31.875, -31.875],
            second_std=[318.75, 318.75, 318.75],
            to_rgb=True))

    def collated(collate):
        return dict(collate(samples), data_samples=None)

    expected = ref(collated(default_collate))['inputs']
    for collate in (default_collate, pseudo_collate):
        got = ours(collated(collate))['inputs']
        for a, b in zip(got, expected):
            assert a.shape == b.shape and (a - b).abs().max() < 1e-6
    with pytest.raises(TypeError):
        ref(collated(pseudo_collate))
    with pytest.raises(ValueError, match=r'\[view, second_view\]'):
        ours(dict(inputs=torch.zeros(2, 3, 8, 8)))


def test_registered():
    assert TRANSFORMS.get('TwoViewRandomResizedCrop') is \
        TwoViewRandomResizedCrop
