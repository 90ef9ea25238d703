"""BEiT v2 pretraining checkpoints through every door: mmpretrain's (``neck.patch_aggregation``,
``neck.norm``, ``head.cls_head``, ``target_generator``) and unilm's (``cls_pt_layers``, ``norm``,
``lm_head``), made from randomized reference models, load completely into mmbeit's v2
``BEiTPretrain`` and give the reference's losses; their backbone starts a classifier."""
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from test_beitv2_pretrain import (ARCH, EARLY, EMBED, IMG, LAYERS, PATCH, VOCAB, batch, ours,
                                  reference)

from mmbeit.converters import convert_checkpoint, detect_format, load_pretrained
from helpers import TOL, randomize_

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
FT_CFG = osp.join(ROOT, 'configs', 'beitv2', 'benchmarks',
                  'beit-base-p16_8xb128-coslr-100e_in1k.py')


@pytest.fixture
def logs(monkeypatch):
    """Every mmengine print_log call of the loading (as tests/test_doors.py's fixture)."""
    import mmengine.logging
    seen = []
    original = mmengine.logging.print_log

    def record(msg, *args, **kwargs):
        seen.append(str(msg))
        return original(msg, *args, **kwargs)

    monkeypatch.setattr(mmengine.logging, 'print_log', record)
    return lambda: '\n'.join(seen)


def _losses(model, inputs, samples):
    with torch.no_grad():
        out = model.eval().loss(inputs, samples)
    return out['loss_1'].item(), out['loss_2'].item()


def _load_torch(model, path):
    state_dict = torch.load(path, map_location='cpu', weights_only=True)['state_dict']
    model.load_state_dict(state_dict)


def _load_mmengine(model, path):
    from mmengine.runner import load_checkpoint
    load_checkpoint(model, path, map_location='cpu')


DOORS = {
    'load_pretrained': lambda m, p: load_pretrained(m, p),
    'torch load_state_dict': _load_torch,
    'mmengine load_checkpoint': _load_mmengine,
}


@pytest.fixture(scope='module')
def mmpretrain_file(tmp_path_factory):
    ref = reference()
    path = str(tmp_path_factory.mktemp('v2') / 'mmpretrain_beitv2.pth')
    torch.save({'state_dict': ref.state_dict(), 'meta': {'epoch': 3}}, path)
    inputs, samples = batch()
    with torch.no_grad():
        expected = ref.eval().loss(inputs, samples)
    return path, (expected['loss_1'].item(), expected['loss_2'].item())


def test_mmpretrain_keys_convert_to_the_canonical_roles(mmpretrain_file):
    path, _ = mmpretrain_file
    ckpt = torch.load(path, weights_only=True)
    assert detect_format(ckpt) == 'mmpretrain'
    converted = convert_checkpoint(ckpt, target='pretrain')
    assert 'neck.layers.1.attn.qkv.weight' in converted and 'neck.norm.weight' in converted
    assert 'head.fc.weight' in converted
    assert 'target_generator.quantize.embedding.weight' in converted
    assert not any('patch_aggregation' in k or 'cls_head' in k for k in converted)


@pytest.mark.parametrize('door', list(DOORS))
def test_mmpretrain_v2_checkpoint_loads_completely(door, mmpretrain_file):
    path, expected = mmpretrain_file
    model = ours()
    DOORS[door](model, path)
    inputs, samples = batch()
    got = _losses(model, inputs, samples)
    assert abs(got[0] - expected[0]) <= TOL and abs(got[1] - expected[1]) <= TOL, (got, expected)


def test_mmpretrain_v2_backbone_starts_a_classifier(mmpretrain_file, logs):
    """``pretrained=`` of a v2 fine-tuning config: the backbone loads (the shared table expanded
    into every layer's), the classification head keeps its initialization, by name."""
    from mmbeit.apis import get_model
    path, _ = mmpretrain_file
    model = get_model(
        FT_CFG,
        pretrained=path,
        backbone=dict(arch='tiny', img_size=IMG, patch_size=PATCH, init_cfg=None),
        head=dict(in_channels=ARCH['embed_dims'], num_classes=5))
    state = torch.load(path, weights_only=True)['state_dict']
    ours_backbone = model.backbone.state_dict()
    table = state['backbone.rel_pos_bias.relative_position_bias_table']
    for i in range(LAYERS):
        assert torch.equal(ours_backbone[f'layers.{i}.attn.rel_pos_bias.table'], table)
        assert torch.equal(ours_backbone[f'layers.{i}.norm1.weight'],
                           state[f'backbone.layers.{i}.ln1.weight'])
    assert torch.equal(ours_backbone['patch_embed.proj.weight'],
                       state['backbone.patch_embed.projection.weight'])
    text = logs()
    # kept at their initialization, by name: the new head, and fc_norm (mean pooling), which a
    # pretrain never has (unilm's run_class_finetuning.py initializes it fresh too)
    assert 'head.* keeps its initialization' in text, text
    assert 'backbone.fc_norm.* keeps its initialization' in text, text
    for part in ('mim_neck.*', 'mim_head.*', 'target_generator.*'):
        assert 'left out the checkpoint' in text and part in text, (part, text)


# ------------------------------------------------------------------------ unilm
def unilm_v2(seed: int = 3):
    """unilm's ``VisionTransformerForMaskedImageModelingCLS`` as timm's BEiT modules (unilm's
    ``Block`` and key names are timm's): the model's parts and what run_beitv2_pretraining.py
    saves (``{'model': state_dict}``)."""
    from timm.models.beit import Beit, Block
    C = ARCH['embed_dims']
    vit = Beit(
        img_size=IMG,
        patch_size=PATCH,
        embed_dim=C,
        depth=LAYERS,
        num_heads=ARCH['num_heads'],
        mlp_ratio=ARCH['feedforward_channels'] / C,
        init_values=0.1,
        use_abs_pos_emb=False,
        use_rel_pos_bias=False,
        use_shared_rel_pos_bias=True,
        num_classes=0,
        global_pool='')
    cls_pt_layers = torch.nn.ModuleList([
        Block(
            C,
            ARCH['num_heads'],
            qkv_bias=True,
            mlp_ratio=ARCH['feedforward_channels'] / C,
            init_values=0.1,
            window_size=None) for _ in range(2)
    ])
    parts = torch.nn.Module()
    parts.vit, parts.cls_pt_layers = vit, cls_pt_layers
    parts.mask_token = torch.nn.Parameter(torch.zeros(1, 1, C))
    parts.lm_head = torch.nn.Linear(C, VOCAB)
    randomize_(parts, seed)
    sd = {k: v for k, v in vit.state_dict().items()}
    sd['rel_pos_bias.relative_position_index'] = vit.rel_pos_bias.relative_position_index
    sd['mask_token'] = parts.mask_token.detach()
    sd.update({f'cls_pt_layers.{k}': v for k, v in cls_pt_layers.state_dict().items()})
    sd.update({f'lm_head.{k}': v for k, v in parts.lm_head.state_dict().items()})
    return parts, {'model': sd, 'epoch': 1599}


def unilm_losses(parts, img, mask, target):
    """unilm's forward_features + engine_for_pretraining's two cross-entropies."""
    vit = parts.vit
    x = vit.patch_embed(img)  # [B, N, C]
    w = mask.unsqueeze(-1).type_as(x)
    x = x * (1 - w) + parts.mask_token * w
    x = torch.cat([vit.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
    rel_pos_bias = vit.rel_pos_bias()
    for i, blk in enumerate(vit.blocks):
        x = blk(x, shared_rel_pos_bias=rel_pos_bias)
        if i + 1 == EARLY:
            early_states = x[:, 1:]
    x_cls_pt = torch.cat([x[:, [0]], early_states], dim=1)
    for blk in parts.cls_pt_layers:
        x_cls_pt = blk(x_cls_pt, shared_rel_pos_bias=rel_pos_bias)
    x, x_cls_pt = vit.norm(x)[:, 1:], vit.norm(x_cls_pt)[:, 1:]
    labels = target[mask]
    return (F.cross_entropy(parts.lm_head(x[mask]),
                            labels).item(), F.cross_entropy(parts.lm_head(x_cls_pt[mask]),
                                                            labels).item())


def test_unilm_keys_convert_to_the_canonical_roles():
    _, ckpt = unilm_v2()
    assert detect_format(ckpt) == 'unilm'
    converted = convert_checkpoint(ckpt, target='pretrain')
    assert 'neck.layers.0.gamma1' in converted and 'neck.norm.bias' in converted
    assert 'head.fc.weight' in converted and 'backbone.norm.weight' not in converted


@pytest.mark.parametrize('door', list(DOORS))
def test_unilm_v2_checkpoint_loads_completely(door, tmp_path):
    parts, ckpt = unilm_v2()
    path = str(tmp_path / 'beitv2_tiny_patch16_pt1k.pth')
    torch.save(ckpt, path)
    model = ours()
    if door == 'torch load_state_dict':
        model.load_state_dict(ckpt['model'])  # unilm's own wrapper key
    else:
        DOORS[door](model, path)
    inputs, samples = batch()
    mask = torch.stack([s.mask for s in samples]).flatten(1)
    with torch.no_grad():
        target = model.target_generator(inputs[1])  # the file has no tokenizer: ours as is
        expected = unilm_losses(parts.eval(), inputs[0], mask, target)
    got = _losses(model, inputs, samples)
    assert abs(got[0] - expected[0]) <= TOL and abs(got[1] - expected[1]) <= TOL, (got, expected)


# ------------------------------------------------------------------------ mmbeit's own
def test_own_v2_checkpoint_starts_a_segmentor(tmp_path, logs):
    """mmbeit's v2 pretraining checkpoint (``neck.layers.*``: the v2 neck, not a segmentation
    neck) starts UperNet: the backbone loads, the v2 neck, head and tokenizer are left out."""
    from mmbeit.apis import get_model
    model = randomize_(ours())  # off its init: the shared table starts as zeros
    path = str(tmp_path / 'epoch_1.pth')
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    seg = get_model(
        osp.join(ROOT, 'configs', 'beitv2', 'upernet_beitv2-base_8xb2-amp-160k_ade20k-512x512.py'),
        pretrained=path,
        backbone=dict(arch='tiny', img_size=IMG, out_indices=(0, 1, 2, 3), init_cfg=None),
        neck=dict(embed_dim=EMBED),
        decode_head=dict(in_channels=[EMBED] * 4, channels=32),
        auxiliary_head=dict(in_channels=EMBED, channels=16))
    ours_backbone = model.backbone.state_dict()
    seg_backbone = seg.backbone.state_dict()
    shared = ours_backbone['rel_pos_bias.table']
    assert shared.abs().max() > 1e-2  # randomized, not the zeros of its init
    # the checkpoint's backbone keys the segmentor has no key of its own for: the shared table
    # (copied into every layer) and the mask token (dropped)
    assert set(ours_backbone) - set(seg_backbone) == {'rel_pos_bias.table', 'mask_token'}
    tables = [f'layers.{i}.attn.rel_pos_bias.table' for i in range(LAYERS)]
    assert set(seg_backbone) - set(ours_backbone) == set(tables)
    compared = 0
    for k, v in seg_backbone.items():
        assert torch.equal(v, shared if k in tables else ours_backbone[k]), k
        compared += 1
    assert compared == len(seg_backbone) > len(tables)
    text = logs()
    assert 'decode_head.* keeps its initialization' in text, text


def test_unilm_v2_file_through_a_fine_tuning_configs_init_cfg(tmp_path):
    """The 1600e fine-tuning config's door (``backbone.init_cfg``, ``prefix='backbone.'``) with
    unilm's pretraining file: the backbone equals timm's (= unilm's) blocks, the shared table is
    in every layer."""
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope
    parts, ckpt = unilm_v2()
    path = str(tmp_path / 'beitv2_tiny_patch16_224_pt1k.pth')
    torch.save(ckpt, path)
    cfg = Config.fromfile(
        osp.join(ROOT, 'configs', 'beitv2', 'benchmarks',
                 'beit-base-p16_8xb128-amp-coslr-100e_in1k.py'))
    cfg.model.backbone.update(arch='tiny', img_size=IMG, patch_size=PATCH)
    cfg.model.backbone.init_cfg.checkpoint = path
    cfg.model.head.update(in_channels=EMBED, num_classes=5)
    init_default_scope('mmpretrain')
    model = MODELS.build(cfg.model.to_dict())
    model.init_weights()
    sd = ckpt['model']
    for i in range(LAYERS):
        layer = model.backbone.layers[i]
        assert torch.equal(layer.attn.qkv.weight, sd[f'blocks.{i}.attn.qkv.weight'])
        assert torch.equal(layer.gamma2, sd[f'blocks.{i}.gamma_2'])
        assert torch.equal(layer.attn.rel_pos_bias.table,
                           sd['rel_pos_bias.relative_position_bias_table'])
