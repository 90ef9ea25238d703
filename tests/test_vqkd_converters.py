"""VQ-KD checkpoints of every layout, through every door, into mmbeit.VQKD and VQKDTrainer.

References, all with random weights made by their own library:

* unilm's layout (``beit2/modeling_vqkd.py``): its encoder and decoder are unilm's
  ``VisionTransformer`` (mean pooling, absolute positions, no layer scale), whose key names
  and computation timm's ``Beit`` shares (``blocks.*``, ``fc_norm``; unilm applies
  ``fc_norm`` to every patch token); the quantizer is mmpretrain's
  ``NormEMAVectorQuantizer`` (unilm's algorithm; unilm's extra ``embedding.cluster_size`` /
  ``embed_avg`` keys are added from the published names); the teacher is transformers'
  CLIP image tower under ``teacher_model.visual.*`` in OpenAI's names, next to text-tower
  keys; ``scaling_layer.*`` buffers. The file is ``{'model': state_dict}`` as unilm saves.
* mmpretrain's ``VQKD``: its own state dict, as a bare file.

The tokens are identical and the quantized features / reconstructions within 1e-4.
"""
import functools
import os.path as osp

import pytest
import torch
import torch.nn as nn

from mmbeit.models import VQKD
from mmbeit.registry import MODELS
from helpers import TOL, assert_close, randomize_

EMB, LAYERS, HEADS, IMG, PATCH, K, D = 64, 2, 4, 32, 8, 64, 8
DEC = 32
GRID = IMG // PATCH
ENC = dict(
    arch=dict(embed_dims=EMB, num_layers=LAYERS, num_heads=HEADS, feedforward_channels=4 * EMB),
    img_size=IMG,
    patch_size=PATCH)


def _timm_vit(img_size, patch_size, in_chans, dim, depth, heads, seed):
    """unilm's VisionTransformer (use_mean_pooling, abs pos, init_values=0) = timm's Beit."""
    from timm.models import beit as timm_beit
    vit = timm_beit.Beit(
        img_size=img_size,
        patch_size=patch_size,
        in_chans=in_chans,
        num_classes=0,
        embed_dim=dim,
        depth=depth,
        num_heads=heads,
        mlp_ratio=4.,
        qkv_bias=True,
        init_values=None,
        use_abs_pos_emb=True,
        use_rel_pos_bias=False,
        use_shared_rel_pos_bias=False,
        use_fc_norm=True,
        norm_layer=functools.partial(nn.LayerNorm, eps=1e-6))
    randomize_(vit, seed)
    for blk in vit.blocks:  # a non-persistent zero buffer, not a weight
        blk.attn.k_bias.zero_()
    return vit


def _patch_tokens(vit, x):
    """unilm's forward_features(x, return_patch_tokens=True): fc_norm of every patch token."""
    return vit.fc_norm(vit.forward_features(x)[:, 1:])


class UnilmVQKD(nn.Module):
    """unilm's VQKD, its modules named as there, from libraries we did not write."""

    def __init__(self, seed=0):
        super().__init__()
        from mmpretrain.models.utils import vector_quantizer as quantizer
        self.encoder = _timm_vit(IMG, PATCH, 3, EMB, LAYERS, HEADS, seed)
        self.decoder = _timm_vit(GRID, 1, D, DEC, 1, 2, seed + 1)
        self.quantize = quantizer.NormEMAVectorQuantizer(K, D, beta=1.0, kmeans_init=False)
        self.encode_task_layer = nn.Sequential(nn.Linear(EMB, EMB), nn.Tanh(), nn.Linear(EMB, D))
        self.decode_task_layer = nn.Sequential(
            nn.Linear(DEC, DEC), nn.Tanh(), nn.Linear(DEC, TEACHER_OUT))
        randomize_(self.quantize, seed + 2)
        randomize_(self.encode_task_layer, seed + 3)
        randomize_(self.decode_task_layer, seed + 4)
        with torch.no_grad():
            codes = torch.randn(K, D, generator=torch.Generator().manual_seed(seed + 5))
            self.quantize.embedding.weight.copy_(nn.functional.normalize(codes, dim=-1))
            self.quantize.embedding.initted.fill_(1.)
        self.eval()

    @torch.no_grad()
    def encode(self, x):
        z = self.encode_task_layer(_patch_tokens(self.encoder, x))  # [B, N, D]
        z = z.transpose(1, 2).reshape(x.shape[0], D, GRID, GRID)
        quantized, _, ids = self.quantize(z)
        return quantized, ids

    @torch.no_grad()
    def reconstruct(self, x):
        quantized, _ = self.encode(x)
        return self.decode_task_layer(_patch_tokens(self.decoder, quantized))

    def file_state_dict(self, teacher: dict) -> dict:
        """What unilm saves: the model's keys plus the published extra ones."""
        sd = dict(self.state_dict())
        g = torch.Generator().manual_seed(7)
        # unilm's EmbeddingEMA keeps these (never read by its forward)
        sd['quantize.embedding.cluster_size'] = torch.rand(K, generator=g)
        sd['quantize.embedding.embed_avg'] = torch.randn(K, D, generator=g)
        sd['scaling_layer.shift'] = torch.tensor([0.48145466, 0.4578275,
                                                  0.40821073]).view(1, 3, 1, 1)
        sd['scaling_layer.scale'] = torch.tensor([0.26862954, 0.26130258,
                                                  0.27577711]).view(1, 3, 1, 1)
        sd.update({'teacher_model.' + k: v for k, v in teacher.items()})
        return sd


TEACHER_OUT = 24
TEACHER_CFG = dict(
    kind='clip',
    img_size=IMG,
    model_kwargs=dict(
        patch_size=PATCH, embed_dim=32, depth=2, num_heads=2, num_classes=TEACHER_OUT))


def _clip_teacher_openai():
    """A random CLIP image tower (transformers') in OpenAI's names, plus text-tower keys."""
    from test_vqkd_teacher import _hf_clip, _to_openai
    hf = _hf_clip()
    sd = _to_openai(hf.state_dict())
    sd['token_embedding.weight'] = torch.randn(10, 16)  # the text tower: ignored
    sd['ln_final.weight'] = torch.ones(16)
    sd['logit_scale'] = torch.tensor(4.6)
    return hf, sd


@pytest.fixture(scope='module')
def unilm_file(tmp_path_factory):
    ref = UnilmVQKD()
    hf, teacher = _clip_teacher_openai()
    path = str(tmp_path_factory.mktemp('vqkd') / 'vqkd_encoder_tiny_clip.pth')
    torch.save({'model': ref.file_state_dict(teacher)}, path)
    return ref, hf, path


def _img(seed=0, n=2):
    return torch.rand(n, 3, IMG, IMG, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _tokenizer(**kw):
    return VQKD(encoder=dict(ENC), num_embed=K, embed_dims=D, **kw)


def _check_tokenizer(tok, ref):
    x = _img()
    q_ref, ids_ref = ref.encode(x)
    with torch.no_grad():
        q, ids, _ = tok.encode(x)
    assert_close(q, q_ref, TOL)
    assert torch.equal(ids, ids_ref) and ids.unique().numel() > 1
    assert torch.equal(tok(x), ids_ref.view(2, -1))


# ------------------------------------------------------------------ unilm into mmbeit.VQKD
def test_load_pretrained(unilm_file):
    from mmbeit.converters import load_pretrained
    ref, _, path = unilm_file
    tok = _tokenizer()
    load_pretrained(tok, path)
    _check_tokenizer(tok, ref)


def test_torch_load_state_dict(unilm_file):
    ref, _, path = unilm_file
    tok = _tokenizer()
    tok.load_state_dict(torch.load(path, weights_only=True)['model'])
    _check_tokenizer(tok, ref)


def test_mmengine_load_checkpoint(unilm_file):
    from mmengine.runner import load_checkpoint
    ref, _, path = unilm_file
    tok = _tokenizer()
    load_checkpoint(tok, path, map_location='cpu')
    _check_tokenizer(tok, ref)


def test_init_cfg_in_a_config(unilm_file):
    ref, _, path = unilm_file
    tok = MODELS.build(
        dict(
            type='mmbeit.VQKD',
            encoder=dict(ENC),
            num_embed=K,
            embed_dims=D,
            init_cfg=dict(type='Pretrained', checkpoint=path)))
    with pytest.raises(RuntimeError, match='not loaded yet'):
        tok(_img())
    tok.init_weights()
    _check_tokenizer(tok, ref)


def test_tokenizer_init_cfg_inside_the_trainer(unilm_file):
    """Training from a published tokenizer: its weights come through the trainer's config."""
    ref, _, path = unilm_file
    model = MODELS.build(
        dict(
            type='mmbeit.VQKDTrainer',
            tokenizer=dict(
                encoder=dict(ENC),
                num_embed=K,
                embed_dims=D,
                init_cfg=dict(type='Pretrained', checkpoint=path)),
            decoder=dict(
                arch=dict(embed_dims=DEC, num_layers=1, num_heads=2, feedforward_channels=4 * DEC)),
            teacher=dict(TEACHER_CFG)))
    model.init_weights()
    model.eval()
    x = _img(4)
    with torch.no_grad():
        assert torch.equal(model.tokenizer.encode(x)[1], ref.encode(x)[1])


def test_the_dropped_parts_are_named_in_the_log(unilm_file):
    from mmengine.logging import MMLogger

    from mmbeit.converters import load_pretrained
    _, _, path = unilm_file
    logger = MMLogger.get_current_instance()
    records = []
    handler = type('H', (__import__('logging').Handler, ), {
        'emit': lambda s, r: records.append(r.getMessage())
    })()
    logger.addHandler(handler)
    try:
        load_pretrained(_tokenizer(), path)
    finally:
        logger.removeHandler(handler)
    text = '\n'.join(records)
    for part in ('decoder.*', 'decode_task_layer.*', 'teacher_model.*', 'scaling_layer.*'):
        assert part in text, text


def test_load_state_dict_of_a_trained_checkpoint_satisfies_a_pending_checkpoint(tmp_path):
    model = _trainer()
    with torch.no_grad():
        model.tokenizer.quantize.embedding.initted.fill_(1.)
    tok = _tokenizer(checkpoint='elsewhere.pth')
    with pytest.raises(RuntimeError, match='not loaded yet'):
        tok(_img())
    tok.load_state_dict({'state_dict': model.state_dict()})  # VQKDTrainer's keys, wrapped
    assert tok(_img()).shape == (2, GRID * GRID)


def test_a_partial_tokenizer_file_fails_naming_keys(unilm_file, tmp_path):
    _, _, path = unilm_file
    sd = torch.load(path, weights_only=True)['model']
    sd.pop('encode_task_layer.2.weight')
    bad = str(tmp_path / 'partial.pth')
    torch.save({'model': sd}, bad)
    from mmbeit.converters import load_pretrained
    with pytest.raises(Exception, match='encode_task_layer.2.weight'):
        load_pretrained(_tokenizer(), bad)


# ------------------------------------------------------------------ mmpretrain into mmbeit.VQKD
def test_mmpretrain_vqkd_file(tmp_path):
    from test_vqkd import _mmpretrain_vqkd

    from mmbeit.converters import load_pretrained
    ref = _mmpretrain_vqkd(ENC['arch'], IMG, PATCH, num_embed=K, embed_dims=D, seed=3)
    path = str(tmp_path / 'vqkd_encoder.pth')
    torch.save(ref.state_dict(), path)
    for load in (lambda t: load_pretrained(t, path),
                 lambda t: t.load_state_dict(torch.load(path, weights_only=True))):
        tok = _tokenizer()
        load(tok)
        x = _img(1)
        with torch.no_grad():
            q_ref, ids_ref, _ = ref.encode(x)
            q, ids, _ = tok.encode(x)
        assert_close(q, q_ref, TOL)
        assert torch.equal(ids, ids_ref)


# ------------------------------------------------------------------ the training model
def _trainer():
    return MODELS.build(
        dict(
            type='mmbeit.VQKDTrainer',
            tokenizer=dict(encoder=dict(ENC), num_embed=K, embed_dims=D),
            decoder=dict(
                arch=dict(embed_dims=DEC, num_layers=1, num_heads=2, feedforward_channels=4 * DEC)),
            teacher=dict(TEACHER_CFG))).eval()


def test_unilm_file_loads_completely_into_the_trainer(unilm_file):
    from mmengine.runner import load_checkpoint
    ref, hf, path = unilm_file
    from mmbeit.engine.runner import BEiTRunner

    def load_from(m):  # a config's load_from: the Runner's load_checkpoint
        BEiTRunner(model=m, work_dir=str(osp.join(osp.dirname(path), 'work'))).load_checkpoint(path)

    for load in (lambda m: load_checkpoint(m, path, map_location='cpu'),
                 lambda m: m.load_state_dict(torch.load(path, weights_only=True)['model']),
                 load_from):
        model = _trainer()
        load(model)
        x = _img(2)
        with torch.no_grad():
            rec, ids, _ = model.reconstruct(x)
        assert_close(rec, ref.reconstruct(x), TOL)
        assert torch.equal(ids, ref.encode(x)[1])
        # the teacher came from the file too (CLIP, OpenAI's names)
        from test_vqkd_teacher import TEACHERS
        spec = TEACHERS['clip']
        mean = torch.tensor(spec['mean']).view(1, 3, 1, 1)
        std = torch.tensor(spec['std']).view(1, 3, 1, 1)
        with torch.no_grad():
            hidden = hf.vision_model(pixel_values=((x + 1) / 2 - mean) / std).last_hidden_state
            expected = hf.visual_projection(hf.vision_model.post_layernorm(hidden))[:, 1:]
        assert_close(model.teacher(x), expected, TOL)


def test_a_unilm_file_without_its_decoder_does_not_load_into_the_trainer(unilm_file):
    from mmbeit.converters.load import CheckpointMismatchError
    _, _, path = unilm_file
    sd = {
        k: v
        for k, v in torch.load(path, weights_only=True)['model'].items()
        if not k.startswith('decode_task_layer.')
    }
    with pytest.raises(CheckpointMismatchError, match='decode_task_layer.0.bias'):
        _trainer().load_state_dict(sd)


def test_a_trained_checkpoint_loads_into_the_tokenizer(tmp_path):
    """mmbeit's own VQKDTrainer checkpoint -> mmbeit.VQKD: decoder and teacher dropped."""
    from mmbeit.converters import load_pretrained
    model = _trainer()
    randomize_(model.tokenizer)
    with torch.no_grad():
        model.tokenizer.quantize.embedding.initted.fill_(1.)
    path = str(tmp_path / 'epoch_1.pth')
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    tok = _tokenizer()
    load_pretrained(tok, path)
    x = _img(3)
    with torch.no_grad():
        assert torch.equal(tok(x), model.tokenizer.encode(x)[1].view(2, -1))
    assert osp.exists(path)
