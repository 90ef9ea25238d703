# Fine-tune BEiT-base/16 on ImageNet-1k from the BEiT v2 300-epoch pretrain, mmpretrain's
# recipe (its configs/beitv2/benchmarks/beit-base-p16_8xb128-coslr-100e_in1k.py = unilm's
# beit2/get_started_for_image_classification.md values "for 300 epochs" pretrained models):
# 8 GPUs x 128 = 1024 images per step, AdamW lr 5e-4, weight decay 0.05, layer decay 0.65,
# drop path 0.1, 100 epochs (20 warmup), Mixup 0.8, CutMix 1.0, label smoothing 0.1,
# RandAugment m9-mstd0.5, random erasing 0.25, ImageNet mean / std
# (--imagenet_default_mean_and_std), float32 as mmpretrain (add --amp for unilm's fp16).
# Reported: 85.0 top-1 (mmpretrain, from its OpenMMLab 300-epoch pretrain; unilm's
# beitv2_base_patch16_224_pt1k_300e_ft1k.pth: 85.0). Another pretrain:
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH_OR_URL
# (any BEiT checkpoint format: unilm's and mmpretrain's v2 pretraining files load their
# backbone; the shared relative position table is expanded into every layer's table).
_base_ = [
    '../../_base_/models/beit-base-p16.py',
    '../../_base_/datasets/imagenet_bs64_beit_224.py',
    '../../_base_/schedules/imagenet_bs1024_adamw_beit.py',
    '../../_base_/default_runtime.py',
]

# ImageNet statistics, as unilm fine-tunes v2 (random erasing fills with the same noise)
data_preprocessor = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375])
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=224, backend='pillow', interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(
        type='RandAugment',
        policies='timm_increasing',
        num_policies=2,
        total_level=10,
        magnitude_level=9,
        magnitude_std=0.5,
        hparams=dict(pad_val=[104, 116, 124], interpolation='bicubic')),
    dict(
        type='RandomErasing',
        erase_prob=0.25,
        mode='rand',  # per-pixel normal noise, as timm's 'pixel' mode
        min_area_ratio=0.02,
        max_area_ratio=1 / 3,
        fill_color=[103.53, 116.28, 123.675],
        fill_std=[57.375, 57.12, 58.395]),
    dict(type='PackInputs'),
]

model = dict(
    backbone=dict(
        drop_path_rate=0.1,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://download.openmmlab.com/mmselfsup/1.x/beitv2/'
            'beitv2_vit-base-p16_8xb256-amp-coslr-300e_in1k/'
            'beitv2_vit-base-p16_8xb256-amp-coslr-300e_in1k_20221212-a157be30.pth',
            prefix='backbone.')))

train_dataloader = dict(batch_size=128, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=128)
test_dataloader = dict(batch_size=128)

optim_wrapper = dict(optimizer=dict(lr=5e-4), paramwise_cfg=dict(layer_decay_rate=0.65))

default_hooks = dict(
    checkpoint=dict(type='mmbeit.AtomicCheckpointHook', interval=1, max_keep_ckpts=2))
randomness = dict(seed=0)
