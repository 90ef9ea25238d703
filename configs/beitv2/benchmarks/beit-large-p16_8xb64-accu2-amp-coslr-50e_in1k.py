# Fine-tune BEiT-large/16 on ImageNet-1k from the BEiT v2 1600-epoch pretrain (unilm
# beitv2_large_patch16_224_pt1k.pth), unilm's recipe (beit2/get_started_for_image_
# classification.md, large command with the values it gives "for pretrained models" of 1600
# epochs): 8 GPUs x 64 x 2 accumulated = 1024 images per step, AdamW lr 2e-4, weight decay
# 0.05, layer decay 0.8, drop path 0.2, 50 epochs (5 warmup, as the large command), Mixup 0.8,
# CutMix 1.0, layer scale 1e-5 (overwritten by the pretrain), ImageNet mean / std, fp16.
# unilm reports 87.3 top-1 (its beitv2_large_patch16_224_pt1k_ft1k.pth).
_base_ = './beit-base-p16_8xb128-amp-coslr-100e_in1k.py'

model = dict(
    backbone=dict(
        arch='large',
        drop_path_rate=0.2,
        layer_scale_init_value=1e-5,
        init_cfg=dict(checkpoint='https://github.com/addf400/files/releases/download/BEiT-v2/'
                      'beitv2_large_patch16_224_pt1k.pth')),
    head=dict(in_channels=1024))

train_dataloader = dict(batch_size=64)
val_dataloader = dict(batch_size=64)
test_dataloader = dict(batch_size=64)

optim_wrapper = dict(
    accumulative_counts=2, optimizer=dict(lr=2e-4), paramwise_cfg=dict(layer_decay_rate=0.8))

param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-3,
        by_epoch=True,
        begin=0,
        end=5,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        eta_min=1e-6,
        by_epoch=True,
        begin=5,
        end=50,
        convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=50)
# tools/train.py --auto-scale-lr rescales lr by (GPUs x per-GPU batch) / base_batch_size;
# mmengine leaves the accumulation out of that ratio, so the base is 512 (8 x 64), not
# the total batch of 1024: on 8 GPUs the lr stays the recipe's 2e-4
auto_scale_lr = dict(base_batch_size=512)
