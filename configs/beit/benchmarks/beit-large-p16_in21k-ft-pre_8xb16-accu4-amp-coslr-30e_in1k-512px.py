# beit-large-p16_in21k-ft-pre_8xb32-accu2-amp-coslr-30e_in1k.py at 512x512 (unilm
# --input_size 512): 8 GPUs x 16 x 4 accumulated = 512 images per step, AdamW lr 2e-5,
# weight decay 1e-8, layer decay 0.9, 30 epochs (5 warmup), drop path 0.4, no Mixup or
# CutMix, mixed precision. The 224 checkpoint's relative position tables are resized from
# 14x14 to 32x32 patches when it is loaded. unilm reports 88.60 / 98.66
# (beit_large_patch16_512_pt22k_ft22kto1k; transformers microsoft/beit-large-patch16-512).
_base_ = [
    '../../_base_/models/beit-base-p16.py',
    '../../_base_/datasets/imagenet_bs16_beit_512.py',
    '../../_base_/schedules/imagenet_bs1024_adamw_beit.py',
    '../../_base_/default_runtime.py',
]

model = dict(
    backbone=dict(
        arch='large',
        img_size=512,
        drop_path_rate=0.4,
        layer_scale_init_value=1e-5,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://huggingface.co/microsoft/beit-large-patch16-224-pt22k-ft22k/'
            'resolve/main/pytorch_model.bin',
            prefix='backbone.')),
    head=dict(in_channels=1024),
    train_cfg=None)  # no Mixup / CutMix

optim_wrapper = dict(
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    accumulative_counts=4,
    optimizer=dict(lr=2e-5, weight_decay=1e-8),
    paramwise_cfg=dict(layer_decay_rate=0.9))

param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=0.05,
        by_epoch=True,
        begin=0,
        end=5,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        eta_min=1e-6,
        by_epoch=True,
        begin=5,
        end=30,
        convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=30)
# tools/train.py --auto-scale-lr rescales lr by (GPUs x per-GPU batch) / base_batch_size;
# mmengine leaves the accumulation out of that ratio, so the base is 128 (8 x 16), not
# the total batch of 512: on 8 GPUs the lr stays the recipe's 2e-5
auto_scale_lr = dict(base_batch_size=128)

default_hooks = dict(
    checkpoint=dict(type='mmbeit.AtomicCheckpointHook', interval=1, max_keep_ckpts=2))
randomness = dict(seed=0)
