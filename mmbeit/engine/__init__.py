"""mmbeit.engine: the training engine around mmengine's Runner.

Importing it registers the hooks (``HOOKS``, among them ``InferenceDtypeHook`` for
``tools/test.py --dtype``), the layer-decay optimizer
wrapper constructor and the FSDP one (``OPTIM_WRAPPER_CONSTRUCTORS``), the FSDP optimizer
wrappers (``OPTIM_WRAPPERS``) and ``BEiTRunner``
(``RUNNERS``). It imports mmengine's Runner: the models never import it.
"""
from .atomic_checkpoint_hook import AtomicCheckpointHook
from .cls_visualization_hook import ClsVisualizationHook
from .code_usage_reset_hook import CodeUsageResetHook
from .fsdp_optim_wrapper import FSDPAmpOptimWrapper, FSDPOptimWrapper
from .fsdp_optim_wrapper_constructor import FSDPOptimWrapperConstructor
from .fsdp_wrap_policy import beit_fsdp_wrap_policy
from .inference_dtype_hook import InferenceDtypeHook, add_inference_dtype_hook
from .layer_decay_optim_wrapper_constructor import LayerDecayOptimWrapperConstructor
from .non_finite_check_hook import NonFiniteCheckHook, NonFiniteLossError
from .resumable_randomness_hook import ResumableRandomnessHook
from .runner import BEiTRunner

__all__ = [
    'AtomicCheckpointHook', 'BEiTRunner', 'ClsVisualizationHook', 'CodeUsageResetHook',
    'FSDPAmpOptimWrapper', 'FSDPOptimWrapper', 'FSDPOptimWrapperConstructor', 'InferenceDtypeHook',
    'LayerDecayOptimWrapperConstructor', 'NonFiniteCheckHook', 'NonFiniteLossError',
    'ResumableRandomnessHook', 'add_inference_dtype_hook', 'beit_fsdp_wrap_policy'
]
