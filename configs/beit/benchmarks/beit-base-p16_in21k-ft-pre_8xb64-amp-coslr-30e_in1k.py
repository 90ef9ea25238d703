# Fine-tune BEiT-base/16 on ImageNet-1k from the checkpoint self-supervised on ImageNet-22k
# and then intermediate fine-tuned on ImageNet-22k (unilm beit_base_patch16_224_pt22k_ft22k,
# here its transformers copy microsoft/beit-base-patch16-224-pt22k-ft22k; its 21,841-class
# head is not loaded): 8 GPUs x 64 = 512 images per step, AdamW lr 2e-5, weight decay 1e-8,
# layer decay 0.85, 30 epochs (5 warmup), drop path 0.1, label smoothing 0.1, no Mixup or
# CutMix, mixed precision (unilm get_started_for_image_classification.md). unilm reports
# 85.2 top-1 (beit_base_patch16_224_pt22k_ft22kto1k).
_base_ = [
    '../../_base_/models/beit-base-p16.py',
    '../../_base_/datasets/imagenet_bs64_beit_224.py',
    '../../_base_/schedules/imagenet_bs1024_adamw_beit.py',
    '../../_base_/default_runtime.py',
]

model = dict(
    backbone=dict(
        drop_path_rate=0.1,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://huggingface.co/microsoft/beit-base-patch16-224-pt22k-ft22k/'
            'resolve/main/pytorch_model.bin',
            prefix='backbone.')),
    train_cfg=None)  # no Mixup / CutMix

optim_wrapper = dict(
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    optimizer=dict(lr=2e-5, weight_decay=1e-8),
    paramwise_cfg=dict(layer_decay_rate=0.85))

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
auto_scale_lr = dict(base_batch_size=512)

default_hooks = dict(
    checkpoint=dict(type='mmbeit.AtomicCheckpointHook', interval=1, max_keep_ckpts=2))
randomness = dict(seed=0)
