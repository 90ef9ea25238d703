"""Stop training on a non-finite loss, and never write a checkpoint with non-finite weights."""
import math
from typing import Any, Dict, List, Mapping, Optional

import torch
from mmengine.hooks import Hook

from mmbeit.registry import HOOKS
from mmbeit.utils.errors import NonFiniteLossError

__all__ = ['NonFiniteCheckHook', 'NonFiniteLossError']  # the error re-exported: its old home


@HOOKS.register_module()
class NonFiniteCheckHook(Hook):
    """Stop training at the first non-finite loss; refuse to save non-finite weights.

    Works for any model: it reads the log variables ``train_step`` returns
    (``loss`` and every ``loss_*``/``*loss*`` entry). It runs before the
    checkpoint hook of the same iteration, so the latest checkpoint (and the
    ``last_checkpoint`` file that ``--resume`` follows) stays the last good one.
    A checkpoint whose weights are not all finite (a finite loss whose step
    overflowed) is refused as well, before anything is written.

    With ``AmpOptimWrapper`` a non-finite *gradient* is expected now and then
    (the loss scaler skips that step); this hook looks at the loss itself.

    Add it to a config with ``custom_hooks = [dict(type='mmbeit.NonFiniteCheckHook')]``.

    Args:
        interval: Check the loss every ``interval`` iterations (the checkpoint
            check always runs).
        check_checkpoint: Also check the weights of every checkpoint before it is saved.
    """

    priority = 'ABOVE_NORMAL'  # before CheckpointHook (VERY_LOW) and the logger (BELOW_NORMAL)

    def __init__(self, interval: int = 1, check_checkpoint: bool = True) -> None:
        if interval < 1:
            raise ValueError(f'interval must be >= 1, got {interval}')
        self.interval = interval
        self.check_checkpoint = check_checkpoint

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch: Any = None,
                         outputs: Optional[Mapping[str, Any]] = None) -> None:
        if not outputs or not self.every_n_train_iters(runner, self.interval):
            return
        bad = {k: v for k, v in _loss_values(outputs).items() if not math.isfinite(v)}
        if bad:
            values = ', '.join(f'{k}={v}' for k, v in bad.items())
            raise NonFiniteLossError(
                f'non-finite loss at iteration {runner.iter + 1} (epoch {runner.epoch + 1}, '
                f'batch {batch_idx + 1}): {values}. Training stopped; no checkpoint of this '
                'iteration was written. Lower the learning rate, add warmup or gradient '
                "clipping (optim_wrapper.clip_grad=dict(max_norm=3.0)), or use 'bfloat16' "
                'instead of float16, then resume from the last checkpoint.')

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if not self.check_checkpoint:
            return
        bad = _non_finite_tensors(checkpoint.get('state_dict', {}))
        if bad:
            shown = ', '.join(bad[:5]) + (f', ... ({len(bad) - 5} more)' if len(bad) > 5 else '')
            raise NonFiniteLossError(
                f'refusing to save a checkpoint (epoch {runner.epoch + 1}): weights'
                f' are not finite in {shown}. The previous checkpoint is kept as the '
                'latest; resume from it with a lower learning rate or gradient clipping.')


def _loss_values(outputs: Mapping[str, Any]) -> Dict[str, float]:
    """The loss entries of a ``train_step`` result as floats."""
    values = {}
    for key, value in outputs.items():
        if 'loss' not in key:
            continue
        if isinstance(value, torch.Tensor):
            if value.numel() == 0 or not value.is_floating_point():
                continue
            # NaN anywhere makes the sum NaN; inf + -inf too
            value = value.detach().float().sum().item()
        if isinstance(value, (int, float)):
            values[key] = float(value)
    return values


def _non_finite_tensors(state_dict: Mapping[str, Any]) -> List[str]:
    return [
        k for k, v in state_dict.items() if isinstance(v, torch.Tensor) and v.is_floating_point()
        and not bool(torch.isfinite(v).all())
    ]
