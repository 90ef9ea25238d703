"""MIM visualization (masked input, target and predicted tokens) and TensorBoard logging."""
import glob
import os.path as osp

import numpy as np
import pytest
from PIL import Image

from mmbeit.visualization.mim_visualizer import (colorize_tokens, draw_mim_grid, predict_mim_tokens,
                                                 save_mim_grid, token_palette, visualize_mim)

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
MIM_CFG = osp.join(ROOT, 'configs', 'beit', 'beit_beit-tiny-p8_1xb32-10e_sample.py')
CLS_CFG = osp.join(ROOT, 'configs', 'beit', 'benchmarks', 'beit-tiny-p8_1xb32-20e_sample.py')
MIM_V2_CFG = osp.join(ROOT, 'configs', 'beitv2', 'beitv2_beit-tiny-p8_1xb32-10e_sample.py')


def test_palette_is_fixed_and_distinguishes_ids():
    pal = token_palette(8192)
    assert pal.shape == (8192, 3) and pal.dtype == np.uint8
    np.testing.assert_array_equal(pal[:100], token_palette(100))
    assert len({tuple(c) for c in pal[:512]}) == 512
    with pytest.raises(ValueError, match='>= num_tokens'):
        colorize_tokens(np.array([[3]]), num_tokens=3)


def test_grid_png_panels(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    mask = np.zeros((2, 2), bool)
    mask[0, 1] = mask[1, 0] = True
    target = np.array([[1, 2], [3, 4]])
    pred = np.array([[9, 2], [7, 5]])  # masked (0, 1) right, masked (1, 0) wrong
    out = str(tmp_path / 'vis' / 'grid.png')
    grid = save_mim_grid(
        out, image, mask.ravel(), target.ravel(), pred, num_tokens=10, scale=2, titles=False)
    png = np.asarray(Image.open(out).convert('RGB'))
    np.testing.assert_array_equal(png, grid)
    assert png.shape == (64, 5 * 64 + 4 * 4, 3)
    panels = [png[:, i * 68:i * 68 + 64] for i in range(5)]
    # the image is given in BGR (mmbeit's convention for inputs), drawn in RGB
    np.testing.assert_array_equal(panels[0], image[..., ::-1].repeat(2, 0).repeat(2, 1))
    assert (panels[1][:32, 32:] == 128).all() and (panels[1][:32, :32] == panels[0][:32, :32]).all()
    pal = token_palette(10)
    np.testing.assert_array_equal(panels[2][40, 40], pal[4])  # patch (1, 1): target 4
    np.testing.assert_array_equal(panels[3][10, 40], pal[2])  # masked (0, 1): predicted 2
    assert tuple(panels[4][10, 40]) == (40, 170, 60)  # right
    assert tuple(panels[4][40, 10]) == (210, 40, 40)  # wrong
    assert not (panels[3][10, 10] == pal[9]).all()  # unmasked prediction not drawn
    with_titles = draw_mim_grid(image, mask, target, pred)
    assert with_titles.shape[0] > 32
    with pytest.raises(ValueError, match='target_tokens'):
        draw_mim_grid(image, mask, np.zeros(5, int), pred)


def test_predict_and_visualize_a_tiny_pretraining_model(tmp_path, shared_sample_data):
    from mmbeit.apis import get_model
    root = shared_sample_data
    model = get_model(MIM_CFG)
    model.train()
    out = str(tmp_path / 'mim.png')
    result = visualize_mim(model, osp.join(root, 'demo', 'circle.png'), out, seed=1)
    assert model.training  # mode restored
    assert result['mask'].shape == (8, 8) and result['mask'].sum() == round(
        0.4 * 64)  # the default 40%
    assert result['target'].shape == result['pred'].shape == (8, 8)
    assert 0 <= result['target'].min() and result['target'].max() < result['num_tokens'] == 512
    manual = (result['pred'] == result['target'])[result['mask']].mean() * 100
    assert result['accuracy'] == pytest.approx(manual)
    img = Image.open(out)
    img.verify()
    assert img.format == 'PNG' and img.size[0] > 5 * 192
    # a given mask is used as is
    mask = np.zeros(64, bool)
    mask[:3] = True
    again = predict_mim_tokens(model, result['image'], mask=mask)
    assert again['mask'].ravel().tolist() == mask.tolist()
    with pytest.raises(TypeError, match='BEiTPretrain'):
        predict_mim_tokens(get_model(CLS_CFG), result['image'])


def test_predict_a_tiny_v2_model_with_the_vqkd_view(shared_sample_data):
    """BEiT v2: the tokenizer's view is the backbone's size (VQ-KD's patch size), and the
    targets are what the VQ-KD tokenizer gives for that view."""
    import torch

    from mmbeit.apis import get_model
    model = get_model(MIM_V2_CFG)
    result = predict_mim_tokens(model, osp.join(shared_sample_data, 'demo', 'circle.png'), seed=1)
    assert result['target'].shape == result['pred'].shape == (8, 8)
    assert result['num_tokens'] == model.target_generator.vocab_size == 512
    # the targets are the tokenizer's ids of the 64x64 view in VQ-KD's [-1, 1] range
    view = torch.from_numpy(np.ascontiguousarray(result['image'][..., ::-1])).permute(2, 0, 1)
    with torch.no_grad():
        ids = model.target_generator(view[None].float() / 127.5 - 1)
    agree = (ids[0].view(8, 8).numpy() == result['target']).mean()
    assert agree == 1.0  # both views: the same crop, bicubic, at the same size
    assert len(np.unique(result['target'])) > 1  # not one code for every patch


def test_tensorboard_backend_writes_events(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from mmbeit.apis.run import build_runner_cfg, train
    from mmbeit.utils.sample_data import generate_sample_data
    root = generate_sample_data(
        str(tmp_path / 'data'), cls_train_per_class=2, cls_val_per_class=1, seg_train=1, seg_val=1)
    # a config of one's own: inherit and list the backends (mmengine replaces lists)
    cfg_file = tmp_path / 'cls_tensorboard.py'
    cfg_file.write_text(f'_base_ = {CLS_CFG!r}\n'
                        "visualizer = dict(vis_backends=[dict(type='LocalVisBackend'),\n"
                        "                                dict(type='TensorboardVisBackend')])\n")
    data_root = osp.join(root, 'imagenet')
    cfg = build_runner_cfg(
        str(cfg_file),
        work_dir=str(tmp_path / 'work'),
        no_validate=True,
        cfg_options={
            'train_dataloader.dataset.data_root': data_root,
            'test_dataloader.dataset.data_root': data_root,
            'train_dataloader.batch_size': 5,
            'train_dataloader.num_workers': 0,
            'train_dataloader.persistent_workers': False,
            'train_cfg.max_epochs': 1,
            'default_hooks.logger.interval': 1,
            'default_hooks.checkpoint.interval': 10
        })
    train(cfg)
    events = glob.glob(str(tmp_path / 'work' / '*' / 'vis_data' / 'events.out.tfevents.*'))
    assert len(events) == 1
    acc = EventAccumulator(events[0])
    acc.Reload()
    assert {'loss', 'lr'} <= set(acc.Tags()['scalars'])
    assert len(acc.Scalars('loss')) == 2  # 10 images / 5 = 2 iterations, logged every one
    assert glob.glob(str(tmp_path / 'work' / '*' / 'vis_data' / 'scalars.json'))  # local kept
