"""BEiT pretraining against mmpretrain's BEiT algorithm and transformers'
BeitForMaskedImageModeling, on the same (randomly created) weights."""
import pytest
import torch
from mmengine.logging import MessageHub

from mmbeit.converters import convert_checkpoint
from mmbeit.engine.non_finite_check_hook import NonFiniteLossError
from mmbeit.registry import MODELS

EMBED, LAYERS, HEADS, FFN, VOCAB = 64, 2, 4, 128, 512
IMG, PATCH = 64, 16  # 4x4 patches; the tokenizer view is 32x32: 4x4 tokens
TOKENIZER = dict(type='DALLEEncoder', n_hid=64, n_blk_per_group=1, vocab_size=VOCAB)


def ours(**tokenizer) -> torch.nn.Module:
    model = MODELS.build(
        dict(
            type='BEiTPretrain',
            backbone=dict(
                type='BEiT',
                arch=dict(
                    embed_dims=EMBED, num_layers=LAYERS, num_heads=HEADS, feedforward_channels=FFN),
                img_size=IMG,
                patch_size=PATCH,
                out_type='raw',
                use_mask_token=True,
                use_shared_rel_pos_bias=True,
                use_rel_pos_bias=False,
                layer_scale_init_value=0.1),
            head=dict(type='BEiTMIMHead', embed_dims=EMBED, num_embed=VOCAB),
            target_generator=dict(TOKENIZER, **tokenizer)))
    return model.eval()


def perturb(model: torch.nn.Module, seed: int = 0) -> None:
    """Move every parameter off its init (layer scales, norms, biases, mask
    token), so that no part of the computation can go untested."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if 'target_generator' not in name:
                p.add_(torch.randn(p.shape, generator=g) * 0.05)


def batch(seed: int = 0, n: int = 2):
    from mmpretrain.structures import DataSample
    g = torch.Generator().manual_seed(seed)
    img = torch.randn(n, 3, IMG, IMG, generator=g)
    tokenizer_img = torch.rand(n, 3, IMG // 2, IMG // 2, generator=g) * 0.8 + .1
    masks = torch.rand(n, IMG // PATCH, IMG // PATCH, generator=g) < 0.5
    masks[:, 0, 0] = True  # at least one masked patch per image
    return [img, tokenizer_img], [DataSample().set_mask(m) for m in masks]


def test_loss_equals_mmpretrain():
    from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS
    torch.manual_seed(0)
    ref = MMPRETRAIN_MODELS.build(
        dict(
            type='BEiT',
            backbone=dict(
                type='BEiTPretrainViT',
                arch=dict(
                    embed_dims=EMBED, num_layers=LAYERS, num_heads=HEADS, feedforward_channels=FFN),
                img_size=IMG,
                patch_size=PATCH,
                final_norm=True,
                out_type='raw',
                layer_scale_init_value=0.1),
            neck=None,
            head=dict(
                type='BEiTV1Head',
                embed_dims=EMBED,
                num_embed=VOCAB,
                loss=dict(type='CrossEntropyLoss')),
            target_generator=dict(type='DALL-E', n_hid=64, n_blk_per_group=1,
                                  vocab_size=VOCAB))).eval()
    ref.init_weights()
    perturb(ref)

    model = ours()
    state_dict = convert_checkpoint(ref.state_dict(), target='pretrain')
    model.load_state_dict(state_dict, strict=True)

    inputs, data_samples = batch()
    expected = ref.loss(inputs, data_samples)['loss']
    losses = model.loss(inputs, data_samples)
    assert abs(losses['loss'].item() - expected.item()) <= 1e-4
    assert 0 <= losses['accuracy'].item() <= 100
    # the same tokens: mmpretrain's head takes the argmax of its logits
    ref_tokens = ref.target_generator(inputs[1]).argmax(1).flatten(1)
    assert torch.equal(model.target_generator(inputs[1]), ref_tokens)
    # the loss depends on the mask
    _, other_samples = batch(seed=1)
    assert abs(model.loss(inputs, other_samples)['loss'].item() - expected.item()) > 1e-3


def test_mim_logits_equal_transformers():
    from transformers import BeitConfig, BeitForMaskedImageModeling
    config = BeitConfig(
        vocab_size=VOCAB,
        hidden_size=EMBED,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        intermediate_size=FFN,
        image_size=IMG,
        patch_size=PATCH,
        use_mask_token=True,
        use_shared_relative_position_bias=True,
        use_relative_position_bias=False,
        use_absolute_position_embeddings=False,
        layer_scale_init_value=0.1,
        layer_norm_eps=1e-6,
        drop_path_rate=0.0,
        use_mean_pooling=True)
    torch.manual_seed(0)
    ref = BeitForMaskedImageModeling(config).eval()
    perturb(ref)

    model = ours()
    state_dict = convert_checkpoint(ref.state_dict(), target='pretrain')
    result = model.load_state_dict(state_dict, strict=False)
    assert not result.unexpected_keys
    assert all(k.startswith('target_generator.')
               for k in result.missing_keys)  # transformers has no tokenizer

    (img, _), data_samples = batch()
    mask = torch.stack([s.mask for s in data_samples]).flatten(1)
    with torch.no_grad():
        expected = ref(pixel_values=img, bool_masked_pos=mask).logits
        logits = model.mim_logits(img, mask)
    assert logits.shape == expected.shape == (2, 16, VOCAB)
    assert (logits - expected).abs().max().item() <= 1e-4


def test_non_finite_loss_names_the_iteration():
    model = ours(init_seed=0)
    with torch.no_grad():
        model.head.fc.weight[0, 0] = float('nan')
    hub = MessageHub.get_instance('test_beit_pretrain_nan')
    hub.update_info('iter', 41)  # RuntimeInfoHook: iterations done so far
    inputs, data_samples = batch()
    with pytest.raises(NonFiniteLossError, match='at iteration 42'):
        model.loss(inputs, data_samples)


def test_train_step_through_the_preprocessor():
    """uint8 two-view batch -> TwoNormDataPreprocessor -> loss -> gradients
    for every trainable parameter and none for the tokenizer."""
    from mmengine.optim import OptimWrapper
    from mmpretrain.structures import DataSample
    model = ours(init_seed=0)
    model.train()
    assert not model.target_generator.training
    g = torch.Generator().manual_seed(0)
    data = dict(
        inputs=[
            torch.randint(0, 256, (2, 3, IMG, IMG), generator=g, dtype=torch.uint8),
            torch.randint(0, 256, (2, 3, IMG // 2, IMG // 2), generator=g, dtype=torch.uint8)
        ],
        data_samples=[DataSample().set_mask(torch.rand(4, 4, generator=g) < 0.5) for _ in range(2)])
    data['data_samples'][0].mask[0, 0] = True
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
    log_vars = model.train_step(data, optim)
    assert set(log_vars) == {'loss', 'accuracy'}
    after = model.state_dict()
    for name, p in model.named_parameters():
        changed = not torch.equal(before[name], after[name])
        if name.startswith('target_generator.'):
            assert not p.requires_grad and not changed, name
        else:
            assert changed, f'{name} got no gradient'


def test_extract_feat_and_modes():
    model = ours(init_seed=0)
    (img, tokenizer_img), _ = batch()
    feats = model(img, mode='tensor')
    assert feats[0].shape == (2, 17, EMBED)
    assert torch.equal(model.extract_feat([img, tokenizer_img])[0], feats[0])
    with pytest.raises(RuntimeError, match="'loss' or 'tensor'"):
        model(img, mode='predict')


def test_config_errors():
    cfg = dict(type='BEiT', arch='tiny', img_size=IMG, out_type='raw')
    with pytest.raises(ValueError, match='use_mask_token=True'):
        MODELS.build(
            dict(
                type='BEiTPretrain',
                backbone=cfg,
                head=dict(type='BEiTMIMHead'),
                target_generator=TOKENIZER))
    with pytest.raises(ValueError, match="out_type must be 'raw'"):
        MODELS.build(
            dict(
                type='BEiTPretrain',
                backbone=dict(cfg, use_mask_token=True, out_type='cls_token'),
                head=dict(type='BEiTMIMHead'),
                target_generator=TOKENIZER))
    for head, match in ((dict(embed_dims=32), 'backbone is 64 wide'), (dict(num_embed=8192),
                                                                       'tokenizer has 512 tokens')):
        with pytest.raises(ValueError, match=match):
            MODELS.build(
                dict(
                    type='BEiTPretrain',
                    backbone=dict(cfg, use_mask_token=True),
                    head=dict(type='BEiTMIMHead', **head),
                    target_generator=TOKENIZER))
    model = MODELS.build(
        dict(
            type='BEiTPretrain',
            backbone=dict(cfg, use_mask_token=True),
            head=dict(type='BEiTMIMHead'),
            target_generator=TOKENIZER))
    assert model.head.fc.weight.shape == (VOCAB, 64)
    model = ours(init_seed=0)
    (img, _), data_samples = batch()
    wrong_view = torch.rand(2, 3, IMG, IMG)  # 8x8 tokens for 4x4 patches
    with pytest.raises(ValueError, match='must agree on'):
        model.loss([img, wrong_view], data_samples)
