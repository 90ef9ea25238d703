"""Every checkpoint format: detected, converted, loaded strictly, same outputs as its library.

The checkpoints are made by the source libraries themselves with small configs
and random weights. unilm's code is not a package: its checkpoints are built
from timm's BEiT (a port that keeps unilm's module names) plus what only
unilm's files have (the ``{'model': ...}`` wrapper, persistent
``relative_position_index`` buffers, ``mask_token`` and ``lm_head``).
"""
import json
import os
import os.path as osp
import runpy
import sys

import pytest
import torch
import torch.nn.functional as F

import mmbeit  # noqa: F401
from mmbeit.converters import (FORMATS, CheckpointMismatchError, convert_checkpoint, detect_format,
                               load_pretrained, save_transformers)
from mmbeit.models.backbones.beit import BEiT
from helpers import assert_close, randomize_  # tests/helpers.py: fp32 <= 1e-4, non-trivial

C, DEPTH, HEADS, IMG, CLASSES = 64, 2, 4, 64, 5
ARCH = dict(embed_dims=C, num_layers=DEPTH, num_heads=HEADS, feedforward_channels=4 * C)
TOOLS = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'tools', 'model_converters')


@pytest.fixture
def image():
    return torch.randn(2, 3, IMG, IMG, generator=torch.Generator().manual_seed(1))


def build(scope: str, cfg: dict) -> torch.nn.Module:
    """Build ``cfg`` in the mmpretrain or mmseg registry with that default scope."""
    import importlib

    from mmengine.registry import DefaultScope
    registry = importlib.import_module(f'{scope}.registry').MODELS
    with DefaultScope.overwrite_default_scope(scope):
        model = registry.build(cfg)
    model.eval()
    return model


def classifier(**backbone):
    cfg = dict(type='mmbeit.BEiT', arch=ARCH, img_size=IMG, final_norm=False)
    cfg.update(backbone)
    return build(
        'mmpretrain',
        dict(
            type='ImageClassifier',
            backbone=cfg,
            head=dict(type='LinearClsHead', num_classes=CLASSES, in_channels=C)))


def segmentor(backbone: str = 'mmbeit', out_indices=(0, 1, 2, 3), depth: int = 4):
    """mmseg's UperNet + FCN auxiliary head on mmseg's BEiT or ours."""
    if backbone == 'mmbeit':
        bb = dict(
            type='mmbeit.BEiT',
            arch=dict(ARCH, num_layers=depth),
            img_size=IMG,
            out_type='featmap',
            out_indices=out_indices,
            final_norm=False)
    else:
        bb = dict(
            type='BEiT',
            img_size=IMG,
            embed_dims=C,
            num_layers=depth,
            num_heads=HEADS,
            out_indices=out_indices,
            norm_cfg=dict(type='LN', eps=1e-6))
    bn = dict(type='BN', requires_grad=True)
    ce = dict(type='CrossEntropyLoss', avg_non_ignore=True)
    return build(
        'mmseg',
        dict(
            type='EncoderDecoder',
            backbone=bb,
            neck=dict(type='Feature2Pyramid', embed_dim=C, rescales=[4, 2, 1, 0.5], norm_cfg=bn),
            decode_head=dict(
                type='UPerHead',
                in_channels=[C] * 4,
                in_index=[0, 1, 2, 3],
                pool_scales=(1, 2, 3, 6),
                channels=C,
                num_classes=CLASSES,
                norm_cfg=bn,
                align_corners=False,
                loss_decode=ce),
            auxiliary_head=dict(
                type='FCNHead',
                in_channels=C,
                in_index=2,
                channels=16,
                num_convs=1,
                concat_input=False,
                num_classes=CLASSES,
                norm_cfg=bn,
                align_corners=False,
                loss_decode=ce)))


def hf_config(**kwargs):
    from transformers import BeitConfig
    cfg = dict(
        hidden_size=C,
        num_hidden_layers=DEPTH,
        num_attention_heads=HEADS,
        intermediate_size=4 * C,
        image_size=IMG,
        patch_size=16,
        layer_norm_eps=1e-6,
        use_relative_position_bias=True,
        num_labels=CLASSES)
    cfg.update(kwargs)
    return BeitConfig(**cfg)


def timm_beit(shared: bool = False, num_classes: int = CLASSES, **kwargs):
    from timm.models.beit import Beit
    cfg = dict(
        img_size=IMG,
        embed_dim=C,
        depth=DEPTH,
        num_heads=HEADS,
        init_values=0.1,
        use_abs_pos_emb=False,
        use_rel_pos_bias=not shared,
        use_shared_rel_pos_bias=shared,
        num_classes=num_classes,
        global_pool='avg' if num_classes else '')
    cfg.update(kwargs)
    return randomize_(Beit(**cfg))


def unilm_checkpoint(model, pretrain: bool = False) -> dict:
    """What unilm's training scripts save for ``model`` (a timm BEiT)."""
    sd = dict(model.state_dict())
    if model.rel_pos_bias is not None:
        sd['rel_pos_bias.relative_position_index'] = model.rel_pos_bias.relative_position_index
    for i, block in enumerate(model.blocks):
        if block.attn.relative_position_index is not None:
            sd[f'blocks.{i}.attn.relative_position_index'] = block.attn.relative_position_index
    if pretrain:
        gen = torch.Generator().manual_seed(3)
        sd['mask_token'] = torch.randn(1, 1, C, generator=gen)
        sd['lm_head.weight'] = torch.randn(32, C, generator=gen) * 0.2
        sd['lm_head.bias'] = torch.randn(32, generator=gen) * 0.2
    return {'model': sd, 'epoch': 3}


# ---------------------------------------------------------------- unilm, timm
def test_unilm_pretrain_shared_bias(image):
    ref = timm_beit(shared=True, num_classes=0)
    ckpt = unilm_checkpoint(ref, pretrain=True)
    assert detect_format(ckpt) == 'unilm'
    converted = convert_checkpoint(ckpt, target='pretrain')
    shared = ckpt['model']['rel_pos_bias.relative_position_bias_table']
    assert converted['backbone.rel_pos_bias.table'] is shared
    assert 'head.fc.weight' in converted and 'backbone.mask_token' in converted
    model = BEiT(
        arch=ARCH,
        img_size=IMG,
        out_type='raw',
        use_rel_pos_bias=False,
        use_shared_rel_pos_bias=True,
        use_mask_token=True).eval()
    report = load_pretrained(model, ckpt)
    assert any('masked-image-modeling head' in n for n in report.notes)
    with torch.no_grad():
        assert_close(model(image)[0], ref.forward_features(image))


def test_shared_bias_expands_to_per_layer(image):
    ref = timm_beit(shared=True, num_classes=0)
    ckpt = unilm_checkpoint(ref, pretrain=True)
    model = BEiT(arch=ARCH, img_size=IMG, out_type='raw', use_rel_pos_bias=True).eval()
    report = load_pretrained(model, ckpt)  # strict; mask token and lm_head dropped by name
    assert any('into every layer' in n for n in report.notes)
    assert any('mask token' in n for n in report.notes)
    shared = ckpt['model']['rel_pos_bias.relative_position_bias_table']
    for layer in model.layers:
        assert torch.equal(layer.attn.rel_pos_bias.table, shared)
    with torch.no_grad():
        assert_close(model(image)[0], ref.forward_features(image))


def test_pretrained_checkpoint_into_classifier():
    """Fine-tuning from a pretraining checkpoint: every drop and every kept init is named."""
    ckpt = unilm_checkpoint(timm_beit(shared=True, num_classes=0), pretrain=True)
    model = classifier()  # per-layer tables, mean pooling, no final norm
    report = load_pretrained(model, ckpt)
    notes = ' | '.join(report.notes)
    assert 'backbone.mask_token' in notes and 'backbone.norm.weight' in notes
    assert 'masked-image-modeling head' in notes and 'into every layer' in notes
    kept = ' | '.join(report.kept_init)
    assert 'backbone.fc_norm.*' in kept and 'head.*' in kept
    assert not report.missing and not report.unexpected


def test_unilm_finetuned_per_layer(image):
    ref = timm_beit()
    ckpt = unilm_checkpoint(ref)
    assert detect_format(ckpt) == 'unilm'
    model = classifier()
    assert load_pretrained(model, ckpt).fmt == 'unilm'
    with torch.no_grad():
        assert_close(model(image, mode='tensor'), ref(image))


def test_timm_detected_and_converted():
    sd = timm_beit().state_dict()
    assert detect_format(sd) == 'timm'
    converted = convert_checkpoint(sd, target='classifier')
    assert set(converted) == set(classifier().state_dict())


def test_224_checkpoint_in_384_model():
    """A checkpoint loaded into a model for a bigger size == the small model run at that size."""
    ref = timm_beit(use_abs_pos_emb=True)
    ckpt = unilm_checkpoint(ref)
    small = BEiT(arch=ARCH, img_size=IMG, use_abs_pos_emb=True, final_norm=False).eval()
    big = BEiT(arch=ARCH, img_size=96, use_abs_pos_emb=True, final_norm=False).eval()
    load_pretrained(small, ckpt)
    load_pretrained(big, ckpt)  # tables (11x11 -> 11x11 grid + 3) and pos_embed resized on load
    assert big.layers[0].attn.rel_pos_bias.table.shape[0] == (2 * 6 - 1)**2 + 3
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        assert_close(big(x)[0], small(x)[0])


# --------------------------------------------------------------- transformers
@pytest.mark.parametrize('layout', ['folder', 'safetensors', 'bin', 'folder-bin'])
def test_transformers_files(tmp_path, image, layout):
    from safetensors.torch import load_file
    from transformers import BeitForImageClassification
    ref = randomize_(
        BeitForImageClassification(hf_config(id2label={i: f'c{i}'
                                                       for i in range(CLASSES)})))
    folder = tmp_path / 'hf'
    ref.save_pretrained(folder)
    if layout == 'folder':
        source = folder
    elif layout == 'safetensors':
        source = folder / 'model.safetensors'
    else:
        torch.save(load_file(folder / 'model.safetensors'), tmp_path / 'pytorch_model.bin')
        source = tmp_path / 'pytorch_model.bin'
        if layout == 'folder-bin':
            bin_folder = tmp_path / 'hf-bin'
            bin_folder.mkdir()
            (tmp_path / 'pytorch_model.bin').rename(bin_folder / 'pytorch_model.bin')
            (folder / 'config.json').rename(bin_folder / 'config.json')
            source = bin_folder
    model = classifier()
    assert load_pretrained(model, str(source)).fmt == 'transformers'
    with torch.no_grad():
        assert_close(model(image, mode='tensor'), ref(pixel_values=image).logits)


def test_transformers_folder_config(tmp_path):
    from transformers import BeitForImageClassification

    from mmbeit.converters.transformers import mmbeit_model_cfg
    labels = {0: 'cat', 1: 'dog'}
    hf = BeitForImageClassification(hf_config(image_size=96, num_labels=2, id2label=labels))
    hf.save_pretrained(tmp_path)
    with open(tmp_path / 'config.json') as f:
        cfg = mmbeit_model_cfg(json.load(f))
    assert cfg['task'] == 'classification' and cfg['classes'] == ['cat', 'dog']
    assert cfg['backbone']['img_size'] == 96 and cfg['backbone']['out_type'] == 'avg_featmap'
    model = BEiT(**cfg['backbone']).eval()
    load_pretrained(model, str(tmp_path))


def test_transformers_mim(image):
    from transformers import BeitForMaskedImageModeling
    ref = randomize_(
        BeitForMaskedImageModeling(
            hf_config(
                use_relative_position_bias=False,
                use_shared_relative_position_bias=True,
                use_mask_token=True,
                vocab_size=32)))
    converted = convert_checkpoint(ref.state_dict(), target='pretrain')
    model = BEiT(
        arch=ARCH,
        img_size=IMG,
        out_type='raw',
        use_rel_pos_bias=False,
        use_shared_rel_pos_bias=True,
        use_mask_token=True).eval()
    load_pretrained(model, ref.state_dict())
    mask = torch.rand(2, (IMG // 16)**2, generator=torch.Generator().manual_seed(2)) > 0.5
    with torch.no_grad():
        tokens = model(image, mask=mask)[0][:, 1:]
        logits = F.linear(tokens, converted['head.fc.weight'], converted['head.fc.bias'])
        assert_close(logits, ref(pixel_values=image, bool_masked_pos=mask).logits)


def test_transformers_segmentation(tmp_path, image):
    """transformers' out_indices entry i takes hidden_states[i - 1], the output of layer i - 2."""
    from transformers import BeitForSemanticSegmentation

    from mmbeit.converters.transformers import mmbeit_model_cfg
    ref = randomize_(
        BeitForSemanticSegmentation(
            hf_config(num_hidden_layers=6, out_indices=[2, 3, 4, 6], auxiliary_channels=16)))
    ref.save_pretrained(tmp_path)
    with open(tmp_path / 'config.json') as f:
        assert mmbeit_model_cfg(json.load(f))['backbone']['out_indices'] == (0, 1, 2, 4)
    model = segmentor(out_indices=(0, 1, 2, 4), depth=6)
    load_pretrained(model, str(tmp_path))
    with torch.no_grad():
        assert_close(model(image, mode='tensor'), ref(pixel_values=image).logits)


# ------------------------------------------------------------ mmpretrain, mmseg
def test_mmpretrain_classifier(tmp_path, image):
    ref = randomize_(
        build(
            'mmpretrain',
            dict(
                type='ImageClassifier',
                backbone=dict(
                    type='BEiTViT', arch=dict(ARCH), img_size=IMG, out_type='avg_featmap'),
                head=dict(type='LinearClsHead', num_classes=CLASSES, in_channels=C))))
    path = tmp_path / 'mmpretrain.pth'
    torch.save({'state_dict': ref.state_dict(), 'meta': {'epoch': 1}}, path)
    model = classifier()
    assert load_pretrained(model, str(path)).fmt == 'mmpretrain'
    with torch.no_grad():
        assert_close(model(image, mode='tensor'), ref(image, mode='tensor'))
    backbone = BEiT(
        arch=ARCH,
        img_size=IMG,
        final_norm=False,
        init_cfg=dict(type='Pretrained', checkpoint=str(path), prefix='backbone.')).eval()
    backbone.init_weights()
    with torch.no_grad():
        assert_close(backbone(image)[0], ref.backbone(image)[0])


def test_mmpretrain_beit_pretrain_algorithm(image):
    from mmbeit.models.target_generators.dalle_encoder import DALLEEncoder
    ref = randomize_(
        build(
            'mmpretrain',
            dict(
                type='BEiT',
                backbone=dict(type='BEiTPretrainViT', arch=dict(ARCH), img_size=IMG),
                neck=None,
                head=dict(
                    type='BEiTV1Head',
                    embed_dims=C,
                    num_embed=512,
                    loss=dict(type='CrossEntropyLoss')),
                target_generator=dict(type='DALL-E', n_hid=64, n_blk_per_group=1, vocab_size=512))))
    ckpt = {'state_dict': ref.state_dict()}
    assert detect_format(ckpt) == 'mmpretrain'
    converted = convert_checkpoint(ckpt, target='pretrain')
    assert 'head.fc.weight' in converted and 'target_generator.stem.weight' in converted
    backbone = BEiT(
        arch=ARCH,
        img_size=IMG,
        out_type='raw',
        use_rel_pos_bias=False,
        use_shared_rel_pos_bias=True,
        use_mask_token=True).eval()
    load_pretrained(backbone, ckpt, prefix='backbone.')
    tokenizer = DALLEEncoder(n_hid=64, n_blk_per_group=1, vocab_size=512)
    load_pretrained(tokenizer, ckpt, prefix='target_generator.')
    mask = torch.rand(2, IMG // 16, IMG // 16, generator=torch.Generator().manual_seed(2)) > 0.5
    with torch.no_grad():
        assert_close(backbone(image, mask=mask.flatten(1))[0], ref.backbone(image, mask)[0])
        x = torch.rand(1, 3, 16, 16)
        assert_close(tokenizer.logits(x), ref.target_generator(x))


def test_mmseg_segmentor(tmp_path, image):
    ref = randomize_(segmentor('mmseg', out_indices=(0, 1, 2, 3)))
    path = tmp_path / 'mmseg.pth'
    torch.save({'state_dict': ref.state_dict(), 'meta': {}}, path)
    model = segmentor()
    assert load_pretrained(model, str(path)).fmt == 'mmseg'
    with torch.no_grad():
        assert_close(model(image, mode='tensor'), ref(image, mode='tensor'))


def test_mmseg_beit2mmseg_backbone(image):
    """A backbone file made by mmseg's tools/model_converters/beit2mmseg.py."""
    import mmseg
    script = osp.join(
        osp.dirname(mmseg.__file__), '.mim', 'tools', 'model_converters', 'beit2mmseg.py')
    if not osp.isfile(script):
        pytest.skip('mmseg is installed without its tools')
    convert_beit = runpy.run_path(script)['convert_beit']
    ref = timm_beit(num_classes=0)
    ckpt = convert_beit(unilm_checkpoint(ref)['model'])
    assert detect_format(ckpt) == 'mmseg'
    model = BEiT(arch=ARCH, img_size=IMG, out_type='raw').eval()
    load_pretrained(model, ckpt)
    with torch.no_grad():
        assert_close(model(image)[0], ref.forward_features(image))


# ---------------------------------------------------------------------- DALL-E
def test_openai_dall_e_encoder(tmp_path):
    from dall_e import Encoder

    from mmbeit.models.target_generators.dalle_encoder import DALLEEncoder
    ref = randomize_(
        Encoder(n_hid=64, n_blk_per_group=1, vocab_size=512, use_mixed_precision=False))
    assert detect_format(ref.state_dict()) == 'dalle'
    x = torch.rand(1, 3, 16, 16)
    # OpenAI's encoder.pkl pickles the module itself; it is read without running its code
    torch.save(ref, tmp_path / 'encoder.pkl')
    for source in (ref.state_dict(), str(tmp_path / 'encoder.pkl')):
        tokenizer = DALLEEncoder(n_hid=64, n_blk_per_group=1, vocab_size=512)
        assert load_pretrained(tokenizer, source).target == 'target_generator'
        with torch.no_grad():
            assert_close(tokenizer.logits(x), ref(x))


# ---------------------------------------------------------------------- export
def test_export_classifier_to_transformers(tmp_path, monkeypatch, image):
    """Through tools/model_converters/mmbeit_to_transformers.py."""
    from transformers import BeitForImageClassification
    model = randomize_(classifier())
    names = [f'class{i}' for i in range(CLASSES)]
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, tmp_path / 'ours.pth')
    (tmp_path / 'classes.txt').write_text('\n'.join(names))
    script = osp.join(TOOLS, 'mmbeit_to_transformers.py')
    monkeypatch.setattr(sys, 'argv', [
        script,
        str(tmp_path / 'ours.pth'),
        str(tmp_path / 'hf'), '--task', 'classification', '--classes',
        str(tmp_path / 'classes.txt')
    ])
    runpy.run_path(script, run_name='__main__')
    hf = BeitForImageClassification.from_pretrained(tmp_path / 'hf').eval()
    assert hf.config.id2label[1] == 'class1'
    with torch.no_grad():
        assert_close(hf(pixel_values=image).logits, model(image, mode='tensor'))


def test_export_segmentor_to_transformers(tmp_path, image):
    from transformers import BeitForSemanticSegmentation
    model = randomize_(segmentor(out_indices=(0, 1, 2, 3), depth=6))
    save_transformers(model.state_dict(), str(tmp_path), 'segmentation', out_indices=(0, 1, 2, 3))
    with pytest.raises(ValueError, match='last layer'):
        save_transformers(
            model.state_dict(), str(tmp_path), 'segmentation', out_indices=(0, 1, 2, 5))
    hf = BeitForSemanticSegmentation.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert_close(hf(pixel_values=image).logits, model(image, mode='tensor'))


def test_export_mim_to_transformers(tmp_path, image):
    from transformers import BeitForMaskedImageModeling
    backbone = randomize_(
        BEiT(
            arch=ARCH,
            img_size=IMG,
            out_type='raw',
            use_rel_pos_bias=False,
            use_shared_rel_pos_bias=True,
            use_mask_token=True))
    head = randomize_(torch.nn.Linear(C, 32))
    state = {
        **{
            'backbone.' + k: v
            for k, v in backbone.state_dict().items()
        }, 'head.fc.weight': head.weight,
        'head.fc.bias': head.bias
    }
    save_transformers(state, str(tmp_path), 'mim')
    hf = BeitForMaskedImageModeling.from_pretrained(tmp_path).eval()
    mask = torch.rand(2, (IMG // 16)**2, generator=torch.Generator().manual_seed(2)) > 0.5
    with torch.no_grad():
        assert_close(
            hf(pixel_values=image, bool_masked_pos=mask).logits,
            head(backbone(image, mask=mask)[0][:, 1:]))


# ---------------------------------------------------------------------- errors
def test_unknown_format_lists_the_formats():
    with pytest.raises(ValueError, match='cannot tell the format') as e:
        detect_format({'encoder.conv.weight': torch.zeros(1)})
    for fmt in FORMATS:
        assert fmt in str(e.value)


def test_mismatch_names_keys_and_format():
    ckpt = unilm_checkpoint(timm_beit())
    with pytest.raises(CheckpointMismatchError) as e:
        load_pretrained(BEiT(arch=ARCH, img_size=IMG, final_norm=False, use_abs_pos_emb=True), ckpt)
    assert 'unilm format' in str(e.value) and 'missing' in str(e.value) and 'pos_embed' in str(
        e.value)
    with pytest.raises(CheckpointMismatchError) as e:
        load_pretrained(
            BEiT(arch=ARCH, img_size=IMG, final_norm=False, use_rel_pos_bias=False), ckpt)
    assert 'unexpected' in str(e.value) and 'layers.0.attn.rel_pos_bias.table' in str(e.value)
    with pytest.raises(
            CheckpointMismatchError,
            match=r'(?s)unilm format\) does not fit BEiT .*shapes differ: '
            r'layers\.0\.mlp\.fc1\.bias: checkpoint \[256\] vs model \[64\]'):
        load_pretrained(
            BEiT(arch=dict(ARCH, feedforward_channels=C), img_size=IMG, final_norm=False), ckpt)


# ------------------------------------------------------------- runner and CLI
def test_runner_loads_any_format(tmp_path, image):
    """load_from / tools/test.py: a foreign checkpoint is converted, even one whose heads
    and neck already have the model's names (mmseg's); our own takes mmengine's path."""
    from mmbeit.engine.runner import BEiTRunner
    ref = randomize_(segmentor('mmseg'))
    path = tmp_path / 'mmseg.pth'
    torch.save({'state_dict': ref.state_dict(), 'meta': {}}, path)
    model = segmentor()
    BEiTRunner(model=model, work_dir=str(tmp_path / 'work')).load_checkpoint(str(path))
    with torch.no_grad():
        assert_close(model(image, mode='tensor'), ref(image, mode='tensor'))
    own = tmp_path / 'own.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, own)
    other = randomize_(segmentor(), seed=5)
    BEiTRunner(model=other, work_dir=str(tmp_path / 'work2')).load_checkpoint(str(own))
    with torch.no_grad():
        assert_close(other(image, mode='tensor'), ref(image, mode='tensor'))


def test_convert_cli(tmp_path, monkeypatch, image):
    ref = timm_beit()
    src, dst = tmp_path / 'timm.pth', tmp_path / 'out' / 'mmbeit.pth'
    torch.save(ref.state_dict(), src)
    script = osp.join(TOOLS, 'convert_to_mmbeit.py')
    monkeypatch.setattr(sys, 'argv', [script, str(src), str(dst)])
    runpy.run_path(script, run_name='__main__')
    saved = torch.load(dst, weights_only=True)
    assert saved['meta']['converted_from'] == 'timm' and saved['meta']['target'] == 'classifier'
    assert detect_format(saved) == 'mmbeit'
    model = classifier()
    model.load_state_dict(saved['state_dict'])  # plain strict torch load: our own keys
    with torch.no_grad():
        assert_close(model(image, mode='tensor'), ref(image))


@pytest.mark.parametrize('ext', ['.pth', '.safetensors'])
def test_convert_file_onto_itself_keeps_the_weights(tmp_path, image, ext):
    """The source is mapped, not read: writing the destination in place would truncate the
    pages being saved (SIGBUS, or zeros); it is written beside and moved into place."""
    from safetensors.torch import save_file

    from mmbeit.converters import convert_file
    ref = timm_beit()
    path = str(tmp_path / f'weights{ext}')
    if ext == '.safetensors':
        save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, path)
    else:
        torch.save(ref.state_dict(), path)
    convert_file(path, path)
    assert sorted(os.listdir(tmp_path)) == [f'weights{ext}']  # no temporary file left
    model = classifier()
    if ext == '.safetensors':
        from safetensors.torch import load_file
        converted = load_file(path)
    else:
        converted = torch.load(path, weights_only=True)['state_dict']
    model.load_state_dict(converted)
    with torch.no_grad():
        assert_close(model(image, mode='tensor'), ref(image))
