# UperNet BEiT-large/16 on ADE20K at 512x512 from the BEiT v2 1600-epoch pretrain (unilm
# beitv2_large_patch16_224_pt1k.pth): unilm's beit2/semantic_segmentation/configs/beit/upernet/
# upernet_beit_large_24_512_slide_160k_ade20k.py. As the base config (8 x 2, 160k iterations,
# 1500 warmup, fp16) with AdamW lr 4e-5, layer decay 0.9, drop path 0.2, layer scale 1e-6,
# features of layers 7, 11, 15, 23 and 1024 channels. unilm reports 56.7 mIoU (its
# beitv2_large_patch16_224_pt1k_ftade20k.pth).
_base_ = './upernet_beitv2-base_8xb2-amp-160k_ade20k-512x512.py'

model = dict(
    backbone=dict(
        arch='large',
        out_indices=(7, 11, 15, 23),
        drop_path_rate=0.2,
        layer_scale_init_value=1e-6,
        init_cfg=dict(checkpoint='https://github.com/addf400/files/releases/download/BEiT-v2/'
                      'beitv2_large_patch16_224_pt1k.pth')),
    neck=dict(embed_dim=1024),
    decode_head=dict(in_channels=[1024, 1024, 1024, 1024], channels=1024),
    auxiliary_head=dict(in_channels=1024))

optim_wrapper = dict(optimizer=dict(lr=4e-5), paramwise_cfg=dict(layer_decay_rate=0.9))
