# Fine-tune a tiny BEiT (64 channels, 4 layers) on mmbeit's sample data (5 classes of drawn
# shapes and textures at 64x64, made by tools/make_sample_data.py under data/sample): the
# ImageNet recipe scaled down (AdamW, layer-wise lr decay, warmup + cosine, label smoothing),
# about a minute on 2 CPU cores. Start from a MIM pretrain of the same arch, e.g. of
# configs/beit/beit_beit-tiny-p8_1xb32-10e_sample.py, with
#   --cfg-options model.backbone.init_cfg.type=Pretrained \
#       model.backbone.init_cfg.checkpoint=work_dirs/.../epoch_10.pth \
#       model.backbone.init_cfg.prefix=backbone.
# (or --cfg-options load_from=PATH to load a whole classifier checkpoint). Without it the
# backbone starts from random weights.
_base_ = [
    '../../_base_/models/beit-base-p16.py',
    '../../_base_/default_runtime.py',
]

# mmbeit.utils.sample_data.SAMPLE_CLS_CLASSES, in label order
classes = ('checkerboard', 'circle', 'square', 'stripes', 'triangle')
# the repository's data/, from any working directory
data_root = '{{fileDirname}}/../../../data/sample/imagenet'

data_preprocessor = dict(
    num_classes=len(classes),
    mean=[127.5, 127.5, 127.5],
    std=[127.5, 127.5, 127.5],
    to_rgb=True,
)

model = dict(
    backbone=dict(
        arch='tiny',
        img_size=64,
        patch_size=8,
        drop_path_rate=0.0,
        # No-op placeholder (initializes no layer): the backbone keeps its own init until
        # the cfg-options above turn it into dict(type='Pretrained', ...).
        init_cfg=dict(type='TruncNormal', layer=[], std=0.02)),
    head=dict(
        num_classes=len(classes),
        in_channels=64,
        init_cfg=dict(type='TruncNormal', layer='Linear', std=0.02)),
    train_cfg=None)  # no Mixup / CutMix on 500 images

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='RandomResizedCrop',
        scale=64,
        crop_ratio_range=(0.5, 1.0),
        backend='pillow',
        interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=64, edge='short', backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=64),
    dict(type='PackInputs'),
]

train_dataloader = dict(
    batch_size=32,
    num_workers=2,
    persistent_workers=False,  # exact resume in epoch-based loops
    drop_last=True,
    dataset=dict(
        type='ImageNet',
        data_root=data_root,
        split='train',
        classes=classes,
        pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True),
)
val_dataloader = dict(
    batch_size=50,
    num_workers=2,
    persistent_workers=False,  # exact resume in epoch-based loops
    dataset=dict(
        type='ImageNet', data_root=data_root, split='val', classes=classes, pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False),
)
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_dataloader = val_dataloader
test_evaluator = val_evaluator

optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.05, eps=1e-8, betas=(0.9, 0.999)),
    constructor='LearningRateDecayOptimWrapperConstructor',
    paramwise_cfg=dict(
        layer_decay_rate=0.75,
        flat_decay_mult=0.0,
        custom_keys={
            '.cls_token': dict(decay_mult=0.0),
            '.mask_token': dict(decay_mult=0.0),
            '.pos_embed': dict(decay_mult=0.0),
        }),
)
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-2,
        by_epoch=True,
        begin=0,
        end=2,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        eta_min=1e-5,
        by_epoch=True,
        begin=2,
        end=20,
        convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=20, val_interval=5)
val_cfg = dict()
test_cfg = dict()

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=5),
    checkpoint=dict(type='mmbeit.AtomicCheckpointHook', interval=5, max_keep_ckpts=1))
env_cfg = dict(dist_cfg=dict(backend='gloo'))
randomness = dict(seed=0)
# tools/train.py --auto-scale-lr rescales lr by (actual total batch) / 32
auto_scale_lr = dict(base_batch_size=32)
