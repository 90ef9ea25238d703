"""Parameter-wise optimizer settings that see FSDP parameters in their true shapes.

mmengine's strategies build the optimizer from the wrapped model. Under FSDP with
``use_orig_params=True`` every parameter of a rank is then a flat 1-D piece of
its shard, so ``DefaultOptimWrapperConstructor`` takes every weight matrix for a
bias: ``flat_decay_mult=0.0`` (BEiT's "no weight decay on 1-D parameters") turns
weight decay off for the whole model, and ``bias_*`` / ``norm_*`` rules misfire
alike. This constructor assigns the groups inside ``FSDP.summon_full_params``,
where the same parameter objects have their original shapes, so the groups equal
those of the unwrapped model; the optimizer then holds the sharded parameters.
"""
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapper
from torch import nn

from mmbeit.registry import OPTIM_WRAPPER_CONSTRUCTORS

__all__ = ['FSDPOptimWrapperConstructor']


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class FSDPOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """``DefaultOptimWrapperConstructor`` for FSDP models (``use_orig_params=True``).

    Same arguments and ``paramwise_cfg`` keys as mmengine's constructor; any
    other model is handled exactly as mmengine's constructor handles it.
    """

    def __call__(self, model: nn.Module) -> OptimWrapper:
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
        if not isinstance(model, FSDP):
            return super().__call__(model)
        sharded = {id(p) for p in model.parameters()}
        # collective: every rank gathers the full parameters once, read-only
        with FSDP.summon_full_params(model, writeback=False):
            optim_wrapper = super().__call__(model)
        groups = optim_wrapper.optimizer.param_groups
        if any(id(p) not in sharded for group in groups for p in group['params']):
            raise ValueError(
                'FSDPOptimWrapperConstructor needs the FSDP model wrapper built with '
                'use_orig_params=True (strategy.model_wrapper.use_orig_params), so that the '
                'optimizer holds the original parameters')
        return optim_wrapper
