"""Our BEiT computes what every reference implementation computes (fp32, max abs diff <= 1e-4).

Each reference model is built by its own library with small matching
hyperparameters and random weights (every parameter, so relative position
tables, layer scales and norms all matter), converted with
:mod:`mmbeit.converters`, loaded strictly, and run on the same input.
"""
import pytest
import torch

import mmbeit  # noqa: F401
from mmbeit.converters import load_pretrained
from mmbeit.models.backbones.beit import BEiT
from helpers import TOL, assert_close, randomize_  # tests/helpers.py: fp32 <= 1e-4, non-trivial

C, DEPTH, HEADS, IMG = 64, 4, 4, 64
ARCH = dict(embed_dims=C, num_layers=DEPTH, num_heads=HEADS, feedforward_channels=4 * C)


def classifier(**backbone) -> torch.nn.Module:
    """mmpretrain's ImageClassifier on our BEiT (built with mmpretrain's default scope)."""
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS
    cfg = dict(type='mmbeit.BEiT', arch=ARCH, img_size=IMG)
    cfg.update(backbone)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(
            dict(
                type='ImageClassifier',
                backbone=cfg,
                head=dict(type='LinearClsHead', num_classes=10, in_channels=C)))
    model.eval()
    return model


def ours(**kwargs) -> BEiT:
    cfg = dict(arch=ARCH, img_size=IMG)
    cfg.update(kwargs)
    return BEiT(**cfg).eval()


@pytest.fixture
def image():
    return torch.randn(2, 3, IMG, IMG, generator=torch.Generator().manual_seed(1))


# ----------------------------------------------------------------- mmpretrain
@pytest.mark.parametrize('out_type,final_norm', [('avg_featmap', False), ('cls_token', True)])
def test_mmpretrain_beitvit(image, out_type, final_norm):
    from mmpretrain.models import BEiTViT
    ref = randomize_(
        BEiTViT(
            arch=dict(ARCH),
            img_size=IMG,
            out_type=out_type,
            final_norm=final_norm,
            use_rel_pos_bias=True))
    model = ours(out_type=out_type, final_norm=final_norm)
    report = load_pretrained(model, ref.state_dict())
    assert report.fmt == 'mmpretrain'
    with torch.no_grad():
        assert_close(model(image)[0], ref(image)[0])


def test_mmpretrain_pretrain_vit_with_mask(image):
    """BEiTPretrainViT: shared bias, mask token, final norm, all tokens."""
    from mmpretrain.models.selfsup.beit import BEiTPretrainViT
    ref = randomize_(BEiTPretrainViT(arch=dict(ARCH), img_size=IMG))
    model = ours(
        out_type='raw', use_rel_pos_bias=False, use_shared_rel_pos_bias=True, use_mask_token=True)
    load_pretrained(model, ref.state_dict())
    mask = torch.rand(2, IMG // 16, IMG // 16, generator=torch.Generator().manual_seed(2)) > 0.5
    with torch.no_grad():
        assert_close(model(image, mask=mask.flatten(1))[0], ref(image, mask=mask)[0])


# ---------------------------------------------------------------------- mmseg
def test_mmseg_beit_multiscale(image):
    from mmseg.models.backbones import BEiT as MMSegBEiT
    out_indices = (1, 3, 5, 7)  # as (3, 5, 7, 11) in the 12-layer model
    ref = randomize_(
        MMSegBEiT(
            img_size=IMG,
            embed_dims=C,
            num_layers=8,
            num_heads=HEADS,
            out_indices=out_indices,
            norm_cfg=dict(type='LN', eps=1e-6)))
    model = ours(
        arch=dict(ARCH, num_layers=8),
        out_type='featmap',
        out_indices=out_indices,
        final_norm=False)
    load_pretrained(model, ref.state_dict())
    with torch.no_grad():
        got, want = model(image), ref(image)
    assert len(got) == len(want) == 4
    for a, b in zip(got, want):
        assert_close(a, b)


# --------------------------------------------------------------- transformers
def _hf_config(**kwargs):
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
        use_mean_pooling=True,
        num_labels=10)
    cfg.update(kwargs)
    return BeitConfig(**cfg)


def test_transformers_beit_model_pooler(image):
    from transformers import BeitModel
    ref = randomize_(BeitModel(_hf_config()))
    model = ours(out_type='avg_featmap', final_norm=False)
    assert load_pretrained(model, ref.state_dict()).fmt == 'transformers'
    with torch.no_grad():
        assert_close(model(image)[0], ref(pixel_values=image).pooler_output)


@pytest.mark.parametrize('mean_pooling', [True, False])
def test_transformers_image_classification_logits(image, mean_pooling):
    from transformers import BeitForImageClassification
    ref = randomize_(BeitForImageClassification(_hf_config(use_mean_pooling=mean_pooling)))
    model = classifier(
        final_norm=not mean_pooling, out_type='avg_featmap' if mean_pooling else 'cls_token')
    load_pretrained(model, ref.state_dict())
    with torch.no_grad():
        assert_close(model(image, mode='tensor'), ref(pixel_values=image).logits)


def test_transformers_other_input_size(image):
    """A 64-pixel model run at 96 pixels with ``rel_pos_resize='bilinear'`` == transformers
    with interpolate_pos_encoding (the default, unilm's resize, differs)."""
    from transformers import BeitModel
    ref = randomize_(BeitModel(_hf_config(use_absolute_position_embeddings=True)))
    model = ours(
        out_type='avg_featmap', final_norm=False, use_abs_pos_emb=True, rel_pos_resize='bilinear')
    load_pretrained(model, ref.state_dict())
    unilm = ours(out_type='avg_featmap', final_norm=False, use_abs_pos_emb=True)
    load_pretrained(unilm, ref.state_dict())
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        want = ref(pixel_values=x, interpolate_pos_encoding=True).pooler_output
        assert_close(model(x)[0], want)
        assert (unilm(x)[0] - want).abs().max() > 10 * TOL


# ----------------------------------------------------------------------- timm
def test_timm_beit_logits(image):
    import timm
    ref = randomize_(
        timm.create_model(
            'beit_base_patch16_224',
            pretrained=False,
            img_size=IMG,
            embed_dim=C,
            depth=DEPTH,
            num_heads=HEADS,
            num_classes=10))
    model = classifier(final_norm=False)
    assert load_pretrained(model, ref.state_dict()).fmt == 'timm'
    with torch.no_grad():
        assert_close(model(image, mode='tensor'), ref(image))
