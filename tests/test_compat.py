"""Compatibility fixes: the mmcv.ops stand-in; mmengine checkpoints under weights-only
torch.load; each fix waits for the import that needs it."""
import importlib.util
import inspect
import os
import os.path as osp
import pickletools
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest
import torch
import torch.nn as nn
from torch.utils.data import Dataset

import mmbeit
from mmbeit.utils.mmcv_ops_fallback import (MmcvOpsStandin, StandinSubmoduleFinder, point_sample,
                                            sigmoid_focal_loss)

needs_standin = pytest.mark.skipif(
    importlib.util.find_spec('mmcv._ext') is not None,
    reason='compiled mmcv ops are installed: the stand-in is not used')


def _run_python(code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS='1')
    return subprocess.run([sys.executable, '-c', textwrap.dedent(code)],
                          capture_output=True,
                          text=True,
                          env=env,
                          timeout=300)


@needs_standin
def test_mmseg_needs_the_standin_in_a_fresh_interpreter():
    result = _run_python("""
        import sys
        try:
            import mmseg.utils  # imports point_sample from mmcv.ops, unguarded
        except ModuleNotFoundError as e:
            assert 'mmcv._ext' in str(e), e
        else:
            raise AssertionError('mmseg.utils imported without mmbeit')
        import mmbeit
        import mmseg.utils
        assert 'mmcv._ext' not in sys.modules
        print('IMPORTS OK')
    """)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'IMPORTS OK' in result.stdout


def test_host_libraries_import_after_mmbeit():
    import mmpretrain.models  # noqa: F401
    import mmseg.apis  # noqa: F401
    import mmseg.datasets  # noqa: F401
    import mmseg.models  # noqa: F401
    import mmseg.visualization  # noqa: F401
    from mmengine.utils.dl_utils import mmcv_full_available

    # mmengine's check (used when the Runner wraps the model) still tells the truth
    compiled = importlib.util.find_spec('mmcv._ext') is not None
    assert mmcv_full_available() is compiled
    assert compiled or 'mmcv._ext' not in sys.modules


@needs_standin
def test_point_sample_by_hand():
    import mmcv.ops
    assert mmcv.ops.point_sample is point_sample
    feat = torch.arange(6.).reshape(1, 1, 2, 3)  # H=2, W=3
    # pixel (i, j) has its centre at ((j + .5) / W, (i + .5) / H)
    points = torch.tensor([[
        [0.5 / 3, 0.25],  # (0, 0) -> 0
        [2.5 / 3, 0.75],  # (1, 2) -> 5
        [1.0 / 3, 0.25],  # between (0, 0) and (0, 1) -> 0.5
        [1.5 / 3, 0.5]
    ]])  # between (0, 1) and (1, 1) -> 2.5
    out = mmcv.ops.point_sample(feat, points)
    assert out.shape == (1, 1, 4)
    torch.testing.assert_close(out[0, 0], torch.tensor([0., 5., 0.5, 2.5]))
    grid_out = point_sample(feat, points.reshape(1, 2, 2, 2))
    assert grid_out.shape == (1, 1, 2, 2)
    torch.testing.assert_close(grid_out.flatten(), out.flatten())


@needs_standin
def test_point_sample_matches_mmcv_source():
    # mmcv-lite ships point_sample.py; it needs no compiled op, only its package
    path = osp.join(osp.dirname(importlib.util.find_spec('mmcv').origin), 'ops', 'point_sample.py')
    spec = importlib.util.spec_from_file_location('_mmcv_point_sample_ref', path)
    ref = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref)
    torch.manual_seed(0)
    feat, points = torch.randn(2, 3, 7, 5), torch.rand(2, 11, 2) * 1.2 - 0.1
    for align_corners in (False, True):
        expected = ref.point_sample(feat, points, align_corners=align_corners)
        actual = point_sample(feat, points, align_corners=align_corners)
        assert (actual - expected).abs().max() <= 1e-6


@needs_standin
def test_sigmoid_focal_loss_matches_mmseg_python_version():
    import mmcv.ops
    from mmseg.models.losses.focal_loss import py_sigmoid_focal_loss
    assert mmcv.ops.sigmoid_focal_loss is sigmoid_focal_loss
    torch.manual_seed(0)
    logits = (torch.randn(6, 4) * 3).requires_grad_()
    target = torch.tensor([0, 3, 1, 4, 2, 4])  # 4 = background
    one_hot = torch.nn.functional.one_hot(target, 5)[:, :4].float()

    ours = sigmoid_focal_loss(logits, target, 2.0, 0.25, None, 'none')
    ref = py_sigmoid_focal_loss(logits, one_hot, gamma=2.0, alpha=0.25, reduction='none')
    assert (ours - ref).abs().max() <= 1e-5
    grad_ours, = torch.autograd.grad(ours.sum(), logits)
    grad_ref, = torch.autograd.grad(ref.sum(), logits)
    assert (grad_ours - grad_ref).abs().max() <= 1e-5

    mean = sigmoid_focal_loss(logits, target, 2.0, 0.25)  # mmcv: sum / N
    torch.testing.assert_close(mean, ref.sum() / 6)
    weight = torch.tensor([1., 2., 3., 4.])
    weighted = sigmoid_focal_loss(logits, target, 2.0, 0.25, weight, 'none')
    expected = ours * torch.tensor([1., 4., 2., 1., 3., 1.])[:, None]  # weight[target]
    torch.testing.assert_close(weighted, expected)
    with pytest.raises(ValueError, match='reduction'):
        sigmoid_focal_loss(logits, target, reduction='avg')


@needs_standin
def test_unknown_ops_raise_module_not_found():
    import mmcv.ops
    with pytest.raises(ModuleNotFoundError, match='compiled mmcv'):
        mmcv.ops.PSAMask
    with pytest.raises(ModuleNotFoundError, match='mmcv'):
        from mmcv.ops import CrissCrossAttention  # noqa: F401  (mmseg's guarded import)
    with pytest.raises(ModuleNotFoundError, match='compiled mmcv'):
        import mmcv.ops.nms  # noqa: F401
    assert not hasattr(mmcv.ops, '__wrapped__')  # dunders stay AttributeError


@needs_standin
def test_standin_and_loaders_wait_for_their_imports():
    """``import mmbeit`` imports neither mmcv nor the Runner; each fix applies on the import
    that needs it."""
    result = _run_python("""
        import sys
        import mmbeit
        assert 'mmcv' not in sys.modules and 'mmengine.runner' not in sys.modules
        import mmcv.ops
        from mmbeit.utils.mmcv_ops_fallback import MmcvOpsStandin
        standin = sys.modules['mmcv.ops']
        assert isinstance(standin, MmcvOpsStandin) and mmcv.ops is standin
        import mmseg.models
        from mmengine.runner import checkpoint
        from mmbeit.utils import checkpoint_io
        assert checkpoint.CheckpointLoader._schemes[''] is checkpoint_io.load_from_safe_local
        assert checkpoint.CheckpointLoader._schemes['https://'] is checkpoint_io.load_from_safe_http
        assert checkpoint.load_from_http is checkpoint_io.load_from_safe_http
        print('LAZY OK')
    """)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'LAZY OK' in result.stdout


@needs_standin
def test_apply_compat_is_idempotent():
    import mmcv.ops  # noqa: F401  (the stand-in is swapped in on this import)
    standin = sys.modules['mmcv.ops']
    assert isinstance(standin, MmcvOpsStandin)
    mmbeit.apply_compat()
    mmbeit.apply_compat()
    assert sys.modules['mmcv.ops'] is standin
    assert sum(isinstance(f, StandinSubmoduleFinder) for f in sys.meta_path) == 1


def test_torch_hub_defaults_to_weights_only():
    import torch.utils.model_zoo
    params = inspect.signature(torch.hub.load_state_dict_from_url).parameters
    assert params['weights_only'].default is True
    assert torch.utils.model_zoo.load_url is torch.hub.load_state_dict_from_url


# ---------------------------------------------------------------------------
# mmengine checkpoints under torch.load's default weights_only=True


class _TinyModel:
    """Built lazily so that importing this file does not import mmengine.model."""

    @staticmethod
    def build() -> nn.Module:
        from mmengine.model import BaseModel

        class Regressor(BaseModel):

            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(2, 1)

            def forward(self, x, y, mode='tensor'):
                out = self.fc(x).squeeze(-1)  # [B]
                if mode == 'loss':
                    return dict(loss=((out - y)**2).mean())
                return out

        torch.manual_seed(0)
        return Regressor()


class _TinyDataset(Dataset):

    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int) -> dict:
        g = torch.Generator().manual_seed(i)
        return dict(x=torch.randn(2, generator=g), y=torch.tensor(float(i)))


def _pickled_globals(path: str) -> set:
    with zipfile.ZipFile(path) as archive:
        name = next(n for n in archive.namelist() if n.endswith('data.pkl'))
        data = archive.read(name)
    return {arg for op, arg, _ in pickletools.genops(data) if op.name == 'GLOBAL'}


def _runner(work_dir: str, name: str, max_epochs: int, **kwargs):
    from mmengine.runner import Runner
    return Runner(
        model=_TinyModel.build(),
        work_dir=work_dir,
        experiment_name=name,
        train_dataloader=dict(
            dataset=_TinyDataset(),
            batch_size=4,
            sampler=dict(type='DefaultSampler', shuffle=True),
            collate_fn=dict(type='default_collate')),
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01, momentum=0.9)),
        param_scheduler=dict(type='MultiStepLR', milestones=[1]),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1)),
        randomness=dict(seed=0),
        log_level='WARNING',
        **kwargs)


def test_runner_resumes_under_default_weights_only(tmp_path, monkeypatch):
    from mmengine.hooks import Hook
    monkeypatch.delenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', raising=False)
    work_dir = str(tmp_path)

    first = _runner(work_dir, f'first_{tmp_path.name}', max_epochs=2)
    first.train()
    ckpt = osp.join(work_dir, 'epoch_2.pth')
    # the checkpoint needs the allowlist: without it torch refuses it
    assert 'mmengine.logging.history_buffer HistoryBuffer' in _pickled_globals(ckpt)
    saved = torch.load(ckpt)  # torch's default, weights_only=True
    assert saved['meta']['epoch'] == 2

    class Record(Hook):

        def __init__(self):
            self.seen = []

        def before_train_epoch(self, runner):
            lr_history = runner.message_hub.get_scalar('train/lr')
            weight = runner.model.fc.weight.detach().clone()
            self.seen.append((runner.epoch, lr_history.data[0].size, weight))

    record = Record()
    second = _runner(
        work_dir, f'second_{tmp_path.name}', max_epochs=3, resume=True, custom_hooks=[record])
    second.train()
    assert [epoch for epoch, _, _ in record.seen] == [2]  # continued after epoch 2
    assert second.epoch == 3
    assert record.seen[0][1] > 0  # the HistoryBuffer came back from the checkpoint
    torch.testing.assert_close(record.seen[0][2], saved['state_dict']['fc.weight'])


def test_mmengine_load_checkpoint_with_numpy_meta(tmp_path):
    from mmengine.runner import load_checkpoint
    model = _TinyModel.build()
    path = str(tmp_path / 'with_numpy.pth')
    meta = dict(best=np.float64(0.5), step=np.int32(3), hist=np.arange(4.), classes=('a', 'b'))
    torch.save(dict(state_dict=model.state_dict(), meta=meta), path)
    other = _TinyModel.build()
    with torch.no_grad():
        other.fc.weight.zero_()
    checkpoint = load_checkpoint(other, path)
    torch.testing.assert_close(other.fc.weight, model.fc.weight)
    assert checkpoint['meta']['best'] == np.float64(0.5)
    np.testing.assert_array_equal(checkpoint['meta']['hist'], np.arange(4.))


def test_one_cycle_scheduler_state_round_trips(tmp_path):
    from mmengine.optim.scheduler import OneCycleParamScheduler
    optimizer = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1)
    scheduler = OneCycleParamScheduler(optimizer, 'lr', eta_max=0.1, total_steps=10)
    path = str(tmp_path / 'sched.pth')
    torch.save(scheduler.state_dict(), path)
    state = torch.load(path)
    assert state['anneal_func'] is OneCycleParamScheduler._annealing_cos
