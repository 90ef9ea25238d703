"""Fine-tuned BEiT v2 classifiers of every source: loaded completely, the source's outputs.

* timm's ``beitv2_*`` (built by timm itself from its registered variant, shrunk);
* microsoft/unilm's ``beitv2_*_ft*.pth``: ``beit2/modeling_finetune.py`` keeps v1's module
  names (``blocks.{i}.attn.qkv.weight``, ``q_bias``/``v_bias``, per-layer
  ``attn.relative_position_bias_table`` and the ``relative_position_index`` buffer it saves,
  ``gamma_1``/``gamma_2``, ``fc_norm``, ``head``) in ``{'model': ...}``. unilm's code is not a
  package: the file is timm's weights under those published names (timm keeps them), plus the
  buffers and wrapper only unilm's scripts save;
* mmpretrain's fine-tuned v2 (``BEiTViT`` in an ``ImageClassifier``, as its
  ``configs/beitv2/benchmarks`` build it).

Every parameter is randomized. BEiT v2 normalises with ImageNet's mean/std (timm's
``pretrained_cfg``), unlike v1's 0.5: the doors that preprocess images are checked with them.
"""
import pytest
import timm
import torch

import mmbeit  # noqa: F401
from mmbeit.converters import detect_format, load_pretrained
from helpers import assert_close, randomize_  # tests/helpers.py

C, DEPTH, HEADS, IMG, CLASSES = 32, 2, 2, 32, 5
ARCH = dict(embed_dims=C, num_layers=DEPTH, num_heads=HEADS, feedforward_channels=4 * C)


def timm_beitv2():
    """timm's own beitv2_base_patch16_224 variant (its v2 settings), shrunk."""
    model = timm.create_model(
        'beitv2_base_patch16_224',
        pretrained=False,
        img_size=IMG,
        embed_dim=C,
        depth=DEPTH,
        num_heads=HEADS,
        num_classes=CLASSES)
    return randomize_(model, seed=11)


def mmpretrain_beitv2():
    """mmpretrain's fine-tuned BEiT v2 classifier (configs/beitv2/benchmarks), shrunk."""
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS
    cfg = dict(
        type='ImageClassifier',
        backbone=dict(
            type='BEiTViT',
            arch=ARCH,
            img_size=IMG,
            patch_size=16,
            out_type='avg_featmap',
            use_abs_pos_emb=False,
            use_rel_pos_bias=True,
            use_shared_rel_pos_bias=False),
        neck=None,
        head=dict(type='LinearClsHead', num_classes=CLASSES, in_channels=C))
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return randomize_(MODELS.build(cfg), seed=12)


def mmbeit_cfg(mean, std) -> dict:
    """An mmbeit classifier for BEiT v2 fine-tuned weights, normalising with ``mean``/``std``."""
    return dict(
        type='mmbeit.BEiTClassifier',
        backbone=dict(
            type='mmbeit.BEiT',
            arch=ARCH,
            img_size=IMG,
            patch_size=16,
            out_type='avg_featmap',
            use_abs_pos_emb=False,
            use_rel_pos_bias=True,
            norm_eps=1e-6),
        neck=None,
        head=dict(type='LinearClsHead', num_classes=CLASSES, in_channels=C),
        data_preprocessor=dict(num_classes=CLASSES, mean=mean, std=std, to_rgb=True))


def build(cfg: dict) -> torch.nn.Module:
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return MODELS.build(cfg).eval()


def imagenet_mean_std():
    """BEiT v2's normalisation as timm publishes it, in mmpretrain's 0-255 units."""
    cfg = timm.create_model('beitv2_base_patch16_224', pretrained=False).pretrained_cfg
    mean, std = [255 * m for m in cfg['mean']], [255 * s for s in cfg['std']]
    assert max(abs(m - e) for m, e in zip(mean, (123.675, 116.28, 103.53))) < 1e-3  # ImageNet's
    return mean, std


@pytest.fixture(scope='module')
def sources(tmp_path_factory):
    """format -> (checkpoint file, the source model's logits of the normalised image)."""
    work = tmp_path_factory.mktemp('beitv2_ft')
    x = torch.randn(2, 3, IMG, IMG, generator=torch.Generator().manual_seed(3))
    out = {}
    with torch.no_grad():
        ref = timm_beitv2()
        out['timm'] = (str(work / 'beitv2_timm.pth'), ref, ref(x))
        torch.save(ref.state_dict(), out['timm'][0])
        unilm = dict(ref.state_dict())
        for i, block in enumerate(ref.blocks):  # the buffer unilm's modeling_finetune saves
            unilm[f'blocks.{i}.attn.relative_position_index'] = block.attn.relative_position_index
        out['unilm'] = (str(work / 'beitv2_base_patch16_224_pt1k_ft1k.pth'), ref, ref(x))
        torch.save({'model': unilm, 'epoch': 99, 'args': None}, out['unilm'][0])
        mm = mmpretrain_beitv2()
        out['mmpretrain'] = (str(work / 'beitv2_mmpretrain.pth'), mm, mm(x, mode='tensor'))
        torch.save({'state_dict': mm.state_dict(), 'meta': {}}, out['mmpretrain'][0])
    return x, out


@pytest.mark.parametrize('fmt', ['timm', 'unilm', 'mmpretrain'])
def test_loads_completely_with_the_source_outputs(fmt, sources):
    from mmengine.runner import load_checkpoint
    x, out = sources
    path, _, expected = out[fmt]
    assert detect_format(torch.load(path, weights_only=True)) == fmt
    mean, std = imagenet_mean_std()
    # the library's door (strictness never matters: the hook fits completely or raises)
    model = build(mmbeit_cfg(mean, std))
    load_checkpoint(model, path, map_location='cpu', strict=False)
    with torch.no_grad():
        assert_close(model(x, mode='tensor'), expected)
    # torch's own, with the file's tensors (whatever wrapper the source writes)
    model = build(mmbeit_cfg(mean, std))
    loaded = torch.load(path, map_location='cpu', weights_only=True)
    model.load_state_dict(loaded.get('model', loaded.get('state_dict', loaded)))
    with torch.no_grad():
        assert_close(model(x, mode='tensor'), expected)
    # and the pipeline's own, with its report
    model = build(mmbeit_cfg(mean, std))
    report = load_pretrained(model, path)
    assert report.fmt == fmt and not report.kept_init and not report.missing
    with torch.no_grad():
        assert_close(model(x, mode='tensor'), expected)


@pytest.mark.parametrize('fmt', ['timm', 'unilm', 'mmpretrain'])
def test_image_file_through_the_inferencer_with_imagenet_mean_std(fmt, sources, tmp_path):
    """mmpretrain's ImageClassificationInferencer on an image file (a config with ImageNet
    mean/std and a test pipeline): the source model's scores of the same pixels."""
    import mmcv
    from mmengine.config import Config
    from mmpretrain import ImageClassificationInferencer
    _, out = sources
    path, ref, _ = out[fmt]
    mean, std = imagenet_mean_std()
    pipeline = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]
    cfg = Config(
        dict(
            model=mmbeit_cfg(mean, std),
            default_scope='mmpretrain',
            test_dataloader=dict(dataset=dict(type='CustomDataset', pipeline=pipeline))))
    rgb = torch.randint(0, 256, (IMG, IMG, 3), generator=torch.Generator().manual_seed(5))
    image = str(tmp_path / 'image.png')
    mmcv.imwrite(rgb.numpy().astype('uint8')[..., ::-1], image)  # mmcv writes BGR arrays
    scores = ImageClassificationInferencer(cfg, pretrained=path, device='cpu')(image)[0]
    x = (rgb.permute(2, 0, 1)[None].float() -
         torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
    with torch.no_grad():
        logits = ref(x) if fmt != 'mmpretrain' else ref(x, mode='tensor')
    assert (torch.as_tensor(scores['pred_scores']) - logits.softmax(-1)[0]).abs().max() <= 1e-5
    assert scores['pred_label'] == int(logits.argmax())


@pytest.mark.parametrize('fmt', ['timm', 'unilm', 'mmpretrain'])
def test_images_through_mmpretrain_get_model_with_imagenet_mean_std(fmt, sources):
    """Pixels through the data preprocessor (ImageNet mean/std, BGR -> RGB), as the
    inferencers run it: the source model's logits of the same normalised image."""
    from mmpretrain import get_model
    _, out = sources
    path, ref, _ = out[fmt]
    mean, std = imagenet_mean_std()
    from mmengine.config import Config
    model = get_model(
        Config(dict(model=mmbeit_cfg(mean, std))), pretrained=path, device='cpu').eval()
    rgb = torch.randint(0, 256, (2, 3, IMG, IMG), generator=torch.Generator().manual_seed(4))
    data = model.data_preprocessor({'inputs': list(rgb.flip(1).to(torch.uint8))}, False)
    normalised = (rgb.float() - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None,
                                                                                       None]
    with torch.no_grad():
        ours = model(data['inputs'], mode='tensor')
        theirs = ref(normalised) if fmt != 'mmpretrain' else ref(normalised, mode='tensor')
    assert_close(ours, theirs)
