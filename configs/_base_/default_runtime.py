# Runtime shared by mmbeit's classification and MIM configs (mmpretrain scope).
default_scope = 'mmpretrain'
# mmbeit registers its components (type='mmbeit.BEiT', ...) on import.
custom_imports = dict(imports=['mmbeit'], allow_failed_imports=False)
# mmpretrain's / mmseg's own tools/train.py and tools/test.py (and mim) build this Runner too:
# load_from and resume read every BEiT checkpoint format through mmbeit's loading pipeline
runner_type = 'mmbeit.BEiTRunner'

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=100),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # writes to a temporary name and renames: a killed run always leaves a checkpoint to resume from
    checkpoint=dict(type='mmbeit.AtomicCheckpointHook', interval=1),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    # set enable=True (or pass --show-dir to tools/test.py) to draw predictions
    visualization=dict(type='VisualizationHook', enable=False),
)

# stop on a non-finite loss (naming the iteration) before a NaN checkpoint is written;
# reseed per iteration so that a resumed run draws the same random numbers as an uninterrupted one
custom_hooks = [dict(type='mmbeit.NonFiniteCheckHook'), dict(type='mmbeit.ResumableRandomnessHook')]

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)

# Add dict(type='TensorboardVisBackend') to log to TensorBoard as well.
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='UniversalVisualizer', vis_backends=vis_backends)

log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=None, deterministic=False)
