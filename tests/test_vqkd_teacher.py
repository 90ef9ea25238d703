"""VQ-KD's teacher (mmbeit.ViTTeacher) against transformers' CLIP image tower.

unilm's CLIP target is ``ln_post(all tokens)[:, 1:] @ visual.proj`` of CLIP's image tower on
images normalised with CLIP's statistics. transformers' ``CLIPVisionModelWithProjection``
with random weights (every parameter moved off its init) gives the same quantity as
``visual_projection(post_layernorm(last_hidden_state))[:, 1:]``; its weights, renamed to
OpenAI's ``visual.*`` keys (the layout of OpenAI's state dict), load into the teacher, whose
features on [-1, 1] images agree within 1e-4.
"""
import pytest
import torch

from mmbeit.models.target_generators.vit_teacher import TEACHERS, ViTTeacher
from helpers import TOL, assert_close, randomize_

C, LAYERS, HEADS, PROJ, IMG, PATCH = 32, 2, 2, 24, 32, 8


def _hf_clip():
    import transformers
    config = transformers.CLIPVisionConfig(
        hidden_size=C,
        intermediate_size=4 * C,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        image_size=IMG,
        patch_size=PATCH,
        projection_dim=PROJ,
        hidden_act='quick_gelu',
        layer_norm_eps=1e-5)
    return randomize_(transformers.CLIPVisionModelWithProjection(config), seed=0)


def _to_openai(hf_state: dict) -> dict:
    """transformers CLIPVisionModelWithProjection keys -> OpenAI CLIP's ``visual.*`` keys."""
    out = {}
    p = 'vision_model.'
    out['visual.class_embedding'] = hf_state[p + 'embeddings.class_embedding']
    out['visual.conv1.weight'] = hf_state[p + 'embeddings.patch_embedding.weight']
    out['visual.positional_embedding'] = hf_state[p + 'embeddings.position_embedding.weight']
    for a, b in (('pre_layrnorm', 'ln_pre'), ('post_layernorm', 'ln_post')):
        for t in ('weight', 'bias'):
            out[f'visual.{b}.{t}'] = hf_state[f'{p}{a}.{t}']
    for i in range(LAYERS):
        src, dst = f'{p}encoder.layers.{i}.', f'visual.transformer.resblocks.{i}.'
        for t in ('weight', 'bias'):
            out[f'{dst}attn.in_proj_{t}'] = torch.cat(
                [hf_state[f'{src}self_attn.{q}_proj.{t}'] for q in 'qkv'])
            out[f'{dst}attn.out_proj.{t}'] = hf_state[f'{src}self_attn.out_proj.{t}']
            out[f'{dst}ln_1.{t}'] = hf_state[f'{src}layer_norm1.{t}']
            out[f'{dst}ln_2.{t}'] = hf_state[f'{src}layer_norm2.{t}']
            out[f'{dst}mlp.c_fc.{t}'] = hf_state[f'{src}mlp.fc1.{t}']
            out[f'{dst}mlp.c_proj.{t}'] = hf_state[f'{src}mlp.fc2.{t}']
    out['visual.proj'] = hf_state['visual_projection.weight'].t()
    return out


def test_clip_teacher_matches_transformers_clip():
    hf = _hf_clip()
    teacher = ViTTeacher(
        'clip',
        img_size=IMG,
        model_kwargs=dict(
            patch_size=PATCH, embed_dim=C, depth=LAYERS, num_heads=HEADS, num_classes=PROJ))
    teacher.load_weights(_to_openai(hf.state_dict()))
    x = torch.rand(2, 3, IMG, IMG, generator=torch.Generator().manual_seed(1)) * 2 - 1
    spec = TEACHERS['clip']
    mean = torch.tensor(spec['mean']).view(1, 3, 1, 1)
    std = torch.tensor(spec['std']).view(1, 3, 1, 1)
    with torch.no_grad():
        hidden = hf.vision_model(pixel_values=((x + 1) / 2 - mean) / std).last_hidden_state
        expected = hf.visual_projection(hf.vision_model.post_layernorm(hidden))[:, 1:]
    got = teacher(x)
    assert got.shape == (2, (IMG // PATCH)**2, PROJ) and teacher.out_dims == PROJ
    assert_close(got, expected, TOL)


def test_dino_teacher_loads_timm_keys_strictly_and_names_a_misfit():
    kwargs = dict(patch_size=PATCH, embed_dim=C, depth=1, num_heads=HEADS)
    src = ViTTeacher('dino', img_size=IMG, model_kwargs=kwargs, init_seed=1)
    randomize_(src.vit)  # the weights (not the normalisation constants)
    dst = ViTTeacher('dino', img_size=IMG, model_kwargs=kwargs, init_seed=2)
    dst.load_weights(src.vit.state_dict())
    x = torch.rand(1, 3, IMG, IMG) * 2 - 1
    assert torch.equal(dst(x), src(x)) and dst(x).shape == (1, 16, C)
    bad = dict(src.vit.state_dict())
    bad.pop('norm.weight')
    with pytest.raises(KeyError, match='norm.weight'):
        dst.load_weights(bad)


def test_teacher_is_frozen_and_seeded():
    a = ViTTeacher(
        'clip',
        img_size=IMG,
        model_kwargs=dict(patch_size=PATCH, embed_dim=C, depth=1, num_heads=HEADS),
        init_seed=0)
    b = ViTTeacher(
        'clip',
        img_size=IMG,
        model_kwargs=dict(patch_size=PATCH, embed_dim=C, depth=1, num_heads=HEADS),
        init_seed=0)
    a.train()
    assert not a.training and not any(p.requires_grad for p in a.parameters())
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    assert 'mean' not in a.state_dict()  # constants, not weights
