"""Distributed data parallel training: two CPU processes (gloo) through tools/dist_train.sh.

Each rank trains on its own half of the data (checked: the halves are disjoint
and cover the set), so identical weights at the end mean the gradients were
averaged across the ranks, not that both processes happened to do the same.
"""
import os
import os.path as osp
import shutil
import socket
import subprocess
import sys

import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG = osp.join(ROOT, 'tests', 'data', 'dist_cls_sample.py')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.fixture(scope='module')
def sample_root(tmp_path_factory):
    from mmbeit.utils.sample_data import generate_sample_data
    root = str(tmp_path_factory.mktemp('sample'))
    return generate_sample_data(root, cls_train_per_class=4, cls_val_per_class=1,
                                seg_train=1, seg_val=1)


@pytest.mark.skipif(shutil.which('bash') is None, reason='tools/dist_train.sh needs bash')
def test_two_cpu_processes_hold_the_same_weights(sample_root, tmp_path):
    data_root = osp.join(sample_root, 'imagenet')
    work_dir = str(tmp_path / 'work')
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHON=sys.executable, PORT=str(_free_port()),
               PYTHONPATH=osp.join(ROOT, 'tests', 'data'), CUDA_VISIBLE_DEVICES='')
    # 20 images, 10 per rank, 2 iterations of 4 per rank
    cmd = ['bash', osp.join(ROOT, 'tools', 'dist_train.sh'), CONFIG, '2',
           '--work-dir', work_dir, '--no-validate', '--cfg-options',
           f'train_dataloader.dataset.data_root={data_root}',
           f'test_dataloader.dataset.data_root={data_root}',
           'train_dataloader.batch_size=4', 'train_dataloader.num_workers=0',
           'train_dataloader.persistent_workers=False', 'train_cfg.max_epochs=1',
           'default_hooks.logger.interval=1', 'default_hooks.checkpoint.interval=1',
           'env_cfg.dist_cfg.backend=gloo']
    proc = subprocess.run(cmd, cwd=str(tmp_path), env=env, capture_output=True, text=True,
                          timeout=240)
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
    differing = [k for k in first['final']
                 if not torch.equal(first['final'][k], second['final'][k])]
    assert not differing, f'the ranks diverged: {differing[:5]}'
    trained = [k for k in first['final'] if first['final'][k].is_floating_point()
               and not torch.equal(first['final'][k], first['initial'][k])]
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
    env = dict(os.environ, OMP_NUM_THREADS='1', RANK='0', WORLD_SIZE='1', LOCAL_RANK='0',
               MASTER_ADDR='127.0.0.1', MASTER_PORT=str(_free_port()), CUDA_VISIBLE_DEVICES='')
    proc = subprocess.run([sys.executable, '-c', FSDP_STEP, osp.join(ROOT, FSDP_CONFIG), small,
                           osp.join(ROOT, 'tests')], cwd=str(tmp_path), env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-5000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    # the root, one unit per transformer layer (4 in the tiny arch), the tokenizer
    assert out['units'] == [''] + [f'backbone.layers.{i}' for i in range(4)] + ['target_generator']
    assert torch.isfinite(torch.tensor(out['loss']))
    assert not out['no_grad'] and not out['frozen_grad']
