# BEiT v2-base/16 masked image modeling on ImageNet-1k, 1600 epochs: unilm's beit2/
# PRETRAINING.md base command as written (--epochs 1600 --opt_betas 0.9 0.999 --drop_path 0.1)
# = mmpretrain's configs/beitv2/beitv2_beit-base-p16_8xb256-amp-coslr-1600e_in1k.py; everything
# else as the 300-epoch config. unilm's beitv2_base_patch16_224_pt1k.pth is this recipe's result.
_base_ = './beitv2_beit-base-p16_8xb256-amp-coslr-300e_in1k.py'

model = dict(backbone=dict(drop_path_rate=0.1), neck=dict(drop_path_rate=0.1))

optim_wrapper = dict(optimizer=dict(betas=(0.9, 0.999)))

param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-4,
        by_epoch=True,
        begin=0,
        end=10,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        eta_min=1e-5,
        by_epoch=True,
        begin=10,
        end=1600,
        convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=1600)
