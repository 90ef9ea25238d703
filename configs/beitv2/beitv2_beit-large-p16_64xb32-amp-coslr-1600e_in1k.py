# BEiT v2-large/16 masked image modeling on ImageNet-1k, 1600 epochs: unilm's beit2/
# PRETRAINING.md large command (4 DGX-2 boxes, 64 GPUs x 32 = 2048 images per step,
# --early_layers 21, --layer_scale_init_value 1e-5, --drop_path 0.1, --opt_betas 0.9 0.999,
# lr 1.5e-3, 10 warmup epochs, clipping 3.0); everything else as the base configs.
# unilm's beitv2_large_patch16_224_pt1k.pth is this recipe's result.
_base_ = './beitv2_beit-base-p16_8xb256-amp-coslr-1600e_in1k.py'

model = dict(
    backbone=dict(arch='large', layer_scale_init_value=1e-5, out_indices=[-4, -1]),
    neck=dict(early_layers=21, layer_scale_init_value=1e-5))  # layer 21 of 24

train_dataloader = dict(batch_size=32)
# tools/train.py --auto-scale-lr rescales lr by (actual total batch) / 2048
auto_scale_lr = dict(base_batch_size=2048)
