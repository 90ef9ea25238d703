"""Test a model in bf16 (autocast) or int8 (dynamic int8 linear layers) with mmengine's
Runner: the hook behind ``tools/test.py --dtype``."""
from typing import Any, Optional

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmbeit.deployment.quantize import autocast_context, check_dtype, prepare_for_dtype
from mmbeit.registry import HOOKS

__all__ = ['InferenceDtypeHook', 'add_inference_dtype_hook']


@HOOKS.register_module()
class InferenceDtypeHook(Hook):
    """Run the test loop in ``dtype``: 'int8' quantizes the model's linear layers once the
    checkpoint is loaded (``before_test``); 'bf16' runs every test step under autocast.

    Add it with :func:`add_inference_dtype_hook`, or in a config:
    ``custom_hooks = [dict(type='mmbeit.InferenceDtypeHook', dtype='bf16')]``.

    Args:
        dtype: 'fp32' (nothing changes), 'bf16' or 'int8' (CPU only).
    """

    priority = 'VERY_HIGH'  # quantize before any other hook sees the test model

    def __init__(self, dtype: str = 'bf16') -> None:
        self.dtype = check_dtype(dtype)
        self._autocast: Optional[Any] = None

    def _model(self, runner):
        return runner.model.module if is_model_wrapper(runner.model) else runner.model

    def before_test(self, runner) -> None:
        prepare_for_dtype(self._model(runner), self.dtype)

    def before_test_iter(self, runner, batch_idx: int, data_batch: Any = None) -> None:
        model = self._model(runner)
        device = next(iter(model.parameters())).device.type
        self._autocast = autocast_context(self.dtype, device)
        self._autocast.__enter__()

    def after_test_iter(self,
                        runner,
                        batch_idx: int,
                        data_batch: Any = None,
                        outputs: Any = None) -> None:
        if self._autocast is not None:
            self._autocast.__exit__(None, None, None)
            self._autocast = None


def add_inference_dtype_hook(cfg: Any, dtype: Optional[str]) -> Any:
    """Add :class:`InferenceDtypeHook` for ``dtype`` to the runner config ``cfg`` (in place);
    'fp32' or None leaves it as it is. Returns ``cfg``."""
    if dtype and check_dtype(dtype) != 'fp32':
        hooks = list(cfg.get('custom_hooks') or [])
        hooks.append(dict(type='mmbeit.InferenceDtypeHook', dtype=dtype))
        cfg.custom_hooks = hooks
    return cfg
