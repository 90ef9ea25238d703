# VQ-KD of a tiny tokenizer on mmbeit's sample data (tools/make_sample_data.py ->
# data/sample/imagenet: 500 drawn 64x64 images; labels unused), the ImageNet recipe scaled
# down: 64x64 images = 8x8 patches of 8, a 4-layer 64-wide encoder, a 128 x 16 codebook,
# a 1-layer decoder, and a tiny CLIP-like teacher (2 layers, 64 wide, 32 output channels)
# with random but fixed-seed weights (init_seed): no real teacher weights can be downloaded
# here, and its features are still a deterministic function of the pixels to distil.
# About a minute with one compute thread (OMP_NUM_THREADS=1); the per-step log shows the
# code usage (codes_used, code_perplexity, codes_unused) next to the losses.
_base_ = './vqkd_vit-base-p16_8xb64-amp-coslr-100e_in1k.py'

# mmbeit.utils.sample_data.SAMPLE_CLS_CLASSES, in label order
classes = ('checkerboard', 'circle', 'square', 'stripes', 'triangle')
# the repository's data/, from any working directory
data_root = '{{fileDirname}}/../../data/sample/imagenet'

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='RandomResizedCrop',
        scale=64,
        crop_ratio_range=(0.35, 1.0),
        interpolation='bicubic',
        backend='pillow'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=32,
    num_workers=2,
    persistent_workers=False,
    pin_memory=False,
    dataset=dict(
        _delete_=True,
        type='ImageNet',
        data_root=data_root,
        split='train',
        classes=classes,
        pipeline=train_pipeline))

model = dict(
    tokenizer=dict(
        encoder=dict(arch='tiny', img_size=64, patch_size=8), num_embed=128, embed_dims=16),
    decoder=dict(arch=dict(embed_dims=64, num_layers=1, num_heads=4, feedforward_channels=256)),
    teacher=dict(
        _delete_=True,
        type='mmbeit.ViTTeacher',
        kind='clip',
        img_size=64,
        model_kwargs=dict(patch_size=8, embed_dim=64, depth=2, num_heads=4, num_classes=32),
        init_seed=0),
)

# float32 on the CPU: the recipe's optimizer without AmpOptimWrapper, at a higher lr for
# the tiny model's few steps
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.99), eps=1e-8, weight_decay=1e-4),
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
        end=4,
        convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=4)

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=5),
    checkpoint=dict(type='mmbeit.AtomicCheckpointHook', interval=4, max_keep_ckpts=1))
env_cfg = dict(dist_cfg=dict(backend='gloo'))
randomness = dict(seed=0, diff_rank_seed=False)
auto_scale_lr = dict(base_batch_size=32)
