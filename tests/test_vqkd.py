"""mmbeit.VQKD (BEiT v2's tokenizer) against mmpretrain's VQKD.

mmpretrain builds the reference with every parameter, buffer and codebook entry moved off
its init; its state dict, converted by mmbeit's converters, loads strictly into ours; the
quantized features agree to 1e-4 and the token ids are identical.
"""
import pytest
import torch

from mmbeit.models import VQKD
from helpers import TOL, assert_close, randomize_

TINY_ENC = dict(
    arch=dict(embed_dims=64, num_layers=2, num_heads=4, feedforward_channels=128),
    img_size=32,
    patch_size=8)


def _mmpretrain_vqkd(arch, img_size, patch_size, num_embed, embed_dims, seed=0):
    from mmpretrain.models.selfsup import beit as mmpretrain_beit
    encoder_config = dict(
        arch=arch,
        img_size=img_size,
        patch_size=patch_size,
        out_indices=-1,
        drop_rate=0.,
        drop_path_rate=0.,
        norm_cfg=dict(type='LN', eps=1e-6),
        final_norm=True,
        out_type='featmap',
        with_cls_token=True,
        frozen_stages=-1,
        use_abs_pos_emb=True,
        use_rel_pos_bias=False,
        use_shared_rel_pos_bias=False,
        layer_scale_init_value=0.,
        interpolate_mode='bicubic',
        patch_cfg=dict(),
        layer_cfgs=dict(),
        init_cfg=None)
    ref = mmpretrain_beit.VQKD(encoder_config, num_embed=num_embed, embed_dims=embed_dims)
    randomize_(ref, seed)
    with torch.no_grad():  # a trained codebook: unit codes, initialised
        gen = torch.Generator().manual_seed(seed + 1)
        codes = torch.randn(num_embed, embed_dims, generator=gen)
        ref.quantize.embedding.weight.copy_(torch.nn.functional.normalize(codes, dim=-1))
        ref.quantize.embedding.initted.fill_(1.)
    return ref.eval()


def _ours(ref, encoder, num_embed, embed_dims):
    from mmbeit.converters.vqkd import convert_tokenizer
    ours = VQKD(encoder=encoder, num_embed=num_embed, embed_dims=embed_dims)
    ours.load_state_dict(convert_tokenizer(ref.state_dict()), strict=True)
    return ours


def _check(ref, ours, img):
    with torch.no_grad():
        q_ref, ids_ref, loss_ref = ref.encode(img)
        q, ids, loss = ours.encode(img)
        tokens_ref = ref(img)
    tokens = ours(img)
    assert_close(q, q_ref, TOL)
    assert torch.equal(ids, ids_ref)
    assert torch.equal(tokens, tokens_ref)
    assert tokens.dtype == torch.long and tokens.shape == tokens_ref.shape
    assert abs(loss.item() - loss_ref.item()) <= TOL
    # the ids are not trivially constant: the random codebook splits the patches
    assert tokens.unique().numel() > 1


def test_tiny_vqkd_matches_mmpretrain():
    arch = dict(embed_dims=64, num_layers=2, num_heads=4, feedforward_channels=128)
    ref = _mmpretrain_vqkd(arch, 32, 8, num_embed=64, embed_dims=8)
    ours = _ours(ref, dict(TINY_ENC), 64, 8)
    img = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3)) * 2 - 1
    _check(ref, ours, img)
    assert ours.vocab_size == 64


def test_base_vqkd_matches_mmpretrain():
    """The published shape: ViT-B/16 encoder, 8192 x 32 codebook, 224x224 -> 196 tokens."""
    ref = _mmpretrain_vqkd('base', 224, 16, num_embed=8192, embed_dims=32, seed=1)
    ours = _ours(ref, None, 8192, 32)
    img = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(4)) * 2 - 1
    _check(ref, ours, img)
    assert ours(img).shape == (1, 196)


def test_frozen_tokenizer_has_no_gradient_and_stays_in_eval():
    tok = VQKD(encoder=dict(TINY_ENC), num_embed=16, embed_dims=8, kmeans_init=False)
    assert not any(p.requires_grad for p in tok.parameters())
    tok.train()
    assert not tok.training and not tok.quantize.training
    before = tok.quantize.embedding.weight.clone()
    tok(torch.rand(2, 3, 32, 32) * 2 - 1)
    assert torch.equal(before, tok.quantize.embedding.weight)  # no EMA update in a tokenizer


def test_frozen_tokenizer_refuses_an_uninitialised_codebook():
    tok = VQKD(encoder=dict(TINY_ENC), num_embed=16, embed_dims=8)  # k-means init pending
    with pytest.raises(RuntimeError, match='codebook is not initialised'):
        tok(torch.zeros(1, 3, 32, 32))


def test_pending_checkpoint_blocks_forward():
    tok = VQKD(
        encoder=dict(TINY_ENC),
        num_embed=16,
        embed_dims=8,
        kmeans_init=False,
        init_cfg=dict(type='Pretrained', checkpoint='missing.pth'))
    with pytest.raises(RuntimeError, match='missing.pth'):
        tok(torch.zeros(1, 3, 32, 32))


@pytest.mark.parametrize('shape, match', [((1, 1, 32, 32), r'\[B, 3, H, W\]'),
                                          ((1, 3, 30, 32), 'multiple of the patch size')])
def test_bad_input_is_named(shape, match):
    tok = VQKD(encoder=dict(TINY_ENC), num_embed=16, embed_dims=8, kmeans_init=False)
    with pytest.raises(ValueError, match=match):
        tok(torch.zeros(shape))


def test_bad_config_is_named():
    with pytest.raises(ValueError, match="out_type must be 'raw'"):
        VQKD(encoder=dict(TINY_ENC, out_type='featmap'))
    with pytest.raises(ValueError, match='init_cfg'):
        VQKD(encoder=dict(TINY_ENC), init_cfg=dict(type='Normal'))
