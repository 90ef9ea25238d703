# BEiT v2 masked image modeling of a tiny BEiT (64 channels, 4 layers) on mmbeit's sample data
# (tools/make_sample_data.py -> data/sample/imagenet: 500 drawn 64x64 images; labels unused),
# the v2 recipe scaled down: 64x64 images = 8x8 patches of 8, 24 of them masked in blocks of
# >= 4; the tokenizer sees the same crop at 64x64 = 8x8 tokens; the patch aggregation reads
# layer 3 of 4. A couple of minutes on 2 CPU cores.
#
# The tokenizer is a tiny VQ-KD (the tiny BEiT as encoder, 512 codes of 32 dimensions) with
# random weights drawn from the run's seed: no trained tokenizer can be downloaded here. Its
# tokens are a deterministic function of the pixels, hence learnable targets, but far less
# varied than real VQ-KD tokens; judge the masked accuracies against the majority share of
# the most frequent token, not against 1/512.
_base_ = './beitv2_beit-base-p16_8xb256-amp-coslr-300e_in1k.py'

# mmbeit.utils.sample_data.SAMPLE_CLS_CLASSES, in label order
classes = ('checkerboard', 'circle', 'square', 'stripes', 'triangle')
# the repository's data/, from any working directory
data_root = '{{fileDirname}}/../../data/sample/imagenet'

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ColorJitter', brightness=0.4, contrast=0.4, saturation=0.4, hue=0.),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(
        type='mmbeit.TwoViewRandomResizedCrop',
        size=64,
        second_size=64,
        scale=(0.35, 1.0),
        interpolation='bicubic',
        second_interpolation='bicubic',
        backend='pillow'),
    dict(
        type='mmbeit.BEiTMaskGenerator',
        input_size=(8, 8),
        num_masking_patches=24,
        min_num_patches=4,
        max_num_patches=None,
        min_aspect=0.3),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=32,
    num_workers=2,
    persistent_workers=False,  # exact resume in epoch-based loops
    pin_memory=False,
    dataset=dict(
        _delete_=True,
        type='ImageNet',
        data_root=data_root,
        split='train',
        classes=classes,
        pipeline=train_pipeline))

model = dict(
    backbone=dict(arch='tiny', img_size=64, patch_size=8, out_indices=[-2, -1]),
    neck=dict(early_layers=3),
    target_generator=dict(
        _delete_=True,
        type='mmbeit.VQKD',
        encoder=dict(arch='tiny', img_size=64, patch_size=8),
        num_embed=512,
        # a random codebook used as is: a frozen tokenizer never runs k-means
        kmeans_init=False),
)

# float32 on the CPU: the recipe's optimizer without AmpOptimWrapper
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1.5e-3, betas=(0.9, 0.98), eps=1e-8, weight_decay=0.05),
    clip_grad=dict(max_norm=3.0),
    paramwise_cfg=dict(
        flat_decay_mult=0.0,
        custom_keys={
            '.cls_token': dict(decay_mult=0.0),
            '.pos_embed': dict(decay_mult=0.0),
        }),
)

param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-2,
        by_epoch=True,
        begin=0,
        end=1,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        eta_min=1e-5,
        by_epoch=True,
        begin=1,
        end=10,
        convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=10)

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=5),
    checkpoint=dict(type='mmbeit.AtomicCheckpointHook', interval=5, max_keep_ckpts=1))
env_cfg = dict(dist_cfg=dict(backend='gloo'))
randomness = dict(seed=0, diff_rank_seed=False)
auto_scale_lr = dict(base_batch_size=32)
