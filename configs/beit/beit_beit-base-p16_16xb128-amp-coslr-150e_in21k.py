# BEiT-base/16 masked image modeling on ImageNet-22k (21,841 classes, labels unused), the
# paper's recipe behind the released beit_base_patch16_224_pt22k (unilm beit/README.md,
# "Pre-training BEiT-base on ImageNet-22k"): 16 GPUs x 128 = 2048 images per step, AdamW
# lr 1.5e-3, 10,000 warmup iterations, 150 epochs, gradient clipping 3.0, drop path 0.1,
# layer scale 0.1, mixed precision; pixels normalized with mean = std = 0.5 (unilm's default
# outside ImageNet-1k). Everything else as the 300-epoch ImageNet-1k recipe.
_base_ = './beit_beit-base-p16_8xb256-amp-coslr-300e_in1k.py'

data_root = 'data/imagenet21k'
data_preprocessor = dict(mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5])

train_dataloader = dict(
    batch_size=128,
    num_workers=10,
    dataset=dict(type='ImageNet21k', data_root=data_root, split='train'))

param_scheduler = [
    # 10,000 iterations of linear warmup, overlapping the epoch-wise cosine (both apply)
    dict(type='LinearLR', start_factor=1e-4, by_epoch=False, begin=0, end=10000),
    dict(
        type='CosineAnnealingLR',
        eta_min=1e-5,
        by_epoch=True,
        begin=0,
        end=150,
        convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=150)
