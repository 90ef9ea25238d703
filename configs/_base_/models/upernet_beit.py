# UperNet with a BEiT-base/16 backbone, as BEiT fine-tunes it on ADE20K (unilm, mmseg):
# patch features of layers 3, 5, 7, 11 (per-layer relative position bias, layer scale,
# no final norm) -> mmseg's Feature2Pyramid (4x: deconv-BN-GELU-deconv, 2x: deconv,
# 1x: identity, 0.5x: max pool) -> UPerHead (pool scales 1, 2, 3, 6; 768 channels),
# and an FCNHead on the 1x level as auxiliary loss (256 channels, weight 0.4).
# SyncBN: the configs train on 8 GPUs; mmengine's Runner turns SyncBN into BN when
# it runs in one process.
norm_cfg = dict(type='SyncBN', requires_grad=True)
data_preprocessor = dict(
    type='SegDataPreProcessor',
    # ImageNet mean / std on RGB, as unilm's segmentation fine-tuning
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255)
model = dict(
    type='mmbeit.BEiTSegmentor',  # mmseg's EncoderDecoder that loads any BEiT format
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='mmbeit.BEiT',
        arch='base',
        img_size=640,
        patch_size=16,
        out_type='featmap',
        out_indices=(3, 5, 7, 11),
        drop_path_rate=0.1,
        layer_scale_init_value=0.1,
        use_abs_pos_emb=False,
        use_rel_pos_bias=True,
        use_shared_rel_pos_bias=False,
        final_norm=False),
    neck=dict(type='Feature2Pyramid', embed_dim=768, rescales=[4, 2, 1, 0.5], norm_cfg=norm_cfg),
    decode_head=dict(
        type='UPerHead',
        in_channels=[768, 768, 768, 768],
        in_index=[0, 1, 2, 3],
        pool_scales=(1, 2, 3, 6),
        channels=768,
        dropout_ratio=0.1,
        num_classes=150,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    auxiliary_head=dict(
        type='FCNHead',
        in_channels=768,
        in_index=2,
        channels=256,
        num_convs=1,
        concat_input=False,
        dropout_ratio=0.1,
        num_classes=150,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=0.4)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
