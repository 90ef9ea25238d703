auto_scale_lr = dict(base_batch_size=8, enable=False)
crop_size = (
    64,
    64,
)
custom_hooks = [
    dict(type='mmbeit.NonFiniteCheckHook'),
    dict(type='mmbeit.ResumableRandomnessHook'),
]
custom_imports = dict(
    allow_failed_imports=False, imports=[
        'mmbeit',
    ])
data_preprocessor = dict(
    bgr_to_rgb=True,
    mean=[
        123.675,
        116.28,
        103.53,
    ],
    pad_val=0,
    seg_pad_val=255,
    std=[
        58.395,
        57.12,
        57.375,
    ],
    type='SegDataPreProcessor')
data_root = '/work/wt/userfix/configs/_base_/datasets/../../../data/sample/ade'
dataset_type = 'BaseSegDataset'
default_hooks = dict(
    checkpoint=dict(
        by_epoch=False,
        interval=500,
        max_keep_ckpts=1,
        type='mmbeit.AtomicCheckpointHook'),
    logger=dict(interval=50, log_metric_by_epoch=False, type='LoggerHook'),
    param_scheduler=dict(type='ParamSchedulerHook'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    timer=dict(type='IterTimerHook'),
    visualization=dict(draw=True, interval=1, type='SegVisualizationHook'))
default_scope = 'mmseg'
env_cfg = dict(
    cudnn_benchmark=False,
    dist_cfg=dict(backend='nccl'),
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0))
img_ratios = [
    0.5,
    0.75,
    1.0,
    1.25,
    1.5,
    1.75,
]
launcher = 'none'
load_from = '/tmp/uf/seg.pth'
log_level = 'INFO'
log_processor = dict(by_epoch=False)
metainfo = dict(
    classes=(
        'background',
        'circle',
        'square',
        'triangle',
        'stripes',
    ),
    palette=[
        [
            120,
            120,
            120,
        ],
        [
            220,
            20,
            60,
        ],
        [
            0,
            130,
            200,
        ],
        [
            255,
            200,
            0,
        ],
        [
            60,
            180,
            75,
        ],
    ])
model = dict(
    auxiliary_head=dict(
        align_corners=False,
        channels=32,
        concat_input=False,
        dropout_ratio=0.1,
        in_channels=64,
        in_index=2,
        loss_decode=dict(
            loss_weight=0.4, type='CrossEntropyLoss', use_sigmoid=False),
        norm_cfg=dict(requires_grad=True, type='BN'),
        num_classes=5,
        num_convs=1,
        type='FCNHead'),
    backbone=dict(
        arch='tiny',
        drop_path_rate=0.0,
        final_norm=False,
        img_size=64,
        layer_scale_init_value=0.1,
        out_indices=(
            0,
            1,
            2,
            3,
        ),
        out_type='featmap',
        patch_size=8,
        type='mmbeit.BEiT',
        use_abs_pos_emb=False,
        use_rel_pos_bias=True,
        use_shared_rel_pos_bias=False),
    data_preprocessor=dict(
        bgr_to_rgb=True,
        mean=[
            123.675,
            116.28,
            103.53,
        ],
        pad_val=0,
        seg_pad_val=255,
        size=(
            64,
            64,
        ),
        std=[
            58.395,
            57.12,
            57.375,
        ],
        type='SegDataPreProcessor'),
    decode_head=dict(
        align_corners=False,
        channels=64,
        dropout_ratio=0.1,
        in_channels=[
            64,
            64,
            64,
            64,
        ],
        in_index=[
            0,
            1,
            2,
            3,
        ],
        loss_decode=dict(
            loss_weight=1.0, type='CrossEntropyLoss', use_sigmoid=False),
        norm_cfg=dict(requires_grad=True, type='BN'),
        num_classes=5,
        pool_scales=(
            1,
            2,
            3,
            6,
        ),
        type='UPerHead'),
    neck=dict(
        embed_dim=64,
        norm_cfg=dict(requires_grad=True, type='BN'),
        rescales=[
            4,
            2,
            1,
            0.5,
        ],
        type='Feature2Pyramid'),
    test_cfg=dict(mode='whole'),
    train_cfg=dict(),
    type='mmbeit.BEiTSegmentor')
norm_cfg = dict(requires_grad=True, type='BN')
num_classes = 5
optim_wrapper = None
param_scheduler = None
randomness = dict(deterministic=False, seed=0)
resume = False
runner_type = 'mmbeit.BEiTRunner'
test_cfg = dict(type='TestLoop')
test_dataloader = dict(
    batch_size=1,
    dataset=dict(
        data_prefix=dict(
            img_path='images/validation',
            seg_map_path='annotations/validation'),
        data_root=
        '/work/wt/userfix/configs/_base_/datasets/../../../data/sample/ade',
        img_suffix='.jpg',
        metainfo=dict(
            classes=(
                'background',
                'circle',
                'square',
                'triangle',
                'stripes',
            ),
            palette=[
                [
                    120,
                    120,
                    120,
                ],
                [
                    220,
                    20,
                    60,
                ],
                [
                    0,
                    130,
                    200,
                ],
                [
                    255,
                    200,
                    0,
                ],
                [
                    60,
                    180,
                    75,
                ],
            ]),
        pipeline=[
            dict(type='LoadImageFromFile'),
            dict(keep_ratio=True, scale=(
                64,
                64,
            ), type='Resize'),
            dict(reduce_zero_label=True, type='LoadAnnotations'),
            dict(type='PackSegInputs'),
        ],
        reduce_zero_label=True,
        seg_map_suffix='.png',
        type='BaseSegDataset'),
    num_workers=0,
    sampler=dict(shuffle=False, type='DefaultSampler'))
test_evaluator = dict(
    iou_metrics=[
        'mIoU',
    ], type='IoUMetric')
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(keep_ratio=True, scale=(
        64,
        64,
    ), type='Resize'),
    dict(reduce_zero_label=True, type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
train_cfg = None
train_dataloader = None
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(reduce_zero_label=True, type='LoadAnnotations'),
    dict(
        keep_ratio=True,
        ratio_range=(
            0.75,
            1.5,
        ),
        scale=(
            64,
            64,
        ),
        type='RandomResize'),
    dict(cat_max_ratio=0.75, crop_size=(
        64,
        64,
    ), type='RandomCrop'),
    dict(prob=0.5, type='RandomFlip'),
    dict(type='PackSegInputs'),
]
tta_model = dict(type='SegTTAModel')
tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        transforms=[
            [
                dict(keep_ratio=True, scale=(
                    32,
                    32,
                ), type='Resize'),
                dict(keep_ratio=True, scale=(
                    48,
                    48,
                ), type='Resize'),
                dict(keep_ratio=True, scale=(
                    64,
                    64,
                ), type='Resize'),
                dict(keep_ratio=True, scale=(
                    80,
                    80,
                ), type='Resize'),
                dict(keep_ratio=True, scale=(
                    96,
                    96,
                ), type='Resize'),
                dict(keep_ratio=True, scale=(
                    112,
                    112,
                ), type='Resize'),
            ],
            [
                dict(direction='horizontal', prob=0.0, type='RandomFlip'),
                dict(direction='horizontal', prob=1.0, type='RandomFlip'),
            ],
            [
                dict(reduce_zero_label=True, type='LoadAnnotations'),
            ],
            [
                dict(type='PackSegInputs'),
            ],
        ],
        type='TestTimeAug'),
]
val_cfg = dict(type='ValLoop')
val_dataloader = dict(
    batch_size=1,
    dataset=dict(
        data_prefix=dict(
            img_path='images/validation',
            seg_map_path='annotations/validation'),
        data_root=
        '/work/wt/userfix/configs/_base_/datasets/../../../data/sample/ade',
        img_suffix='.jpg',
        metainfo=dict(
            classes=(
                'background',
                'circle',
                'square',
                'triangle',
                'stripes',
            ),
            palette=[
                [
                    120,
                    120,
                    120,
                ],
                [
                    220,
                    20,
                    60,
                ],
                [
                    0,
                    130,
                    200,
                ],
                [
                    255,
                    200,
                    0,
                ],
                [
                    60,
                    180,
                    75,
                ],
            ]),
        pipeline=[
            dict(type='LoadImageFromFile'),
            dict(keep_ratio=True, scale=(
                64,
                64,
            ), type='Resize'),
            dict(reduce_zero_label=True, type='LoadAnnotations'),
            dict(type='PackSegInputs'),
        ],
        reduce_zero_label=True,
        seg_map_suffix='.png',
        type='BaseSegDataset'),
    num_workers=0,
    sampler=dict(shuffle=False, type='DefaultSampler'))
val_evaluator = dict(
    iou_metrics=[
        'mIoU',
    ], type='IoUMetric')
vis_backends = [
    dict(type='LocalVisBackend'),
]
visualizer = dict(
    name='visualizer',
    save_dir='overlays',
    type='SegLocalVisualizer',
    vis_backends=[
        dict(type='LocalVisBackend'),
    ])
work_dir = '/tmp/uf/w4'
