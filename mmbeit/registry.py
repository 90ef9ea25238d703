"""mmbeit's registry nodes.

Every node is a direct child of mmengine's root registry with scope
``mmbeit``, so that configs of other scopes reach our components as
``type='mmbeit.BEiT'`` without clashing with mmpretrain's and mmseg's own
BEiT classes. ``locations`` names the package whose ``__init__`` imports the
modules that register the components; it is imported on the first lookup.

Only registries that something is registered in exist here: datasets,
metrics and visualizers are mmpretrain's and mmseg's (mmbeit adds none).
``RUNNERS`` holds :class:`~mmbeit.engine.runner.BEiTRunner`, built by
``runner_type='mmbeit.BEiTRunner'`` in a config (mmengine's ``Runner.from_cfg``
path) and directly by :func:`mmbeit.apis.run.train`.
"""
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import OPTIM_WRAPPERS as MMENGINE_OPTIM_WRAPPERS
from mmengine.registry import RUNNERS as MMENGINE_RUNNERS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import Registry

__all__ = [
    'RUNNERS', 'MODELS', 'TRANSFORMS', 'HOOKS', 'OPTIM_WRAPPER_CONSTRUCTORS', 'OPTIM_WRAPPERS'
]

# BEiTRunner
RUNNERS = Registry('runner', parent=MMENGINE_RUNNERS, scope='mmbeit', locations=['mmbeit.engine'])
# backbones, heads, algorithms, target generators, data preprocessors
MODELS = Registry('model', parent=MMENGINE_MODELS, scope='mmbeit', locations=['mmbeit.models'])
# data transforms and the mask generator
TRANSFORMS = Registry(
    'transform', parent=MMENGINE_TRANSFORMS, scope='mmbeit', locations=['mmbeit.datasets'])
# training hooks
HOOKS = Registry('hook', parent=MMENGINE_HOOKS, scope='mmbeit', locations=['mmbeit.engine'])
# the layer-decay optimizer wrapper constructor
OPTIM_WRAPPER_CONSTRUCTORS = Registry(
    'optimizer wrapper constructor',
    parent=MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS,
    scope='mmbeit',
    locations=['mmbeit.engine'])
# the FSDP optimizer wrappers (global-norm clipping)
OPTIM_WRAPPERS = Registry(
    'optim_wrapper', parent=MMENGINE_OPTIM_WRAPPERS, scope='mmbeit', locations=['mmbeit.engine'])
