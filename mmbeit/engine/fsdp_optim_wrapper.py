"""Optimizer wrappers that clip FSDP gradients by their global norm.

mmengine's ``OptimWrapper._clip_grad`` calls ``torch.nn.utils.clip_grad_norm_``
on the optimizer's parameters. Under FSDP (sharded strategies) each rank holds
only its shard of every gradient, so that norm is the norm of the local shard:
at most the global norm, and a different one on every rank. ``max_norm=3.0``
then clips less than under DDP, and the ranks scale their shards by different
factors, so the update is not the clipped gradient's direction either.

These wrappers clip as unilm does under DDP: by the norm over all shards, with
``FullyShardedDataParallel.clip_grad_norm_`` of the root FSDP module (an all-reduce
of the shards' norms; it also handles ``NO_SHARD`` and parameters outside FSDP).
The root is the model that mmengine's ``train_step`` passes to ``optim_context``.
With a model that is not FSDP (one process, DDP) they clip as ``OptimWrapper``,
whose norm is already global there (DDP averages full gradients).

In a config trained by ``FSDPStrategy``::

    optim_wrapper = dict(type='mmbeit.FSDPAmpOptimWrapper', clip_grad=dict(max_norm=3.0), ...)
"""
from contextlib import contextmanager
from typing import Iterator, Optional

import torch
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from torch import nn

from mmbeit.registry import OPTIM_WRAPPERS

__all__ = ['FSDPOptimWrapper', 'FSDPAmpOptimWrapper']

# the keyword arguments of FullyShardedDataParallel.clip_grad_norm_
_FSDP_CLIP_KEYS = ('max_norm', 'norm_type')


def _fsdp_class():
    from torch.distributed.fsdp import FullyShardedDataParallel
    return FullyShardedDataParallel


def _is_distributed() -> bool:
    dist = torch.distributed
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class _GlobalNormClipMixin:
    """Clips by ``FullyShardedDataParallel.clip_grad_norm_`` of the model seen last.

    Mixed into ``OptimWrapper`` subclasses; uses their ``clip_grad_kwargs``,
    ``clip_func``, ``grad_name`` and ``message_hub``.
    """

    _clip_model: Optional[nn.Module] = None

    def _check_clip_kwargs(self) -> None:
        # value clipping is element-wise: per shard equals global, so it stays as is
        if not self.clip_grad_kwargs or self.grad_name != 'grad_norm':
            return
        extra = sorted(set(self.clip_grad_kwargs) - set(_FSDP_CLIP_KEYS))
        if extra:
            raise ValueError(
                f'{type(self).__name__}: clip_grad={self.clip_grad_kwargs} has {extra}; '
                f'FullyShardedDataParallel.clip_grad_norm_ takes only {list(_FSDP_CLIP_KEYS)}')

    @contextmanager
    def optim_context(self, model: nn.Module) -> Iterator[None]:
        """Remembers ``model`` (the wrapped root) for clipping, then enters the
        parent's context (no_sync during accumulation, autocast for AMP)."""
        self._clip_model = model
        with super().optim_context(model):
            yield

    def _clip_grad(self) -> None:
        """Clips every gradient of the FSDP model by the norm over all ranks' shards."""
        fsdp = _fsdp_class()
        model = self._clip_model
        if self.grad_name != 'grad_norm' or not isinstance(model, fsdp):
            if self.grad_name == 'grad_norm' and model is None and _is_distributed():
                raise RuntimeError(
                    f'{type(self).__name__} clips FSDP gradients by their global norm and needs '
                    'the root FSDP model: call update_params inside '
                    'optim_wrapper.optim_context(model), as mmengine\'s train_step does')
            super()._clip_grad()
            return
        # the root FSDP instance: clip_grad_norm_ refuses the nested units
        total_norm = model.clip_grad_norm_(**self.clip_grad_kwargs)
        self.message_hub.update_scalar(f'train/{self.grad_name}', float(total_norm))


@OPTIM_WRAPPERS.register_module()
class FSDPOptimWrapper(_GlobalNormClipMixin, OptimWrapper):
    """``OptimWrapper`` (float32) whose ``clip_grad`` norm is the global one under FSDP.

    Args:
        **kwargs: as ``mmengine.optim.OptimWrapper`` (``optimizer``,
            ``accumulative_counts``, ``clip_grad``). ``clip_grad`` of type
            ``'norm'`` takes ``max_norm`` and ``norm_type`` only.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._check_clip_kwargs()


@OPTIM_WRAPPERS.register_module()
class FSDPAmpOptimWrapper(_GlobalNormClipMixin, AmpOptimWrapper):
    """``AmpOptimWrapper`` with FSDP's sharded grad scaler, clipping by the global norm.

    Gradients are unscaled (``ShardedGradScaler.unscale_``, which agrees on
    non-finite values across ranks) before they are clipped, as in
    ``AmpOptimWrapper.step``.

    Args:
        use_fsdp (bool): use ``ShardedGradScaler``. Defaults to True (mmengine's
            ``FSDPStrategy`` sets it only for ``type='AmpOptimWrapper'``).
        **kwargs: as ``mmengine.optim.AmpOptimWrapper`` (``loss_scale``, ``dtype``,
            ``optimizer``, ``accumulative_counts``, ``clip_grad``).
    """

    def __init__(self, use_fsdp: bool = True, **kwargs) -> None:
        super().__init__(use_fsdp=use_fsdp, **kwargs)
        self._check_clip_kwargs()
