"""What users pass to inference_model: PIL images (as transformers users do), arrays and paths
give one result; non-square photos into segmentation give a full-size map (PyTorch whole
and slide, and the dynamic ONNX file), padded as mmseg pads with
``data_preprocessor.test_cfg``."""
import os.path as osp

import numpy as np
import pytest
import torch
from PIL import Image

from mmbeit.apis import get_model, inference_model
from mmbeit.apis.seg_inference import inference_padding as padding_of
from mmbeit.utils.image_io import read_image

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CLS_TINY = osp.join(REPO, 'configs/beit/benchmarks/beit-tiny-p8_1xb32-20e_sample.py')
SEG_TINY = osp.join(REPO, 'configs/upernet_beit/upernet_beit-tiny_1xb8-500_sample-64x64.py')


def _photo(h: int = 200, w: int = 300, seed: int = 0) -> np.ndarray:
    """A smooth non-square RGB picture (uint8 [H, W, 3])."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    rng = np.random.default_rng(seed)
    img = np.stack([np.sin(6 * xx + 1), np.cos(5 * yy), np.sin(4 * (xx + yy))], -1)
    img = 127.5 + 100 * img + rng.normal(0, 10, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture(scope='module')
def cls_model():
    torch.manual_seed(0)
    return get_model(CLS_TINY)


@pytest.fixture(scope='module')
def seg_model():
    torch.manual_seed(0)
    return get_model(SEG_TINY)


def test_pil_image_equals_file_path(tmp_path, cls_model, seg_model):
    path = str(tmp_path / 'photo.png')
    Image.fromarray(_photo(80, 120)).save(path)
    for model in (cls_model, seg_model):
        by_path = inference_model(model, path)
        by_pil = inference_model(model, Image.open(path))
        by_array = inference_model(model, read_image(path))
        for got in (by_pil, by_array):
            if 'pred_scores' in by_path:
                assert got['pred_label'] == by_path['pred_label']
                np.testing.assert_array_equal(got['pred_scores'], by_path['pred_scores'])
            else:
                np.testing.assert_array_equal(got['pred_mask'], by_path['pred_mask'])
                assert torch.equal(got['seg_logits'], by_path['seg_logits'])


@pytest.mark.parametrize('mode', ['L', 'RGBA', 'P', 'LA', 'I;16'])
def test_pil_modes_read_as_their_files(tmp_path, mode):
    rgb = _photo(12, 16)
    if mode == 'I;16':
        image = Image.fromarray((rgb[..., 0].astype(np.uint16) * 257 + 3).astype(np.uint16))
    elif mode == 'RGBA':
        image = Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)]))
    else:
        image = Image.fromarray(rgb).convert(mode)
    assert image.mode == mode
    path = str(tmp_path / 'image.png')
    image.save(path)
    np.testing.assert_array_equal(read_image(image), read_image(path))
    assert read_image(Image.fromarray(rgb))[0, 0].tolist() == rgb[0, 0, ::-1].tolist()  # BGR


def test_pil_float_image_refused():
    with pytest.raises(ValueError, match="mode 'F'.*ambiguous"):
        read_image(Image.fromarray(np.zeros((4, 4), np.float32)))
    with pytest.raises(TypeError, match='PIL.Image'):
        read_image([[0, 1]])


@pytest.mark.parametrize('mode', ['whole', 'slide'])
def test_non_square_photo_gives_full_size_map(seg_model, mode):
    # the test pipeline resizes 300x200 to 64x43: 43 rows are not a multiple of the 8-pixel
    # patches (slide: the 64x64 window is larger than the image, so the crop is 43 rows)
    from mmengine.config import ConfigDict
    before = seg_model.test_cfg
    seg_model.test_cfg = ConfigDict(mode=mode, crop_size=(64, 64), stride=(32, 32))
    try:
        got = inference_model(seg_model, _photo(200, 300))
        assert got['pred_mask'].shape == (200, 300)
        assert tuple(got['seg_logits'].shape) == (5, 200, 300)
        # the same as mmseg's own test-time padding, set in the config's data preprocessor
        dp = seg_model.data_preprocessor
        dp.test_cfg = dict(size_divisor=8)
        try:
            ref = inference_model(seg_model, _photo(200, 300))
        finally:
            dp.test_cfg = None
        assert torch.equal(got['seg_logits'], ref['seg_logits'])
    finally:
        seg_model.test_cfg = before


def test_padding_follows_the_config(seg_model):
    # no test-time padding in the config: to the backbone's patch size
    assert padding_of(seg_model) == dict(size_divisor=8)
    # the config's data_preprocessor.test_cfg is what mmseg honours at test time
    # (data_preprocessor.size_divisor pads training batches only)
    from mmengine.config import Config
    cfg = Config.fromfile(SEG_TINY)
    cfg.model.data_preprocessor.test_cfg = dict(size_divisor=32)
    model = get_model(cfg)
    assert padding_of(model) == dict(size_divisor=32)
    got = inference_model(model, _photo(200, 300))
    assert got['pred_mask'].shape == (200, 300)


@pytest.fixture(scope='module')
def seg_onnx(tmp_path_factory, seg_model):
    import onnxruntime  # noqa: F401
    import onnxscript  # noqa: F401

    from mmbeit.deployment import export_model
    out = str(tmp_path_factory.mktemp('onnx') / 'seg.onnx')
    export_model(seg_model, out, dynamic=True, check=False)
    return out


def test_dynamic_onnx_pads_as_pytorch(seg_onnx, seg_model):
    image = _photo(200, 300)
    ref = inference_model(seg_model, image)
    got = inference_model(seg_onnx, image, config=SEG_TINY)
    assert got['pred_mask'].shape == (200, 300)
    assert float((got['seg_logits'] - ref['seg_logits']).abs().max()) <= 1e-4


def test_dynamic_onnx_refuses_sizes_off_the_patch_grid(seg_onnx):
    from mmbeit.deployment import build_onnx_model
    model = build_onnx_model(seg_onnx, SEG_TINY)
    with pytest.raises(
            ValueError,
            match=r'input size 43x64 is not a multiple of the patch '
            r'size 8.*pad to 48x64'):
        model.run(torch.zeros(1, 3, 43, 64))
