"""A run killed with SIGKILL and resumed ends with the weights of one that ran straight through.

Each case runs ``tools/train.py`` three times in subprocesses on the bundled
sample data (CPU, ``randomness=dict(seed=0, deterministic=True)``), with a
tiny schedule written as a config that inherits the real one:

1. straight through;
2. killed with SIGKILL by a hook at an iteration after the first checkpoint
   (a real SIGKILL: no handler, no cleanup), or while it saves a checkpoint;
3. ``--resume`` of the killed run's work dir.

The final weights of 1 and 3 must be bitwise equal. The configs use
``mmbeit.ResumableRandomnessHook`` (the generators follow the training
position) and ``mmbeit.AtomicCheckpointHook`` (a kill while saving leaves the
previous checkpoint usable).
"""
import os
import os.path as osp
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

pytestmark = [pytest.mark.slow, pytest.mark.subprocess]  # tiers: docs/testing.md

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CLS_CFG = osp.join(ROOT, 'configs/beit/benchmarks/beit-tiny-p8_1xb32-20e_sample.py')
MIM_CFG = osp.join(ROOT, 'configs/beit/beit_beit-tiny-p8_1xb32-10e_sample.py')
SEG_CFG = osp.join(ROOT, 'configs/upernet_beit/upernet_beit-tiny_1xb8-500_sample-64x64.py')

# registered in mmengine's root HOOKS, so any default scope finds it
KILL_HOOKS = textwrap.dedent('''
    import os
    import signal

    from mmengine.hooks import Hook
    from mmengine.registry import HOOKS


    @HOOKS.register_module(force=True)
    class SigkillHook(Hook):
        """SIGKILL this process after iteration ``at_iter`` or while saving checkpoint
        ``at_save``."""
        priority = 'LOWEST'

        def __init__(self, at_iter=None, at_save=None):
            self.at_iter, self.at_save, self.saves = at_iter, at_save, 0

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            if runner.iter + 1 == self.at_iter:
                os.kill(os.getpid(), signal.SIGKILL)

        def before_save_checkpoint(self, runner, checkpoint):
            self.saves += 1
            if self.saves == self.at_save:
                os.kill(os.getpid(), signal.SIGKILL)
''')

# shared by every case: exact, fast, no validation, safe checkpoints
COMMON = textwrap.dedent('''
    randomness = dict(seed=0, deterministic=True)
    custom_imports = dict(imports=['mmbeit', 'sigkill_hook'], allow_failed_imports=False)
    custom_hooks = [dict(type='mmbeit.ResumableRandomnessHook')] + KILL
    default_hooks = dict(
        logger=dict(interval=1),
        checkpoint=dict(_delete_=True, type='mmbeit.AtomicCheckpointHook', interval=CKPT_INTERVAL,
                        by_epoch=BY_EPOCH, max_keep_ckpts=1))
    val_dataloader = None
    val_evaluator = None
    val_cfg = None
    test_dataloader = None
    test_evaluator = None
    test_cfg = None
''')

CASES = {
    # epoch-based: 24 images, batch 8 -> 3 iterations an epoch; 3 epochs
    'classification':
    dict(
        base=CLS_CFG,
        by_epoch=True,
        interval=1,
        final='epoch_3.pth',
        kill_iter=5,
        extra='''
        train_dataloader = dict(batch_size=8, num_workers=0, persistent_workers=False,
                                dataset=dict(indices=24, data_root=DATA_ROOT + '/imagenet'))
        train_cfg = dict(max_epochs=3, val_interval=100)
    '''),
    'mim':
    dict(
        base=MIM_CFG,
        by_epoch=True,
        interval=1,
        final='epoch_3.pth',
        kill_iter=5,
        extra='''
        train_dataloader = dict(batch_size=8, num_workers=0, persistent_workers=False,
                                dataset=dict(indices=24, data_root=DATA_ROOT + '/imagenet'))
        train_cfg = dict(max_epochs=3)
    '''),
    # iteration-based (InfiniteSampler): mmengine replays the data up to the resumed iteration
    'segmentation':
    dict(
        base=SEG_CFG,
        by_epoch=False,
        interval=3,
        final='iter_8.pth',
        kill_iter=5,
        extra='''
        train_dataloader = dict(batch_size=2, num_workers=1, persistent_workers=False,
                                dataset=dict(data_root=DATA_ROOT + '/ade'))
        train_cfg = dict(max_iters=8, val_interval=100)
    '''),
}


def _write_config(tmp_path, case: dict, kill: str, data_root: str) -> str:
    text = f'_base_ = {case["base"]!r}\n' + COMMON + textwrap.dedent(case['extra'])
    text = (
        text.replace('KILL', kill).replace('CKPT_INTERVAL', str(case['interval'])).replace(
            'BY_EPOCH', str(case['by_epoch'])).replace('DATA_ROOT', repr(data_root)))
    path = tmp_path / f'cfg_{abs(hash(kill))}.py'
    path.write_text(text)
    return str(path)


def _train(tmp_path, config: str, work_dir: str, *extra: str) -> subprocess.CompletedProcess:
    (tmp_path / 'sigkill_hook.py').write_text(KILL_HOOKS)
    env = dict(
        os.environ,
        OMP_NUM_THREADS='1',
        MKL_NUM_THREADS='1',
        PYTHONPATH=os.pathsep.join([str(tmp_path), ROOT,
                                    os.environ.get('PYTHONPATH', '')]))
    return subprocess.run(
        [sys.executable, 'tools/train.py', config, '--work-dir', work_dir, *extra],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600)


def _weights(path: str) -> dict:
    return torch.load(path, map_location='cpu', weights_only=True)['state_dict']


def _assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f'{len(differ)} tensors differ after resume, e.g. {differ[:5]}'


def _check(proc: subprocess.CompletedProcess, what: str) -> None:
    assert proc.returncode == 0, f'{what} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}'


@pytest.fixture(scope='module')
def sample_data(tmp_path_factory):
    """A small private copy of the sample data (data/sample may be regenerated meanwhile)."""
    from mmbeit.utils.sample_data import generate_sample_data
    return generate_sample_data(
        str(tmp_path_factory.mktemp('sample')),
        cls_train_per_class=8,
        cls_val_per_class=2,
        seg_train=16,
        seg_val=2)


@pytest.mark.parametrize('name', list(CASES))
def test_sigkill_and_resume_matches_straight_run(name, tmp_path, sample_data):
    case = CASES[name]
    straight = str(tmp_path / 'straight')
    _check(
        _train(tmp_path, _write_config(tmp_path, case, '[]', sample_data), straight),
        'the straight run')

    killed = str(tmp_path / 'killed')
    kill_cfg = _write_config(tmp_path, case,
                             f"[dict(type='SigkillHook', at_iter={case['kill_iter']})]",
                             sample_data)
    proc = _train(tmp_path, kill_cfg, killed)
    assert proc.returncode == -signal.SIGKILL, \
        f'not killed: {proc.returncode}\n{proc.stderr[-2000:]}'
    assert not osp.exists(osp.join(killed, case['final']))
    with open(osp.join(killed, 'last_checkpoint')) as f:
        assert osp.isfile(f.read().strip())

    _check(
        _train(tmp_path, _write_config(tmp_path, case, '[]', sample_data), killed, '--resume'),
        'the resumed run')
    _assert_same_weights(
        _weights(osp.join(straight, case['final'])), _weights(osp.join(killed, case['final'])))


def test_sigkill_while_saving_keeps_a_checkpoint_to_resume_from(tmp_path, sample_data):
    """mmengine's CheckpointHook deletes the old checkpoint before writing the new one;
    AtomicCheckpointHook keeps it until the new one is in place."""
    case = CASES['classification']
    straight = str(tmp_path / 'straight')
    _check(
        _train(tmp_path, _write_config(tmp_path, case, '[]', sample_data), straight),
        'the straight run')

    killed = str(tmp_path / 'killed')
    proc = _train(
        tmp_path, _write_config(tmp_path, case, "[dict(type='SigkillHook', at_save=2)]",
                                sample_data), killed)
    assert proc.returncode == -signal.SIGKILL
    with open(osp.join(killed, 'last_checkpoint')) as f:
        last = f.read().strip()
    assert osp.basename(last) == 'epoch_1.pth' and osp.isfile(last)

    _check(
        _train(tmp_path, _write_config(tmp_path, case, '[]', sample_data), killed, '--resume'),
        'the resumed run')
    _assert_same_weights(
        _weights(osp.join(straight, case['final'])), _weights(osp.join(killed, case['final'])))
