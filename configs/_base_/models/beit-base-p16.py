# BEiT-base/16 image classifier as BEiT fine-tunes it: relative position bias per layer,
# mean-pooled patch tokens through fc_norm (no final norm), a linear head, label smoothing 0.1,
# Mixup 0.8 / CutMix 1.0. A checkpoint with one shared relative position table (a BEiT
# pretrain) is expanded into every layer's table when it is loaded.
model = dict(
    type='mmbeit.BEiTClassifier',  # mmpretrain's ImageClassifier that loads any BEiT format
    backbone=dict(
        type='mmbeit.BEiT',
        arch='base',
        img_size=224,
        patch_size=16,
        out_type='avg_featmap',
        final_norm=False,
        drop_path_rate=0.1,
        layer_scale_init_value=0.1,
        use_abs_pos_emb=False,
        use_rel_pos_bias=True,
        use_shared_rel_pos_bias=False,
    ),
    neck=None,
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=768,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        # unilm scales the truncated-normal(0.02) head init by init_scale 0.001
        init_cfg=dict(type='TruncNormal', layer='Linear', std=2e-5),
    ),
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8),
                             dict(type='CutMix', alpha=1.0)]),
)
