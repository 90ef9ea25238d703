# BEiT-base/16 masked image modeling on ImageNet-1k, the paper's recipe (unilm beit/README.md,
# "Pre-training BEiT-base on ImageNet-1k"): 16 GPUs x 128 = 2048 images per step, AdamW
# lr 1.5e-3, 10 warmup epochs, 800 epochs, gradient clipping 3.0, drop path 0.1, layer scale
# 0.1, ImageNet mean and std, mixed precision. Everything else as the 300-epoch recipe.
_base_ = './beit_beit-base-p16_8xb256-amp-coslr-300e_in1k.py'

train_dataloader = dict(batch_size=128)

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
        end=800,
        convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=800)
