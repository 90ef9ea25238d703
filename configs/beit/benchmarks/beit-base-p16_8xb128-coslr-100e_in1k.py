# Fine-tune BEiT-base/16 on ImageNet-1k from the BEiT pretrain (mmpretrain's
# beit_beit-base-p16_8xb256-amp-coslr-300e_in1k): 8 GPUs x 128 = 1024 images per step,
# AdamW lr 4e-3, layer decay 0.65, 100 epochs (20 warmup), drop path 0.1, Mixup 0.8,
# CutMix 1.0, label smoothing 0.1, RandAugment m9-mstd0.5, random erasing 0.25.
# Reported: 83.1 top-1 (mmpretrain). Pass another pretrain with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH_OR_URL
# (any BEiT checkpoint format; the shared relative position table of a pretrain is expanded
# into every layer's table). Add --amp for mixed precision.
_base_ = [
    '../../_base_/models/beit-base-p16.py',
    '../../_base_/datasets/imagenet_bs64_beit_224.py',
    '../../_base_/schedules/imagenet_bs1024_adamw_beit.py',
    '../../_base_/default_runtime.py',
]

model = dict(
    backbone=dict(
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://download.openmmlab.com/mmselfsup/1.x/beit/'
            'beit_vit-base-p16_8xb256-amp-coslr-300e_in1k/'
            'beit_vit-base-p16_8xb256-amp-coslr-300e_in1k_20221128-ab79e626.pth',
            prefix='backbone.')))

train_dataloader = dict(batch_size=128)
val_dataloader = dict(batch_size=128)
test_dataloader = dict(batch_size=128)

default_hooks = dict(
    checkpoint=dict(type='mmbeit.AtomicCheckpointHook', interval=1, max_keep_ckpts=2))
randomness = dict(seed=0)
