"""mmbeit's registry nodes.

Every node is a direct child of mmengine's root registry with scope
``mmbeit``, so that configs of other scopes reach our components as
``type='mmbeit.BEiT'`` without clashing with mmpretrain's and mmseg's own
BEiT classes. ``locations`` imports the components lazily on first lookup.
"""
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import \
    OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import OPTIM_WRAPPERS as MMENGINE_OPTIM_WRAPPERS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import VISUALIZERS as MMENGINE_VISUALIZERS
from mmengine.registry import RUNNERS as MMENGINE_RUNNERS
from mmengine.registry import Registry

__all__ = ['RUNNERS', 'MODELS', 'TRANSFORMS', 'DATASETS', 'HOOKS', 'METRICS',
           'OPTIM_WRAPPER_CONSTRUCTORS', 'OPTIM_WRAPPERS', 'VISUALIZERS']

RUNNERS = Registry('runner', parent=MMENGINE_RUNNERS, scope='mmbeit',
                   locations=['mmbeit.engine'])
MODELS = Registry('model', parent=MMENGINE_MODELS, scope='mmbeit',
                  locations=['mmbeit.models'])
TRANSFORMS = Registry('transform', parent=MMENGINE_TRANSFORMS,
                      scope='mmbeit', locations=['mmbeit.datasets'])
DATASETS = Registry('dataset', parent=MMENGINE_DATASETS, scope='mmbeit',
                    locations=['mmbeit.datasets'])
HOOKS = Registry('hook', parent=MMENGINE_HOOKS, scope='mmbeit',
                 locations=['mmbeit.engine'])
METRICS = Registry('metric', parent=MMENGINE_METRICS, scope='mmbeit',
                   locations=['mmbeit.evaluation'])
OPTIM_WRAPPER_CONSTRUCTORS = Registry(
    'optimizer wrapper constructor',
    parent=MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS, scope='mmbeit',
    locations=['mmbeit.engine'])
OPTIM_WRAPPERS = Registry('optim_wrapper', parent=MMENGINE_OPTIM_WRAPPERS, scope='mmbeit',
                          locations=['mmbeit.engine'])
VISUALIZERS = Registry('visualizer', parent=MMENGINE_VISUALIZERS,
                       scope='mmbeit', locations=['mmbeit.visualization'])
