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
    checkpoint is loaded (``before_test``); 'bf16' runs every ``test_step`` under autocast.

    Add it with :func:`add_inference_dtype_hook`, or in a config:
    ``custom_hooks = [dict(type='mmbeit.InferenceDtypeHook', dtype='bf16')]``.

    Args:
        dtype: 'fp32' (nothing changes), 'bf16' or 'int8' (CPU only).
    """

    priority = 'VERY_HIGH'  # quantize before any other hook sees the test model

    def __init__(self, dtype: str = 'bf16') -> None:
        self.dtype = check_dtype(dtype)

    def _model(self, runner):
        return runner.model.module if is_model_wrapper(runner.model) else runner.model

    def before_test(self, runner) -> None:
        model = self._model(runner)
        prepare_for_dtype(model, self.dtype)
        if self.dtype == 'bf16':
            # wrap test_step itself: mmengine's TestLoop runs it inside its own
            # autocast(enabled=fp16), which would switch an outer autocast off
            test_step = model.test_step
            device = next(iter(model.parameters())).device.type

            def autocast_test_step(data: Any) -> Any:
                with autocast_context('bf16', device):
                    return test_step(data)

            model.test_step = autocast_test_step

    def after_test(self, runner) -> None:
        model = self._model(runner)
        if 'test_step' in vars(model):  # back to the class's test_step
            del model.test_step


def add_inference_dtype_hook(cfg: Any, dtype: Optional[str]) -> Any:
    """Add :class:`InferenceDtypeHook` for ``dtype`` to the runner config ``cfg`` (in place);
    'fp32' or None leaves it as it is. Returns ``cfg``."""
    if dtype and check_dtype(dtype) != 'fp32':
        hooks = list(cfg.get('custom_hooks') or [])
        hooks.append(dict(type='mmbeit.InferenceDtypeHook', dtype=dtype))
        cfg.custom_hooks = hooks
    return cfg
