# BEiT-base's ADE20K fine-tuning schedule (unilm, mmseg): AdamW lr 3e-5 for 8 GPUs x 2
# images, weight decay 0.05, layer-wise lr decay 0.9, 1500 iterations of linear warmup,
# then poly (power 1) to 0 at the last of the 160k iterations. A config that changes
# max_iters must change PolyLR's end with it (tests/test_segmentation.py checks they agree).
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=3e-5, betas=(0.9, 0.999), weight_decay=0.05),
    # lr of a parameter = lr * layer_decay_rate ** (num_layers + 1 - depth), depths from
    # mmbeit.BEiT.get_layer_depth: patch embedding and tokens 0, layer i i + 1, everything
    # else (neck, heads) num_layers + 1, so the heads train at lr.
    constructor='mmbeit.LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(
        layer_decay_rate=0.9,
        # no weight decay on 1-D parameters (biases, norms, q/v biases, layer scales) nor
        # on the cls token (unilm meant to skip it; its name check never matched)
        flat_decay_mult=0.0,
        custom_keys={'.cls_token': dict(decay_mult=0.0)}))

param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=1500, end=160000),
]

train_cfg = dict(type='IterBasedTrainLoop', max_iters=160000, val_interval=16000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # writes to a temporary name and renames: a killed run always leaves a checkpoint to resume from
    checkpoint=dict(
        type='mmbeit.AtomicCheckpointHook', by_epoch=False, interval=16000, max_keep_ckpts=3),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    # tools/test.py --show-dir turns drawing on
    visualization=dict(type='SegVisualizationHook'))
