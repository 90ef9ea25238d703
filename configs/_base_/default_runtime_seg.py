# Runtime shared by mmbeit's segmentation configs (mmseg scope).
default_scope = 'mmseg'
# mmbeit registers its components (type='mmbeit.BEiT', ...) on import.
custom_imports = dict(imports=['mmbeit'], allow_failed_imports=False)
# mmpretrain's / mmseg's own tools/train.py and tools/test.py (and mim) build this Runner too:
# load_from and resume read every BEiT checkpoint format through mmbeit's loading pipeline
runner_type = 'mmbeit.BEiTRunner'

# stop on a non-finite loss (naming the iteration) before a NaN checkpoint is written;
# reseed per iteration so that a resumed run draws the same random numbers as an uninterrupted one
custom_hooks = [dict(type='mmbeit.NonFiniteCheckHook'), dict(type='mmbeit.ResumableRandomnessHook')]

env_cfg = dict(
    cudnn_benchmark=True,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)

# tools/test.py --show-dir DIR turns on the SegVisualizationHook and writes the
# overlays under DIR; add dict(type='TensorboardVisBackend') to log to TensorBoard.
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='SegLocalVisualizer', vis_backends=vis_backends, name='visualizer')

log_processor = dict(by_epoch=False)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=None, deterministic=False)

# tools/test.py --tta: the model wrapper that merges the views of `tta_pipeline`
# (set by the *_ms configs) by averaging their softmax scores.
tta_model = dict(type='SegTTAModel')
