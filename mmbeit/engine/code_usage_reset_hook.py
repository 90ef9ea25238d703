"""Reset a VQ-KD codebook's usage counts at every training epoch, as unilm does."""
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmbeit.registry import HOOKS

__all__ = ['CodeUsageResetHook']


@HOOKS.register_module()
class CodeUsageResetHook(Hook):
    """Call the model's ``reset_code_usage()`` before each training epoch, so that the
    logged ``codes_unused`` counts the codes not chosen in this epoch so far (unilm's
    ``engine_for_vqkd.py`` resets ``quantize.cluster_size`` at every epoch start).

    ``custom_hooks = [dict(type='mmbeit.CodeUsageResetHook')]``; the VQ-KD configs have it.
    """

    priority = 'NORMAL'

    def before_train_epoch(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        if not hasattr(model, 'reset_code_usage'):
            raise TypeError(f'CodeUsageResetHook needs a model with reset_code_usage() '
                            f'(mmbeit.VQKDTrainer), got {type(model).__name__}')
        model.reset_code_usage()
