"""Attention maps: the recorded weights are transformers' attentions and a hand computation
from each layer's weights; the maps and the rollout are those weights' rows and products;
recording changes no output; the tool draws a PNG for classifier, segmentor and pretraining
configs."""
import os.path as osp
import runpy
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from mmbeit.converters import load_pretrained
from mmbeit.models.backbones.beit import BEiT
from mmbeit.visualization.attention_maps import (attention_rollout, cls_attention,
                                                 collect_attention, compute_attention_maps,
                                                 find_backbone, patch_attention, prepare_input,
                                                 visualize_attention)
from helpers import randomize_

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CLS_CFG = osp.join(ROOT, 'configs', 'beit', 'benchmarks', 'beit-tiny-p8_1xb32-20e_sample.py')
MIM_CFG = osp.join(ROOT, 'configs', 'beit', 'beit_beit-tiny-p8_1xb32-10e_sample.py')
SEG_CFG = osp.join(ROOT, 'configs', 'upernet_beit', 'upernet_beit-tiny_1xb8-500_sample-64x64.py')
TOOL = osp.join(ROOT, 'tools', 'visualization', 'vis_attention.py')
TOL = 1e-5


@torch.no_grad()
def hand_attention(attn, x, window_size, shared_bias=None) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + bias) from the module's weights: [B, heads, N, N]."""
    B, N, C = x.shape
    heads = attn.num_heads
    d = C // heads
    w = attn.qkv.weight.double()  # [3C, C]: q, k, v rows
    x = x.double()
    q = x @ w[:C].T + attn.q_bias.double()  # BEiT: a q bias, no k bias
    k = x @ w[C:2 * C].T
    q = q.reshape(B, N, heads, d).transpose(1, 2)
    k = k.reshape(B, N, heads, d).transpose(1, 2)
    logits = q @ k.transpose(-2, -1) / d**0.5
    if attn.rel_pos_bias is not None:
        logits = logits + attn.rel_pos_bias(window_size).double()
    if shared_bias is not None:
        logits = logits + shared_bias.double()
    return logits.softmax(-1).float()


def hand_rollout(weights) -> np.ndarray:
    """Abnar & Zuidema's rollout as their paper writes it: 0.5 A + 0.5 I, then products."""
    mats = [w.double().mean(1).numpy() for w in weights]  # [B, N, N] per layer
    out = []
    for b in range(mats[0].shape[0]):
        n = mats[0].shape[-1]
        r = np.eye(n)
        for a in mats:
            r = (0.5 * a[b] + 0.5 * np.eye(n)) @ r
        out.append(r)
    return np.stack(out)


def record_inputs(backbone):
    """Forward pre-hooks keeping each attention's input (x, window_size, shared_bias)."""
    seen = {}
    handles = [
        layer.attn.register_forward_pre_hook(lambda m, args, i=i: seen.__setitem__(i, args[:3]))
        for i, layer in enumerate(backbone.layers)
    ]
    return seen, handles


@pytest.mark.parametrize('shared', [False, True])
@pytest.mark.parametrize('size', [(32, 32), (24, 40)])  # 24x40: tables resized at run time
def test_weights_equal_a_hand_computation_and_outputs_do_not_change(shared, size):
    model = randomize_(
        BEiT(
            arch='tiny',
            img_size=32,
            patch_size=8,
            out_type='featmap',
            out_indices=(1, 3),
            use_rel_pos_bias=not shared,
            use_shared_rel_pos_bias=shared))
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(0))
    seen, handles = record_inputs(model)
    with torch.no_grad():
        plain = model(x)
        with collect_attention(model) as record:
            collected = model(x)
    for h in handles:
        h.remove()
    for a, b in zip(plain, collected):
        assert torch.equal(a, b)  # the outputs still come from SDPA
    assert all(layer.attn.weights_sink is None for layer in model.layers)  # restored
    grid = (size[0] // 8, size[1] // 8)
    for i in range(4):
        weights = record[i]
        assert weights.shape == (2, 4, 1 + grid[0] * grid[1], 1 + grid[0] * grid[1])
        assert record.grid(i) == grid and len(record.weights[i]) == 1
        hand = hand_attention(model.layers[i].attn, *seen[i])
        assert (weights - hand).abs().max() <= TOL
        assert (weights.sum(-1) - 1).abs().max() <= TOL
        assert weights.std() > 1e-3  # not uniform: the check can fail


@pytest.mark.parametrize('size', [(64, 64), (48, 80)])
def test_weights_equal_transformers_attentions(beit_config, size):
    """At another size both resize the relative tables bilinearly (rel_pos_resize='bilinear')."""
    from transformers import BeitModel
    ref = randomize_(BeitModel(beit_config(image_size=64, attn_implementation='eager')))
    model = BEiT(
        arch=dict(embed_dims=64, num_layers=4, num_heads=4, feedforward_channels=256),
        img_size=64,
        out_type='avg_featmap',
        final_norm=False,
        rel_pos_resize='bilinear').eval()
    assert load_pretrained(model, ref.state_dict()).fmt == 'transformers'
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad(), collect_attention(model) as record:
        model(x)
        want = ref(pixel_values=x, output_attentions=True, interpolate_pos_encoding=True).attentions
    assert len(want) == 4
    for i, w in enumerate(want):
        assert (record[i] - w).abs().max() <= TOL


def test_maps_are_rows_of_the_weights_row_major():
    n = 1 + 2 * 3  # a 2x3 grid
    weights = torch.arange(n * n, dtype=torch.float32).reshape(1, 1, n, n)
    cls = cls_attention(weights, (2, 3))[0, 0]
    assert cls.tolist() == [[1, 2, 3], [4, 5, 6]]
    patch = patch_attention(weights, (2, 3), (1, 2))[0, 0]  # token 1 + 1*3 + 2 = 6
    assert patch.tolist() == [[6 * n + j for j in (1, 2, 3)], [6 * n + j for j in (4, 5, 6)]]
    with pytest.raises(ValueError, match='outside the 2x3 patch grid'):
        patch_attention(weights, (2, 3), (2, 0))
    with pytest.raises(ValueError, match='do not fit a 3x3 patch grid'):
        cls_attention(weights, (3, 3))


def test_rollout_equals_the_papers_formula():
    g = torch.Generator().manual_seed(0)
    weights = [torch.rand(2, 3, 5, 5, generator=g).softmax(-1) for _ in range(3)]
    rollout = attention_rollout(weights)
    assert np.abs(rollout.double().numpy() - hand_rollout(weights)).max() <= TOL
    assert (rollout.sum(-1) - 1).abs().max() <= TOL
    # one layer: 0.5 A + 0.5 I
    single = attention_rollout(weights[:1])
    assert (single - (0.5 * weights[0].mean(1) + 0.5 * torch.eye(5))).abs().max() <= TOL
    with pytest.raises(ValueError, match='at least one layer'):
        attention_rollout([])


def _non_square(sample_data) -> np.ndarray:
    from mmbeit.utils.image_io import read_image
    return read_image(osp.join(sample_data, 'demo', 'shapes.png'))[:40]  # BGR [40, 64, 3]


@pytest.mark.parametrize(
    'config,kwargs,grid',
    [
        (CLS_CFG, dict(), (8, 8)),  # the test pipeline's square view
        (SEG_CFG, dict(), (8, 12)),  # segmentors keep the aspect ratio: 64x96 pixels
        (MIM_CFG, dict(size=(48, 80), layer=2, patch=(0, 9)), (6, 10)),  # shared bias, resized
    ],
    ids=['classifier', 'segmentor', 'pretrain'])
def test_maps_of_a_tiny_model_equal_attention_computed_by_hand(config, kwargs, grid,
                                                               shared_sample_data, tmp_path):
    from mmbeit.apis import get_model
    model = get_model(config)
    randomize_(model.backbone)  # (not the data preprocessor's mean and std)
    image = _non_square(shared_sample_data)
    out = str(tmp_path / 'attn.png')
    maps = visualize_attention(model, image, out, **kwargs)
    backbone = find_backbone(model)
    layer = maps['layer']
    assert layer == kwargs.get('layer', -1) % 4 and maps['grid'] == grid
    patch = kwargs.get('patch', (grid[0] // 2, grid[1] // 2))
    assert maps['patch'] == patch

    # by hand: each layer's input from a plain forward (no recording), then q, k, bias, softmax
    view, inputs = prepare_input(model, image, kwargs.get('size'))
    assert np.array_equal(view, maps['image'])
    assert view.shape[:2] == (grid[0] * 8, grid[1] * 8)
    seen, handles = record_inputs(backbone)
    with torch.no_grad():
        backbone(inputs)
    for h in handles:
        h.remove()
    hand = [hand_attention(backbone.layers[i].attn, *seen[i]) for i in range(layer + 1)]
    w = hand[layer][0]  # [heads, N, N]
    h, wd = grid
    row = 1 + patch[0] * wd + patch[1]
    assert np.abs(maps['cls'] - w[:, 0, 1:].reshape(4, h, wd).numpy()).max() <= TOL
    assert np.abs(maps['patch_maps'] - w[:, row, 1:].reshape(4, h, wd).numpy()).max() <= TOL
    rollout = hand_rollout(hand)[0, 0, 1:].reshape(h, wd)
    assert np.abs(maps['rollout'] - rollout).max() <= TOL
    assert maps['cls'].std() > 1e-3 and maps['rollout'].std() > 1e-4

    # the grid: 3 rows of 4 panels (4 heads), each >= 192 pixels, over the view
    png = Image.open(out)
    assert png.format == 'PNG'
    scale = -(-192 // min(view.shape[:2]))
    assert png.size[0] == 4 * view.shape[1] * scale + 3 * 4
    assert png.size[1] == 3 * (view.shape[0] * scale + 14) + 2 * 4


def test_recording_does_not_change_a_classifiers_logits():
    from mmbeit.apis import get_model
    model = get_model(CLS_CFG)
    randomize_(model.backbone)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        plain = model(x, mode='tensor')
        with collect_attention(model, layers=[0, -1]) as record:
            recorded = model(x, mode='tensor')
    assert torch.equal(plain, recorded)
    assert record.layers == (0, 3) and record[-1 % 4].shape == (2, 4, 65, 65)


def test_clear_errors():
    backbone = randomize_(BEiT(arch='tiny', img_size=32, patch_size=8, out_indices=1))
    with pytest.raises(ValueError, match='layer 4 is out of range for a backbone of 4 layers'):
        with collect_attention(backbone, layers=4):
            pass
    with torch.no_grad(), collect_attention(backbone) as record:
        backbone(torch.randn(1, 3, 32, 32))
    assert record[1].shape == (1, 4, 17, 17)
    with pytest.raises(ValueError, match='layer 3 did not run'):
        record[3]
    with pytest.raises(TypeError, match='has no BEiT backbone'):
        find_backbone(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match='multiples of the patch size 8'):
        compute_attention_maps(backbone, np.zeros((32, 32, 3), np.uint8), size=30)


def test_tool_writes_a_png_from_config_and_checkpoint(shared_sample_data, tmp_path, monkeypatch,
                                                      capsys):
    sample_data = shared_sample_data
    from mmbeit.apis import get_model
    model = get_model(CLS_CFG)
    randomize_(model.backbone, seed=3)
    ckpt = str(tmp_path / 'tiny.pth')
    torch.save(dict(state_dict=model.state_dict()), ckpt)
    out = str(tmp_path / 'vis' / 'circle_attn.png')
    argv = [
        TOOL, CLS_CFG,
        osp.join(sample_data, 'demo', 'circle.png'), '--checkpoint', ckpt, '--layer', '-1',
        '--patch', '2', '5', '--out', out
    ]
    monkeypatch.setattr(sys, 'argv', argv)
    runpy.run_path(TOOL, run_name='__main__')
    assert out in capsys.readouterr().out
    png = np.asarray(Image.open(out).convert('RGB'))
    # the checkpoint's weights were used: the grid equals one drawn from the model itself
    from mmbeit.visualization.attention_maps import draw_attention_grid
    maps = compute_attention_maps(model, osp.join(sample_data, 'demo', 'circle.png'), patch=(2, 5))
    grid = draw_attention_grid(
        maps['image'], maps['cls'], maps['patch_maps'], maps['rollout'], (2, 5), scale=3)
    np.testing.assert_array_equal(png, grid)


def test_what_mmpretrain_vis_cam_reads_from_the_backbone():
    """mmpretrain's tools/visualization/vis_cam.py --vit-like reads ``num_extra_tokens``, takes
    the third-last norm layer of the backbone as its target, and calls
    ``model(inputs)`` for logits (docs/visualization.md)."""
    from mmbeit.apis import get_model
    model = get_model(CLS_CFG)
    backbone = model.backbone
    assert backbone.num_extra_tokens == 1 and backbone.patch_resolution == (8, 8)
    norms = [
        name for name, m in backbone.named_modules(prefix='backbone')
        if isinstance(m, (torch.nn.LayerNorm, torch.nn.GroupNorm))
    ]
    assert norms[-3] == 'backbone.layers.3.norm1'  # the last attention's input
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 5)
