# Linear probing of a BEiT-base/16 pretrain on ImageNet-1k (unilm run_linear_eval.py recipe:
# AdamW lr 4e-3 for a batch of 1024, weight decay 1e-4, 100 epochs of cosine to 0, no warmup).
# The whole backbone is frozen and kept as pretrained (one shared relative position table,
# final norm); the probe is the mean of the patch tokens, a LayerNorm (fc_norm), a BatchNorm
# without affine parameters (as the MAE protocol) and a linear layer. For the cls token
# instead, set model.backbone.out_type='cls_token'. MIM features are often more linearly
# separable at an intermediate layer (the BEiT paper probes every layer): try
# model.backbone.out_indices=8 (layer 9 of 12).
_base_ = [
    '../../_base_/datasets/imagenet_bs64_beit_224.py',
    '../../_base_/default_runtime.py',
]

model = dict(
    type='mmbeit.BEiTClassifier',  # mmpretrain's ImageClassifier that loads any BEiT format
    backbone=dict(
        type='mmbeit.BEiT',
        arch='base',
        img_size=224,
        patch_size=16,
        out_type='avg_featmap',
        final_norm=True,
        frozen_stages=12,
        use_abs_pos_emb=False,
        use_rel_pos_bias=False,
        use_shared_rel_pos_bias=True,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://download.openmmlab.com/mmselfsup/1.x/beit/'
            'beit_vit-base-p16_8xb256-amp-coslr-300e_in1k/'
            'beit_vit-base-p16_8xb256-amp-coslr-300e_in1k_20221128-ab79e626.pth',
            prefix='backbone.')),
    neck=dict(type='ClsBatchNormNeck', input_features=768),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=768,
        loss=dict(type='CrossEntropyLoss'),
        init_cfg=dict(type='Normal', layer='Linear', std=0.01)),
)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=224, backend='pillow', interpolation='bilinear'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
train_dataloader = dict(batch_size=128, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=128)
test_dataloader = dict(batch_size=128)

optim_wrapper = dict(optimizer=dict(type='AdamW', lr=4e-3, weight_decay=1e-4))
param_scheduler = [
    dict(
        type='CosineAnnealingLR',
        eta_min=0.0,
        by_epoch=True,
        begin=0,
        end=100,
        convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=100, val_interval=1)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=1024)

default_hooks = dict(
    checkpoint=dict(type='mmbeit.AtomicCheckpointHook', interval=1, max_keep_ckpts=2))
randomness = dict(seed=0)
