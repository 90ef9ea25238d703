"""Training a VQ-KD tokenizer (mmbeit.VQKDTrainer): the model, and a tiny run on sample data.

The sample run trains configs/vqkd/vqkd_vit-tiny-p8_1xb32-4e_sample.py (4 epochs of 15
steps, random fixed-seed tiny teacher) through mmbeit's Runner, resumes it for a 5th epoch,
then tokenizes the 500 training images with the trained tokenizer loaded from the last
checkpoint file into ``mmbeit.VQKD``. Measured after the 4 epochs on 2026-12-06 (2-core CPU
VM, OMP_NUM_THREADS=1, num_workers=0 as here, 33 s of training): loss_rec 0.881 at step 5 ->
0.119 at step 60; 92 of the 128 codes in use over the 500 training images, code perplexity
52.8, the most frequent code on 5% of the patches (tools/train.py with the config's 2
workers: 90 codes, perplexity 45.8). The floors below are set well under those numbers; a
collapsed codebook (a handful of codes) fails them.
"""
import json
import os.path as osp

import numpy as np
import pytest
import torch
from PIL import Image

from mmbeit.models import VQKD
from mmbeit.registry import MODELS

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SAMPLE_CFG = osp.join(ROOT, 'configs', 'vqkd', 'vqkd_vit-tiny-p8_1xb32-4e_sample.py')
CODE_FLOOR = 64  # distinct codes over the sample training images (measured: 92 of 128)
PERPLEXITY_FLOOR = 20.  # measured: 52.8

TINY = dict(
    type='mmbeit.VQKDTrainer',
    tokenizer=dict(
        encoder=dict(
            arch=dict(embed_dims=64, num_layers=2, num_heads=4, feedforward_channels=128),
            img_size=32,
            patch_size=8),
        num_embed=32,
        embed_dims=8),
    decoder=dict(arch=dict(embed_dims=32, num_layers=1, num_heads=2, feedforward_channels=64)),
    teacher=dict(
        kind='clip',
        img_size=32,
        model_kwargs=dict(patch_size=8, embed_dim=32, depth=1, num_heads=2, num_classes=24),
        init_seed=0))


def _tiny(**over):
    cfg = dict(TINY, **over)
    return MODELS.build(cfg)


def test_every_trainable_parameter_gets_a_gradient():
    torch.manual_seed(0)
    model = _tiny().train()
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    losses = model(x, mode='loss')
    assert set(losses) == {
        'loss_rec', 'loss_quant', 'codes_used', 'code_perplexity', 'codes_unused'
    }
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and not [n for n in trainable if model.get_parameter(n).grad is None]
    # the codebook moves by EMA only; the teacher is frozen
    assert not model.tokenizer.quantize.embedding.weight.requires_grad
    assert not any(p.requires_grad for p in model.teacher.parameters())
    assert not model.teacher.training and model.tokenizer.training
    assert 0 < losses['codes_used'] <= 32 and losses['code_perplexity'] >= 1
    assert model(x).shape == (4, 16) and model(x).dtype == torch.long


def test_code_usage_is_reset_at_every_epoch():
    """mmbeit.CodeUsageResetHook (in the VQ-KD configs): ``codes_unused`` counts this epoch."""
    from types import SimpleNamespace

    from mmengine.config import Config

    from mmbeit.engine import CodeUsageResetHook
    torch.manual_seed(0)
    model = _tiny().train()
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    model(x, mode='loss')
    assert (model.tokenizer.quantize.cluster_size > 0).any()
    CodeUsageResetHook().before_train_epoch(SimpleNamespace(model=model))
    assert not model.tokenizer.quantize.cluster_size.any()
    losses = model(x, mode='loss')  # one batch since the reset: unused = all - used
    assert losses['codes_unused'] == model.tokenizer.vocab_size - losses['codes_used']
    with pytest.raises(TypeError, match='reset_code_usage'):
        CodeUsageResetHook().before_train_epoch(SimpleNamespace(model=torch.nn.Linear(1, 1)))
    hooks = [h['type'] for h in Config.fromfile(SAMPLE_CFG).custom_hooks]
    assert 'mmbeit.CodeUsageResetHook' in hooks


def test_the_tokenizer_inside_has_vqkd_keys():
    model = _tiny()
    tok = VQKD(**{k: v for k, v in TINY['tokenizer'].items()}, kmeans_init=True)
    assert list(model.tokenizer.state_dict()) == list(tok.state_dict())
    assert {k.split('.')[0]
            for k in model.state_dict()
            } == {'tokenizer', 'decoder', 'decode_task_layer', 'teacher'}


def test_the_cosine_loss_is_zero_when_the_decoder_reproduces_the_teacher():
    model = _tiny().train()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    target = model.teacher(x)
    model.reconstruct = lambda img: (3 * target, torch.zeros(2 * 16, dtype=torch.long),
                                     torch.tensor(0.))
    assert model(x, mode='loss')['loss_rec'].abs() < 1e-6


def test_bad_configs_are_named():
    with pytest.raises(ValueError, match='set from the tokenizer'):
        _tiny(decoder=dict(img_size=4))
    with pytest.raises(ValueError, match='frozen'):
        _tiny(tokenizer=dict(TINY['tokenizer'], frozen=True))
    with pytest.raises(ValueError, match='unknown kind'):
        _tiny(teacher=dict(kind='mae'))
    model = _tiny(
        teacher=dict(
            TINY['teacher'], model_kwargs=dict(TINY['teacher']['model_kwargs'], patch_size=4)))
    with pytest.raises(ValueError, match='same patch grid'):
        model(torch.zeros(1, 3, 32, 32), mode='loss')


def _read_rgb(path: str) -> torch.Tensor:
    return torch.from_numpy(np.array(Image.open(path).convert('RGB'))).permute(2, 0, 1)


def test_tiny_vqkd_trains_on_sample_data(tmp_path):
    from mmbeit.apis.run import build_runner_cfg, train
    from mmbeit.utils.sample_data import generate_sample_data
    root = generate_sample_data(str(tmp_path / 'sample'), seg_train=1, seg_val=1)
    data_root = osp.join(root, 'imagenet')
    work_dir = str(tmp_path / 'work')
    cfg = build_runner_cfg(
        SAMPLE_CFG,
        work_dir=work_dir,
        cfg_options={
            'train_dataloader.dataset.data_root': data_root,
            'train_dataloader.num_workers': 0,
        })
    train(cfg)

    # per-step log: losses and code usage through mmengine's message hub
    logs = [
        json.loads(line)
        for line in open(next(p for p in _find(work_dir, 'scalars.json')), encoding='utf-8')
    ]
    assert {'codes_used', 'code_perplexity', 'codes_unused'} <= set(logs[-1])
    assert logs[-1]['loss_rec'] < 0.5 * logs[0]['loss_rec'], (logs[0], logs[-1])

    # resume (mmbeit's Runner): one more epoch from the saved state
    cfg_resume = build_runner_cfg(
        SAMPLE_CFG,
        work_dir=work_dir,
        resume='auto',
        cfg_options={
            'train_dataloader.dataset.data_root': data_root,
            'train_dataloader.num_workers': 0,
            'train_cfg.max_epochs': 5,
        })
    train(cfg_resume)
    resumed = [
        json.loads(line)
        for line in open(sorted(_find(work_dir, 'scalars.json'))[-1], encoding='utf-8')
    ]
    assert {r['epoch'] for r in resumed} == {5}, resumed[0]

    # the trained tokenizer, loaded from the checkpoint file, over the training images
    from mmbeit.converters import load_pretrained
    tok = VQKD(**{k: v for k, v in cfg.model.tokenizer.to_dict().items() if k != 'type'})
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        load_pretrained(tok, f.read().strip())  # decoder and teacher left out
    files = sorted(_find(osp.join(data_root, 'train'), '.JPEG'))
    assert len(files) == 500
    imgs = torch.stack([_read_rgb(f) for f in files]).float() / 127.5 - 1
    ids = torch.cat([tok(imgs[i:i + 100]) for i in range(0, len(imgs), 100)])
    counts = torch.bincount(ids.flatten(), minlength=tok.vocab_size).float()
    p = counts[counts > 0] / counts.sum()
    perplexity = torch.exp(-(p * p.log()).sum()).item()
    assert (counts > 0).sum() >= CODE_FLOOR, counts
    assert perplexity >= PERPLEXITY_FLOOR, perplexity


def _find(folder: str, suffix: str):
    import glob
    return glob.glob(osp.join(folder, '**', f'*{suffix}'), recursive=True)
