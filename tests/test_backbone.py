"""Behaviour of the BEiT backbone: sizes, loading hooks, checkpointing, gradients, errors."""
import pytest
import torch

from mmbeit.layers.pos_resize import resize_abs_pos_embed, resize_rel_pos_table
from mmbeit.models.backbones.beit import ARCH_ZOO, BEiT, resolve_arch


def tiny(**kwargs) -> BEiT:
    torch.manual_seed(0)
    cfg = dict(arch='tiny', img_size=64, out_type='avg_featmap')
    cfg.update(kwargs)
    model = BEiT(**cfg)
    # give every table, gamma and token non-trivial values so the checks can fail
    with torch.no_grad():
        for name, p in model.named_parameters():
            if 'table' in name or name.endswith(('cls_token', 'pos_embed')):
                p.normal_(0, 0.5)
    return model.eval()


def test_archs_and_aliases():
    assert resolve_arch('b') == ARCH_ZOO['base']
    assert resolve_arch('L')['num_layers'] == 24
    with pytest.raises(ValueError, match='unknown BEiT arch'):
        resolve_arch('huge')
    with pytest.raises(ValueError, match='missing keys'):
        resolve_arch(dict(embed_dims=8))
    with pytest.raises(ValueError, match='out_type'):
        BEiT(arch='t', out_type='pooled')


@pytest.mark.parametrize('out_type,shape', [('raw', (2, 17, 64)), ('cls_token', (2, 64)),
                                            ('featmap', (2, 64, 4, 4)), ('avg_featmap', (2, 64))])
def test_out_types(out_type, shape):
    out = tiny(out_type=out_type)(torch.randn(2, 3, 64, 64))
    assert len(out) == 1 and out[0].shape == shape


def test_out_indices_negative():
    model = tiny(out_type='featmap', out_indices=(0, -1), final_norm=False)
    outs = model(torch.randn(1, 3, 64, 64))
    assert model.out_indices == [0, 3] and len(outs) == 2
    with pytest.raises(ValueError, match='out of range'):
        BEiT(arch='t', out_indices=(4, ))


@pytest.mark.parametrize('use_abs', [False, True])
@pytest.mark.parametrize('size', [(96, 96), (64, 112)])
def test_runtime_size_equals_model_built_for_size(use_abs, size):
    """A 64-pixel model run at another size == a model built for that size from its checkpoint."""
    src = tiny(use_abs_pos_emb=use_abs, use_shared_rel_pos_bias=True, use_rel_pos_bias=True)
    x = torch.randn(2, 3, *size)
    dst = BEiT(
        arch='tiny',
        img_size=size,
        use_abs_pos_emb=use_abs,
        use_shared_rel_pos_bias=True,
        use_rel_pos_bias=True).eval()
    if size[0] != size[1]:
        # square checkpoints only are resized on load; fit the non-square tables by hand
        sd = {k: v for k, v in src.state_dict().items()}
        hw = (size[0] // 16, size[1] // 16)
        for k in list(sd):
            if k.endswith('table'):
                sd[k] = resize_rel_pos_table(sd[k], (4, 4), hw)
            if k == 'pos_embed':
                sd[k] = resize_abs_pos_embed(sd[k], (4, 4), hw)
        dst.load_state_dict(sd)
    else:
        dst.load_state_dict(src.state_dict())
    with torch.no_grad():
        a, b = src(x)[0], dst(x)[0]
    assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()


def test_runtime_size_changes_output_and_is_cached():
    model = tiny()
    with torch.no_grad():
        model(torch.randn(1, 3, 96, 96))
        model(torch.randn(1, 3, 96, 96))
    caches = [layer.attn.rel_pos_bias._bias_cache for layer in model.layers]
    assert all(len(c) == 1 for c in caches)
    # an in-place update of the table invalidates the cache
    with torch.no_grad():
        model.layers[0].attn.rel_pos_bias.table.add_(1.0)
        key_before = next(iter(caches[0]))
        model(torch.randn(1, 3, 96, 96))
    assert next(iter(caches[0])) != key_before


def test_shared_table_expands_to_per_layer_under_any_prefix():
    pre = tiny(use_shared_rel_pos_bias=True, use_rel_pos_bias=False, out_type='raw')
    sd = {'backbone.' + k: v for k, v in pre.state_dict().items()}
    sd.pop('backbone.fc_norm.weight', None)
    ft = BEiT(arch='tiny', img_size=64, out_type='raw')
    wrapper = torch.nn.Module()
    wrapper.backbone = ft
    wrapper.load_state_dict(sd, strict=True)
    for layer in ft.layers:
        assert torch.equal(layer.attn.rel_pos_bias.table, pre.rel_pos_bias.table)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(pre(x)[0], ft.eval()(x)[0], atol=1e-5)


def test_table_resized_on_load():
    src = tiny(use_abs_pos_emb=True)
    dst = BEiT(arch='tiny', img_size=96, use_abs_pos_emb=True)
    dst.load_state_dict(src.state_dict())
    assert dst.layers[0].attn.rel_pos_bias.table.shape[0] == 11 * 11 + 3
    assert dst.pos_embed.shape == (1, 37, 64)


def test_gradient_checkpointing_same_gradients_and_every_param_gets_grad():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 64, 64)
    grads = []
    for with_cp in (False, True):
        model = tiny(
            with_cp=with_cp,
            use_abs_pos_emb=True,
            use_shared_rel_pos_bias=True,
            use_mask_token=True,
            out_type='avg_featmap').train()
        mask = torch.zeros(2, 16, dtype=torch.bool)
        mask[:, :5] = True
        model(x, mask=mask)[0].pow(2).sum().backward()
        g = {n: p.grad for n, p in model.named_parameters()}
        missing = [n for n, v in g.items() if v is None or not v.abs().sum() > 0]
        assert not missing, f'parameters without gradient: {missing}'
        grads.append(g)
    for n in grads[0]:
        assert torch.allclose(grads[0][n], grads[1][n], atol=1e-6), n


def test_mask_token_replaces_masked_patches():
    model = tiny(use_mask_token=True, out_type='raw')
    x = torch.randn(1, 3, 64, 64)
    mask = torch.zeros(1, 4, 4, dtype=torch.bool)
    with torch.no_grad():
        a = model(x, mask=mask)[0]
        b = model(x)[0]
        mask[0, 0, 0] = True
        c = model(x, mask=mask)[0]
    assert torch.allclose(a, b) and not torch.allclose(a, c)


def test_frozen_stages_and_layer_depth():
    model = BEiT(arch='tiny', img_size=64, frozen_stages=2)
    assert not model.patch_embed.proj.weight.requires_grad
    assert not model.layers[1].attn.qkv.weight.requires_grad
    assert model.layers[2].attn.qkv.weight.requires_grad
    model.train()
    assert not model.layers[0].training and model.layers[2].training
    assert model.get_layer_depth('backbone.cls_token', 'backbone.') == (0, 6)
    assert model.get_layer_depth('backbone.layers.3.mlp.fc1.weight', 'backbone.') == (4, 6)
    assert model.get_layer_depth('backbone.fc_norm.weight', 'backbone.') == (5, 6)
    assert model.get_layer_depth('head.fc.weight', 'backbone.') == (5, 6)


@pytest.mark.parametrize('bad,match', [((1, 3, 60, 64), 'multiple of the patch size'),
                                       ((1, 4, 64, 64), '4 channels'),
                                       ((3, 64, 64), r'\[B, C, H, W\]')])
def test_clear_errors_on_bad_input(bad, match):
    with pytest.raises(ValueError, match=match):
        tiny()(torch.randn(*bad))


def test_bias_is_cast_to_query_dtype_in_bf16():
    model = tiny()
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        out = model(torch.randn(1, 3, 64, 64))[0]
    assert torch.isfinite(out).all()


def test_compiles_without_graph_breaks():
    model = tiny(use_shared_rel_pos_bias=True)
    x = torch.randn(1, 3, 64, 64)
    explanation = torch._dynamo.explain(model)(x)
    assert explanation.graph_break_count == 0, explanation.break_reasons


@pytest.mark.parametrize('size', [(384, 384), (512, 512), (640, 640), (384, 512)])
def test_224_checkpoint_runs_at_larger_and_non_square_sizes(size):
    """A 224 checkpoint (tiny arch, per-layer tables) run at 384, 512, 640 and 384x512."""
    torch.manual_seed(0)
    src = BEiT(arch='tiny', img_size=224, out_type='featmap').eval()
    with torch.no_grad():
        for layer in src.layers:
            layer.attn.rel_pos_bias.table.normal_(0, 0.5)
    with torch.no_grad():
        out = src(torch.randn(1, 3, *size))[0]
    assert out.shape == (1, 64, size[0] // 16, size[1] // 16) and torch.isfinite(out).all()
    if size[0] == size[1]:  # equal to a model built for that size from the 224 checkpoint
        dst = BEiT(arch='tiny', img_size=size, out_type='featmap').eval()
        dst.load_state_dict(src.state_dict())
        x = torch.randn(1, 3, *size)
        with torch.no_grad():
            assert torch.allclose(src(x)[0], dst(x)[0], atol=1e-5)
