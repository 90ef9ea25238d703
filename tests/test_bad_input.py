"""Bad input to inference: each case accepted with the conversion mmbeit.apis.image_io
documents, or refused with an error that names the file (or array) and what was expected."""
import os.path as osp

import cv2
import numpy as np
import pytest
from PIL import Image

from mmbeit.apis import get_model, inference_model, inference_segmentor, save_overlay
from mmbeit.utils.image_io import read_image

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TINY_CFG = osp.join(ROOT, 'configs', 'beit', 'benchmarks', 'beit-tiny-p8_1xb32-20e_sample.py')
SEG_CFG = osp.join(ROOT, 'configs', 'upernet_beit', 'upernet_beit-tiny_1xb8-500_sample-64x64.py')
RGB = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)


@pytest.fixture(scope='module')
def classifier():
    return get_model(TINY_CFG)


@pytest.fixture(scope='module')
def segmentor():
    return get_model(SEG_CFG)


# ------------------------------------------------------------------------- refused
def test_a_file_that_is_not_an_image(tmp_path, classifier):
    path = tmp_path / 'notes.jpg'
    path.write_text('these are not pixels')
    with pytest.raises(ValueError, match=rf'{path}.*not an image file.*expected JPEG, PNG'):
        inference_model(classifier, str(path))


def test_an_empty_file(tmp_path, classifier, segmentor):
    path = tmp_path / 'empty.png'
    path.write_bytes(b'')
    for model in (classifier, segmentor):
        with pytest.raises(ValueError, match=rf'{path} is an empty file.*expected an image'):
            inference_model(model, str(path))


def test_a_missing_file(tmp_path, classifier):
    with pytest.raises(FileNotFoundError, match='image not found: .*missing.png'):
        inference_model(classifier, str(tmp_path / 'missing.png'))


@pytest.mark.parametrize('dtype', [np.float32, np.float64, np.int64, bool])
def test_float_and_other_arrays_are_refused_with_a_hint(dtype, classifier):
    with pytest.raises(ValueError, match=rf'dtype {np.dtype(dtype)}; expected a uint8 array'):
        inference_model(classifier, np.zeros((16, 16, 3), dtype))
    if dtype == np.float32:
        with pytest.raises(ValueError, match=r'\(x \* 255\)\.round\(\)'):
            inference_model(classifier, np.zeros((16, 16, 3), dtype))


@pytest.mark.parametrize('shape', [(16, 16, 2), (16, ), (2, 16, 16, 3), (0, 16, 3)])
def test_arrays_of_other_shapes_are_refused(shape, classifier):
    with pytest.raises(ValueError, match=r'expected a uint8 array \[H, W, 3\]|is empty'):
        inference_model(classifier, np.zeros(shape, np.uint8))


def test_not_a_path_nor_an_array(classifier):
    with pytest.raises(TypeError, match='file path or a numpy array'):
        inference_model(classifier, [[0, 1], [2, 3]])


# ------------------------------------------------------------------------- converted
def _same_prediction(model, a, b):
    pa, pb = inference_model(model, a), inference_model(model, b)
    if 'pred_scores' in pa:
        np.testing.assert_allclose(pa['pred_scores'], pb['pred_scores'], atol=1e-6)
    else:
        assert (pa['pred_mask'] == pb['pred_mask']).all()


def test_grayscale_files_and_2d_arrays_become_three_equal_channels(tmp_path, classifier, segmentor):
    gray = RGB[..., 0]
    path = str(tmp_path / 'gray.png')
    Image.fromarray(gray, mode='L').save(path)
    img = read_image(path)
    assert img.shape == (48, 64, 3) and (img == gray[..., None]).all()
    assert (read_image(gray) == img).all() and (read_image(gray[..., None]) == img).all()
    for model in (classifier, segmentor):
        _same_prediction(model, path, np.repeat(gray[..., None], 3, axis=2))
        _same_prediction(model, gray, np.repeat(gray[..., None], 3, axis=2))


def test_16_bit_files_and_arrays_keep_the_high_byte(tmp_path, classifier):
    deep = RGB.astype(np.uint16) * 257 + 100  # 16-bit BGR
    path = str(tmp_path / 'deep.png')
    assert cv2.imwrite(path, deep)
    img = read_image(path)
    assert img.dtype == np.uint8 and (img == (deep >> 8)).all()  # as OpenCV reads it
    assert (read_image(deep) == img).all()  # an array: the same conversion
    _same_prediction(classifier, path, (deep >> 8).astype(np.uint8))


def test_rgba_files_and_bgra_arrays_drop_the_alpha(tmp_path, classifier, segmentor):
    alpha = np.random.default_rng(1).integers(0, 256, (48, 64, 1), dtype=np.uint8)
    rgba = np.concatenate([RGB, alpha], axis=2)
    path = str(tmp_path / 'rgba.png')
    Image.fromarray(rgba, mode='RGBA').save(path)
    bgr = np.ascontiguousarray(RGB[..., ::-1])
    assert (read_image(path) == bgr).all()  # alpha dropped, not composited
    bgra = np.concatenate([bgr, alpha], axis=2)
    assert (read_image(bgra) == bgr).all()
    for model in (classifier, segmentor):
        _same_prediction(model, path, bgr)


def test_segmentation_and_overlays_take_the_same_conventions(tmp_path, segmentor):
    path = str(tmp_path / 'img.png')
    Image.fromarray(RGB).save(path)
    bgr = np.ascontiguousarray(RGB[..., ::-1])
    out = inference_segmentor(segmentor, path)
    assert out['pred_mask'].shape == (48, 64)
    assert (inference_segmentor(segmentor, bgr)['pred_mask'] == out['pred_mask']).all()
    over = save_overlay(path, out['pred_mask'], opacity=0.)  # RGB picture of the BGR input
    assert (over == RGB).all() and (save_overlay(bgr, out['pred_mask'], opacity=0.) == RGB).all()
    with pytest.raises(ValueError, match='empty file'):
        (tmp_path / 'e.png').write_bytes(b'')
        save_overlay(str(tmp_path / 'e.png'), out['pred_mask'])
