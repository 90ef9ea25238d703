"""Distributed data parallel training on CPUs (gloo) through mmengine's launchers.

mmengine's ``pytorch`` launcher assumes one GPU per process: ``init_dist``
calls ``torch.cuda.set_device(LOCAL_RANK)`` (which raises without a GPU
driver), and the Runner wraps the model in ``MMDistributedDataParallel`` with
``device_ids=[LOCAL_RANK]`` (which DDP refuses for a CPU module). Where no
GPU is present, :func:`prepare_cpu_distributed` does the two steps the CPU
way before the Runner is built: it starts the process group itself (the
Runner then skips ``init_dist``) and asks for DDP without ``device_ids``.
With a GPU it changes nothing.
"""
import os
from typing import Any

import torch
import torch.distributed as dist

__all__ = ['prepare_cpu_distributed']

_ENV = ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT')


def prepare_cpu_distributed(cfg: Any) -> bool:
    """Make ``cfg`` (launcher ``'pytorch'``) train on CPUs; no-op with a GPU.

    Args:
        cfg: a Runner config whose ``launcher`` is set (the tools set it).
            ``env_cfg.dist_cfg.backend`` must be ``'gloo'`` on CPUs.

    Returns:
        bool: whether ``cfg`` was set up for DDP on CPUs.

    Raises:
        ValueError: the backend is not ``'gloo'`` (NCCL needs GPUs).
        KeyError: torchrun's environment variables are missing.
    """
    if cfg.get('launcher', 'none') != 'pytorch' or torch.cuda.is_available():
        return False
    dist_cfg = dict(cfg.get('env_cfg', {}).get('dist_cfg', {}) or {})
    backend = dist_cfg.pop('backend', 'nccl')
    if backend != 'gloo':
        raise ValueError(
            f"distributed training without a GPU needs env_cfg.dist_cfg.backend='gloo', got "
            f"{backend!r}; e.g. --cfg-options env_cfg.dist_cfg.backend=gloo")
    missing = [k for k in _ENV if k not in os.environ]
    if missing:
        raise KeyError(f"launcher 'pytorch' needs torchrun's environment variables; missing "
                       f'{missing} (start with tools/dist_train.sh or torchrun)')
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo', **dist_cfg)
    wrapper = cfg.get('model_wrapper_cfg') or dict(type='MMDistributedDataParallel')
    wrapper = dict(wrapper)
    # DDP on a CPU module takes no device ids (the Runner's default is [LOCAL_RANK])
    wrapper['device_ids'] = None
    wrapper.setdefault('broadcast_buffers', False)
    wrapper.setdefault('find_unused_parameters', cfg.get('find_unused_parameters', False))
    cfg.model_wrapper_cfg = wrapper
    return True
