"""BEiT v2 pretraining against mmpretrain's v2 ``BEiT`` algorithm (``BEiTPretrainViT``,
``BEiTV2Neck``, ``BEiTV2Head``, ``VQKD``) on the same randomized weights: the same
loss, the same gradients and the same parameters after one AdamW step."""
import copy

import pytest
import torch

from mmbeit.registry import MODELS
from helpers import TOL, randomize_

EMBED, LAYERS, HEADS, FFN, VOCAB, CODE = 64, 4, 4, 256, 64, 8  # the tiny arch
EARLY = 3  # the patch aggregation reads layer 3 of 4 (base: 9 of 12)
IMG, PATCH = 64, 16  # 4x4 patches; v2's tokenizer view has the backbone's size
ARCH = dict(embed_dims=EMBED, num_layers=LAYERS, num_heads=HEADS, feedforward_channels=FFN)
TOK_ARCH = dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64)

# mmpretrain's VQKD encoder as its beitv2 config writes it, at a tiny size
VQKD_ENCODER = dict(
    arch=TOK_ARCH,
    img_size=IMG,
    patch_size=PATCH,
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


def reference(drop_path_rate: float = 0.) -> torch.nn.Module:
    """mmpretrain's v2 algorithm as its beitv2 config builds it, at a tiny size."""
    from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS
    torch.manual_seed(0)
    ref = MMPRETRAIN_MODELS.build(
        dict(
            type='BEiT',
            backbone=dict(
                type='BEiTPretrainViT',
                arch=dict(ARCH),
                img_size=IMG,
                patch_size=PATCH,
                out_indices=[-2, -1],
                drop_path_rate=drop_path_rate,
                final_norm=False,
                layer_scale_init_value=0.1),
            neck=dict(
                type='BEiTV2Neck',
                num_layers=2,
                early_layers=EARLY,
                # mmpretrain's custom arch reads 'depth' where it checks 'num_layers'
                backbone_arch=dict(ARCH, depth=LAYERS),
                drop_path_rate=drop_path_rate,
                layer_scale_init_value=0.1),
            head=dict(
                type='BEiTV2Head',
                embed_dims=EMBED,
                num_embed=VOCAB,
                loss=dict(type='CrossEntropyLoss')),
            target_generator=dict(
                type='VQKD', encoder_config=VQKD_ENCODER, num_embed=VOCAB, embed_dims=CODE)))
    ref.init_weights()
    randomize_(ref, seed=1)  # every parameter and buffer, the tokenizer's too
    with torch.no_grad():  # a trained codebook: unit codes, initialised
        codes = torch.randn(VOCAB, CODE, generator=torch.Generator().manual_seed(2))
        ref.target_generator.quantize.embedding.weight.copy_(
            torch.nn.functional.normalize(codes, dim=-1))
        ref.target_generator.quantize.embedding.initted.fill_(1.)
    return ref


def ours(drop_path_rate: float = 0.) -> torch.nn.Module:
    model = MODELS.build(
        dict(
            type='BEiTPretrain',
            backbone=dict(
                type='BEiT',
                arch=dict(ARCH),
                img_size=IMG,
                patch_size=PATCH,
                out_type='raw',
                out_indices=[-2, -1],
                drop_path_rate=drop_path_rate,
                final_norm=False,
                use_mask_token=True,
                use_shared_rel_pos_bias=True,
                use_rel_pos_bias=False,
                layer_scale_init_value=0.1),
            neck=dict(
                type='BEiTV2Neck',
                num_layers=2,
                early_layers=EARLY,
                drop_path_rate=drop_path_rate,
                layer_scale_init_value=0.1),
            head=dict(type='BEiTMIMHead'),
            target_generator=dict(
                type='VQKD',
                encoder=dict(arch=TOK_ARCH, img_size=IMG, patch_size=PATCH),
                num_embed=VOCAB,
                embed_dims=CODE,
                kmeans_init=False),  # a random codebook where nothing is loaded
            data_preprocessor=dict(
                type='TwoViewDataPreprocessor',
                second_mean=[127.5, 127.5, 127.5],  # VQ-KD's [-1, 1]
                second_std=[127.5, 127.5, 127.5])))
    return model


def mmpretrain_to_ours(state_dict: dict) -> dict:
    """mmpretrain's v2 keys -> ours, by mmbeit's converters (the mmpretrain format module)."""
    from mmbeit.converters import convert_checkpoint
    return convert_checkpoint({'state_dict': state_dict}, target='pretrain')


def batch(seed: int = 0, n: int = 2):
    from mmpretrain.structures import DataSample
    g = torch.Generator().manual_seed(seed)
    img = torch.randn(n, 3, IMG, IMG, generator=g)
    tokenizer_img = torch.rand(n, 3, IMG, IMG, generator=g) * 2 - 1  # VQ-KD's [-1, 1]
    masks = torch.rand(n, IMG // PATCH, IMG // PATCH, generator=g) < 0.5
    masks[:, 0, 0] = True  # at least one masked patch per image
    return [img, tokenizer_img], [DataSample().set_mask(m) for m in masks]


def paired():
    ref = reference()
    model = ours()
    converted = mmpretrain_to_ours(ref.state_dict())
    assert set(converted) == set(model.state_dict())  # every key, nothing left over
    model.load_state_dict(converted, strict=True)
    return ref, model


def test_loss_equals_mmpretrain():
    ref, model = paired()
    inputs, samples = batch()
    with torch.no_grad():
        tokens = model.target_generator(inputs[1])
        assert torch.equal(tokens, ref.target_generator(inputs[1]))  # the same targets
    assert tokens.unique().numel() > 3  # ... and varied ones
    expected = ref.loss(inputs, samples)
    losses = model.loss(inputs, samples)
    assert set(losses) == {'loss_1', 'loss_2', 'accuracy_1', 'accuracy_2'}
    for key in ('loss_1', 'loss_2'):
        assert abs(losses[key].item() - expected[key].item()) <= TOL, key
    # both paths matter and differ
    assert abs(losses['loss_1'].item() - losses['loss_2'].item()) > 1e-3
    # the loss depends on the mask
    _, other = batch(seed=1)
    assert abs(model.loss(inputs, other)['loss_1'].item() - expected['loss_1'].item()) > 1e-3


def test_one_adamw_step_equals_mmpretrain():
    """The same gradients and the same parameters after one AdamW step (mmengine's
    parse_losses sums loss_1 and loss_2 on both sides)."""
    ref, model = paired()
    ref.train(), model.train()
    # unilm runs its tokenizer in eval mode (run_beitv2_pretraining.py get_visual_tokenizer);
    # mmpretrain would leave it training, whose quantizer then updates the codebook by EMA
    # after each batch (the ids of the batch are the same); ours stays in eval mode
    ref.target_generator.eval()
    inputs, samples = batch()
    names = mmpretrain_names(ref, model)
    opts = []
    for m in (ref, model):
        params = [p for n, p in m.named_parameters() if p.requires_grad]
        opts.append(torch.optim.AdamW(params, lr=1e-3, weight_decay=0.05))
    for m, opt in zip((ref, model), opts):
        loss, _ = m.parse_losses(m.loss(inputs, samples))
        opt.zero_grad()
        loss.backward()
    ref_params = dict(ref.named_parameters())
    for ours_name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        q = ref_params[names[ours_name]]
        assert p.grad is not None and q.grad is not None, ours_name
        assert (p.grad - q.grad).abs().max().item() <= TOL, ours_name
    for opt in opts:
        opt.step()
    for ours_name, p in model.named_parameters():
        if p.requires_grad:
            diff = (p - ref_params[names[ours_name]]).abs().max().item()
            assert diff <= TOL, ours_name


def mmpretrain_names(ref, model) -> dict:
    """Our parameter name -> mmpretrain's, by identity of the converted tensors."""
    marked = {}
    for name, p in ref.named_parameters():
        marked[name] = p.detach().clone()
    converted = mmpretrain_to_ours({
        n: torch.full_like(t, i)
        for i, (n, t) in enumerate(marked.items())
    })
    ref_names = list(marked)
    out = {}
    for name, t in converted.items():
        if t.numel():
            out[name] = ref_names[int(t.flatten()[0].item())]
    missing = [n for n, p in model.named_parameters() if p.requires_grad and n not in out]
    assert not missing, missing
    return out


def test_config_errors():
    cfg = dict(
        type='BEiT',
        arch=dict(ARCH),
        img_size=IMG,
        out_type='raw',
        use_mask_token=True,
        use_shared_rel_pos_bias=True,
        use_rel_pos_bias=False)
    tok = dict(type='DALLEEncoder', n_hid=8, n_blk_per_group=1, vocab_size=VOCAB)
    neck = dict(type='BEiTV2Neck', early_layers=EARLY)
    with pytest.raises(ValueError, match=r'out_indices must be \[2, 3\]'):
        MODELS.build(
            dict(
                type='BEiTPretrain',
                backbone=dict(cfg, final_norm=False),
                neck=neck,
                head=dict(type='BEiTMIMHead'),
                target_generator=tok))
    with pytest.raises(ValueError, match='final_norm=False'):
        MODELS.build(
            dict(
                type='BEiTPretrain',
                backbone=dict(cfg, out_indices=[2, 3]),
                neck=neck,
                head=dict(type='BEiTMIMHead'),
                target_generator=tok))
    with pytest.raises(ValueError, match=r'early_layers must be an int in \[1, 3\]'):
        MODELS.build(
            dict(
                type='BEiTPretrain',
                backbone=dict(cfg, final_norm=False),
                neck=dict(neck, early_layers=4),
                head=dict(type='BEiTMIMHead'),
                target_generator=tok))


def test_tokenizer_contract_is_checked():
    model = ours()
    inputs, samples = batch()

    class Logits(torch.nn.Module):
        vocab_size = VOCAB

        def forward(self, x):  # logits, not ids: a tokenizer of the old contract
            return torch.randn(x.shape[0], VOCAB, 4, 4)

    model.target_generator = Logits()
    with pytest.raises(ValueError, match='must return token ids'):
        model.loss(inputs, samples)
    with pytest.raises(ValueError, match='vocab_size'):
        MODELS.build(
            dict(
                type='BEiTPretrain',
                backbone=dict(type='BEiT', arch=dict(ARCH), out_type='raw', use_mask_token=True),
                head=dict(type='BEiTMIMHead'),
                target_generator=dict(type='BEiTMIMHead', embed_dims=8),  # no vocab_size
                data_preprocessor=dict(type='TwoViewDataPreprocessor')))


def test_train_step_logs_both_losses_and_accuracies():
    """uint8 two-view batch -> TwoViewDataPreprocessor -> loss_1 + loss_2 -> a gradient for
    every trainable parameter, none for the tokenizer."""
    from mmengine.optim import OptimWrapper
    from mmpretrain.structures import DataSample
    model = ours()
    model.train()
    assert not model.target_generator.training
    g = torch.Generator().manual_seed(0)
    masks = torch.rand(2, 4, 4, generator=g) < 0.5
    masks[:, 0, 0] = True
    data = dict(
        inputs=[
            torch.randint(0, 256, (2, 3, IMG, IMG), generator=g, dtype=torch.uint8)
            for _ in range(2)
        ],
        data_samples=[DataSample().set_mask(m) for m in masks])
    before = copy.deepcopy(model.state_dict())
    log_vars = model.train_step(data, OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1)))
    assert set(log_vars) == {'loss', 'loss_1', 'loss_2', 'accuracy_1', 'accuracy_2'}
    assert abs(log_vars['loss'] - log_vars['loss_1'] - log_vars['loss_2']) <= 1e-5
    for name, p in model.named_parameters():
        changed = not torch.equal(before[name], p.detach())
        if name.startswith('target_generator.'):
            assert not p.requires_grad and not changed, name
        else:
            assert changed, f'{name} got no gradient'
