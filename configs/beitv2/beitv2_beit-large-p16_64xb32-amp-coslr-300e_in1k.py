# BEiT v2-large/16 masked image modeling on ImageNet-1k, 300 epochs: the large command of unilm's
# beit2/PRETRAINING.md with its 300-epoch settings ("--opt_betas: 0.98 for 300 epochs",
# "--drop_path: 0. for 300 epochs"). unilm's beitv2_large_patch16_224_pt1k_300e.pth.
_base_ = './beitv2_beit-large-p16_64xb32-amp-coslr-1600e_in1k.py'

model = dict(backbone=dict(drop_path_rate=0.0), neck=dict(drop_path_rate=0.0))

optim_wrapper = dict(optimizer=dict(betas=(0.9, 0.98)))

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
        end=300,
        convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=300)
