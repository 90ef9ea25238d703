# Intermediate fine-tuning of BEiT-base/16 on ImageNet-22k (21,841 classes) from the
# self-supervised ImageNet-22k pretrain (unilm beit_base_patch16_224_pt22k, here its
# transformers copy microsoft/beit-base-patch16-224-pt22k), the step that produced
# beit_base_patch16_224_pt22k_ft22k: 16 GPUs x 256 = 4096 images per step, AdamW lr 3e-3,
# weight decay 0.05, layer decay 0.65, 90 epochs (5 warmup), drop path 0.2, gradient clipping
# 3.0, label smoothing 0.1, no Mixup or CutMix, mixed precision, no evaluation during
# training (unilm beit/README.md, "Fine-tuning BEiT on ImageNet-22k").
_base_ = [
    '../../_base_/models/beit-base-p16.py',
    '../../_base_/datasets/imagenet21k_bs256_beit_224.py',
    '../../_base_/schedules/imagenet_bs1024_adamw_beit.py',
    '../../_base_/default_runtime.py',
]

model = dict(
    backbone=dict(
        drop_path_rate=0.2,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://huggingface.co/microsoft/beit-base-patch16-224-pt22k/'
            'resolve/main/pytorch_model.bin',
            prefix='backbone.')),
    head=dict(num_classes=21841),
    train_cfg=None)  # no Mixup / CutMix

optim_wrapper = dict(
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    optimizer=dict(lr=3e-3),
    clip_grad=dict(max_norm=3.0),
    paramwise_cfg=dict(layer_decay_rate=0.65))

param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-3,
        by_epoch=True,
        begin=0,
        end=5,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        eta_min=1e-6,
        by_epoch=True,
        begin=5,
        end=90,
        convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=90, val_interval=1)
val_cfg = None
auto_scale_lr = dict(base_batch_size=4096)

default_hooks = dict(
    checkpoint=dict(type='mmbeit.AtomicCheckpointHook', interval=1, max_keep_ckpts=2))
randomness = dict(seed=0)
