"""Distributed data parallel training: two CPU processes (gloo) through tools/dist_train.sh.

Each rank trains on its own half of the data (checked: the halves are disjoint
and cover the set), so identical weights at the end mean the gradients were
averaged across the ranks, not that both processes happened to do the same.
"""
import os
import os.path as osp
import shutil
import subprocess
import sys

import pytest
import torch

from helpers import free_port  # tests/helpers.py

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG = osp.join(ROOT, 'tests', 'data', 'dist_cls_sample.py')


@pytest.fixture(scope='module')
def sample_root(tmp_path_factory):
    from mmbeit.utils.sample_data import generate_sample_data
    root = str(tmp_path_factory.mktemp('sample'))
    return generate_sample_data(
        root, cls_train_per_class=4, cls_val_per_class=1, seg_train=1, seg_val=1)


@pytest.mark.skipif(shutil.which('bash') is None, reason='tools/dist_train.sh needs bash')
def test_two_cpu_processes_hold_the_same_weights(sample_root, tmp_path):
    data_root = osp.join(sample_root, 'imagenet')
    work_dir = str(tmp_path / 'work')
    env = dict(
        os.environ,
        OMP_NUM_THREADS='1',
        PYTHON=sys.executable,
        PORT=str(free_port()),
        PYTHONPATH=osp.join(ROOT, 'tests', 'data'),
        CUDA_VISIBLE_DEVICES='')
    # 20 images, 10 per rank, 2 iterations of 4 per rank
    cmd = [
        'bash',
        osp.join(ROOT, 'tools', 'dist_train.sh'), CONFIG, '2', '--work-dir', work_dir,
        '--no-validate', '--cfg-options', f'train_dataloader.dataset.data_root={data_root}',
        f'test_dataloader.dataset.data_root={data_root}', 'train_dataloader.batch_size=4',
        'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
        'train_cfg.max_epochs=1', 'default_hooks.logger.interval=1',
        'default_hooks.checkpoint.interval=1', 'env_cfg.dist_cfg.backend=gloo'
    ]
    proc = subprocess.run(
        cmd, cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]

    dumps = [torch.load(osp.join(work_dir, f'rank{r}.pth'), weights_only=False) for r in (0, 1)]
    assert [d['rank'] for d in dumps] == [0, 1]
    assert all(d['world_size'] == 2 for d in dumps)
    assert all(d['wrapper'] == 'MMDistributedDataParallel' for d in dumps)

    seen = [set(d['seen']) for d in dumps]
    assert all(len(d['seen']) == 8 for d in dumps)  # 2 iterations x 4 images
    assert not seen[0] & seen[1], 'both ranks trained on the same images: data not sharded'

    first, second = dumps[0], dumps[1]
    assert first['final'].keys() == second['final'].keys()
    for key in first['initial']:  # mmengine broadcasts rank 0's initial weights
        torch.testing.assert_close(first['initial'][key], second['initial'][key], rtol=0, atol=0)
    differing = [
        k for k in first['final'] if not torch.equal(first['final'][k], second['final'][k])
    ]
    assert not differing, f'the ranks diverged: {differing[:5]}'
    trained = [
        k for k in first['final'] if first['final'][k].is_floating_point()
        and not torch.equal(first['final'][k], first['initial'][k])
    ]
    assert len(trained) > len(first['final']) // 2, 'training did not change the weights'

    # rank 0's checkpoint holds those weights
    ckpt = torch.load(osp.join(work_dir, 'epoch_1.pth'), map_location='cpu', weights_only=False)
    for key, value in first['final'].items():
        torch.testing.assert_close(ckpt['state_dict'][key], value, rtol=0, atol=0)


FSDP_CONFIG = 'configs/beit/beit_beit-large-p16_16xb128-amp-fsdp-coslr-150e_in21k.py'
# Runs in its own process (a process group in the test process would make mmengine believe
# every later test is distributed): the FSDP config's model wrapper around the tiny
# pretraining model, one loss + backward on the CPU.
FSDP_STEP = r'''
import json, sys
import torch, torch.distributed as dist
import mmbeit
from mmengine.config import Config
from mmengine.registry import MODELS, MODEL_WRAPPERS, init_default_scope
sys.path.insert(0, sys.argv[3])
from test_configs import _fake_batch
dist.init_process_group('gloo')
init_default_scope('mmpretrain')
cfg = Config.fromfile(sys.argv[1])
small = Config.fromfile(sys.argv[2])  # the same model at the tiny arch and 64 pixels
torch.manual_seed(0)
model = MODELS.build(small.model)
model.init_weights()
wrapper_cfg = cfg.strategy.model_wrapper.to_dict()
wrapper_cfg.setdefault('type', 'MMFullyShardedDataParallel')
wrapped = MODEL_WRAPPERS.build(wrapper_cfg, default_args=dict(module=model,
                                                              device_id=torch.device('cpu')))
units = [n.replace('_fsdp_wrapped_module.', '') for n, m in wrapped.named_modules()
         if type(m).__name__.endswith('FullyShardedDataParallel')]
data = wrapped.module.data_preprocessor(_fake_batch('mmbeit.BEiTPretrain', small), training=True)
losses = wrapped(**data, mode='loss')
losses['loss'].backward()
no_grad = [n for n, p in wrapped.named_parameters() if p.requires_grad and p.grad is None]
print(json.dumps(dict(units=units, loss=float(losses['loss']), no_grad=no_grad,
                      frozen_grad=[n for n, p in wrapped.named_parameters()
                                   if 'target_generator' in n and p.requires_grad])))
'''


def test_fsdp_config_wraps_layers_and_tokenizer_and_trains_a_step(tmp_path):
    import json
    small = osp.join(ROOT, 'configs', 'beit', 'beit_beit-tiny-p8_1xb32-10e_sample.py')
    env = dict(
        os.environ,
        OMP_NUM_THREADS='1',
        RANK='0',
        WORLD_SIZE='1',
        LOCAL_RANK='0',
        MASTER_ADDR='127.0.0.1',
        MASTER_PORT=str(free_port()),
        CUDA_VISIBLE_DEVICES='')
    proc = subprocess.run([
        sys.executable, '-c', FSDP_STEP,
        osp.join(ROOT, FSDP_CONFIG), small,
        osp.join(ROOT, 'tests')
    ],
                          cwd=str(tmp_path),
                          env=env,
                          capture_output=True,
                          text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-5000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    # the root, one unit per transformer layer (4 in the tiny arch), the tokenizer
    assert out['units'] == [''] + [f'backbone.layers.{i}' for i in range(4)] + ['target_generator']
    assert torch.isfinite(torch.tensor(out['loss']))
    assert not out['no_grad'] and not out['frozen_grad']


# One optimizer step of the tiny pretraining model on two CPU processes (gloo), each rank on
# its own half of one batch, with gradient clipping active (max_norm far below the norm), in
# five ways: DDP + mmengine's OptimWrapper (the reference: DDP averages full gradients, so
# its clip norm is the global one), FSDP + mmbeit.FSDPOptimWrapper, FSDP + mmengine's
# OptimWrapper (the old per-shard clip), and the AMP pair (DDP + AmpOptimWrapper, FSDP + the
# config's mmbeit.FSDPAmpOptimWrapper; with no CUDA here mmengine's AMP check is bypassed, the
# grad scaler disables itself and autocast runs bfloat16 on the CPU, on both sides alike).
# The optimizer is SGD: AdamW's first step, m / sqrt(v), hardly depends on the gradient's
# scale, so it would hide the clip; SGD's update is the clipped gradient itself.
FSDP_CLIP_STEP = r'''
import copy, sys
import torch, torch.distributed as dist
import mmbeit  # noqa: F401
import mmengine.optim.optimizer.amp_optimizer_wrapper as amp_module
from mmengine.config import Config
from mmengine.logging import MessageHub
from mmengine.model import MMDistributedDataParallel
from mmengine.optim import build_optim_wrapper
from mmengine.registry import MODELS, MODEL_WRAPPERS, init_default_scope
from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
fsdp_config, small_config, tests_dir, out, max_norm = sys.argv[1:6]
sys.path.insert(0, tests_dir)
from test_configs import _fake_batch
amp_module.is_cuda_available = lambda: True  # CPU: AmpOptimWrapper refuses to build otherwise
dist.init_process_group('gloo')
rank = dist.get_rank()
init_default_scope('mmpretrain')
cfg = Config.fromfile(fsdp_config)
small = Config.fromfile(small_config)  # the same model at the tiny arch and 64 pixels
torch.manual_seed(0)
initial = MODELS.build(small.model)
initial.init_weights()
batch = _fake_batch('mmbeit.BEiTPretrain', small, batch=4)
half = slice(2 * rank, 2 * rank + 2)  # this rank's 2 of the 4 images
data = dict(inputs=[view[half] for view in batch['inputs']],
            data_samples=batch['data_samples'][half])


def optim_cfg(wrapper_type):
    # the FSDP config's optim_wrapper (paramwise_cfg ...), with SGD and a small max_norm
    ow = copy.deepcopy(cfg.optim_wrapper.to_dict())
    for key in ('use_fsdp', 'loss_scale'):
        ow.pop(key, None)
    ow.update(type=wrapper_type,
              optimizer=dict(type='SGD', lr=1.0, weight_decay=ow['optimizer']['weight_decay']),
              clip_grad=dict(max_norm=float(max_norm)))
    return ow


def run(kind, wrapper_type):
    model = copy.deepcopy(initial)
    if kind == 'ddp':
        wrapped = MMDistributedDataParallel(module=model)
    else:
        wrapper_cfg = cfg.strategy.model_wrapper.to_dict()
        wrapper_cfg.setdefault('type', 'MMFullyShardedDataParallel')
        wrapped = MODEL_WRAPPERS.build(
            wrapper_cfg, default_args=dict(module=model, device_id=torch.device('cpu')))
    optim_wrapper = build_optim_wrapper(wrapped, optim_cfg(wrapper_type))
    names = {id(p): n.replace('_fsdp_wrapped_module.', '')
             for n, p in wrapped.module.named_parameters()}
    decay = {names[id(p)]: group['weight_decay']
             for group in optim_wrapper.optimizer.param_groups for p in group['params']}
    wrapped.train_step(copy.deepcopy(data), optim_wrapper)  # as the Runner's train loop
    norm = MessageHub.get_current_instance().get_scalar('train/grad_norm').current()
    if kind == 'ddp':
        params = {n: p.detach().clone() for n, p in wrapped.module.named_parameters()}
    else:
        with FSDP.summon_full_params(wrapped):
            params = {n.replace('_fsdp_wrapped_module.', ''): p.detach().clone()
                      for n, p in wrapped.module.named_parameters()}
    return dict(type=type(optim_wrapper).__name__, norm=float(norm), params=params, decay=decay)


runs = dict(
    ddp=run('ddp', 'OptimWrapper'),
    fsdp_global=run('fsdp', 'mmbeit.FSDPOptimWrapper'),
    fsdp_per_shard=run('fsdp', 'OptimWrapper'),
    ddp_amp=run('ddp', 'AmpOptimWrapper'),
    fsdp_amp_global=run('fsdp', cfg.optim_wrapper.type))
runs['initial'] = dict(params={n: p.detach().clone() for n, p in initial.named_parameters()})
torch.save(runs, f'{out}/rank{rank}.pth')
'''


def test_fsdp_clips_by_the_global_norm_as_ddp(tmp_path):
    from mmengine.config import Config
    assert Config.fromfile(osp.join(ROOT, FSDP_CONFIG)).optim_wrapper.type == \
        'mmbeit.FSDPAmpOptimWrapper'
    small = osp.join(ROOT, 'configs', 'beit', 'beit_beit-tiny-p8_1xb32-10e_sample.py')
    max_norm = 0.05
    port = str(free_port())
    procs = []
    for rank in (0, 1):
        env = dict(
            os.environ,
            OMP_NUM_THREADS='1',
            RANK=str(rank),
            WORLD_SIZE='2',
            LOCAL_RANK=str(rank),
            MASTER_ADDR='127.0.0.1',
            MASTER_PORT=port,
            CUDA_VISIBLE_DEVICES='',
            PYTHONPATH=ROOT)
        procs.append(
            subprocess.Popen([
                sys.executable, '-c', FSDP_CLIP_STEP,
                osp.join(ROOT, FSDP_CONFIG), small,
                osp.join(ROOT, 'tests'),
                str(tmp_path),
                str(max_norm)
            ],
                             cwd=str(tmp_path),
                             env=env,
                             stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE,
                             text=True))
    try:
        for proc in procs:
            _, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err[-5000:]
    finally:  # a failed rank leaves the other waiting in a collective
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    ranks = [torch.load(str(tmp_path / f'rank{r}.pth'), weights_only=False) for r in (0, 1)]

    def max_diff(a, b):
        assert a.keys() == b.keys()
        return max(float((a[k] - b[k]).abs().max()) for k in a)

    for runs in ranks:
        assert runs['fsdp_global']['type'] == 'FSDPOptimWrapper'
        assert runs['fsdp_amp_global']['type'] == 'FSDPAmpOptimWrapper'
        ddp, ddp_amp = runs['ddp'], runs['ddp_amp']
        # clipping is active: the global norm is far above max_norm
        assert ddp['norm'] > 10 * max_norm and ddp_amp['norm'] > 10 * max_norm
        assert max_diff(runs['initial']['params'], ddp['params']) > 1e-3  # the step moved them
        # the global norm, and the step, equal DDP's
        for fsdp, ref in ((runs['fsdp_global'], ddp), (runs['fsdp_amp_global'], ddp_amp)):
            assert abs(fsdp['norm'] - ref['norm']) <= 1e-5 * ref['norm'], (fsdp['norm'],
                                                                           ref['norm'])
            for name in ref['params']:
                torch.testing.assert_close(
                    fsdp['params'][name],
                    ref['params'][name],
                    rtol=1e-5,
                    atol=1e-6,
                    msg=lambda m: f'{name}: {m}')
            assert fsdp['decay'] == ref['decay']  # weight decay as without FSDP
        assert ddp['decay']['backbone.layers.0.mlp.fc1.weight'] == 0.05
        assert ddp['decay']['backbone.layers.0.attn.q_bias'] == 0.0  # 1-D: no decay
        # the old clip: each rank's shard by its own, smaller norm -> a different step
        assert runs['fsdp_per_shard']['norm'] < 0.99 * ddp['norm']
        assert max_diff(runs['fsdp_per_shard']['params'], ddp['params']) > 1e-4
    # both ranks hold the same full weights after the step
    assert max_diff(ranks[0]['fsdp_global']['params'], ranks[1]['fsdp_global']['params']) == 0


def test_fsdp_optim_wrapper_outside_fsdp_clips_as_mmengine_and_checks_its_arguments():
    from mmengine.optim import OptimWrapper
    from torch import nn

    from mmbeit.engine import FSDPOptimWrapper
    grads = {}
    for cls in (OptimWrapper, FSDPOptimWrapper):
        torch.manual_seed(0)
        model = nn.Linear(4, 3)
        wrapper = cls(
            optimizer=torch.optim.SGD(model.parameters(), lr=1.0), clip_grad=dict(max_norm=0.1))
        with wrapper.optim_context(model):  # a plain module: no FSDP root
            loss = model(torch.randn(5, 4)).square().sum()
        wrapper.update_params(loss)
        grads[cls.__name__] = [p.detach().clone() for p in model.parameters()]
    for a, b in zip(grads['OptimWrapper'], grads['FSDPOptimWrapper']):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(ValueError, match='error_if_nonfinite'):
        FSDPOptimWrapper(
            optimizer=torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=1.0),
            clip_grad=dict(max_norm=1.0, error_if_nonfinite=True))


def test_fsdp_units_are_the_layers_and_the_frozen_tokenizers():
    from mmbeit.engine.fsdp_wrap_policy import beit_fsdp_wrap_policy
    from mmbeit.models import VQKD
    from mmbeit.models.backbones.beit import BEiT
    enc = dict(
        arch=dict(embed_dims=32, num_layers=1, num_heads=2, feedforward_channels=64),
        img_size=16,
        patch_size=8)
    frozen, training = (
        VQKD(encoder=enc, num_embed=8, embed_dims=4, frozen=f) for f in (True, False))
    backbone = BEiT(
        arch=dict(embed_dims=32, num_layers=1, num_heads=2, feedforward_channels=64),
        img_size=16,
        patch_size=8)

    def unit(m):
        return beit_fsdp_wrap_policy(m, recurse=False, nonwrapped_numel=0)

    assert unit(frozen) and not unit(training)  # a tokenizer in training: its layers only
    assert unit(training.encoder.layers[0]) and unit(backbone.layers[0])
    assert not unit(backbone) and not unit(backbone.patch_embed)
    assert beit_fsdp_wrap_policy(training, recurse=True, nonwrapped_numel=0)
