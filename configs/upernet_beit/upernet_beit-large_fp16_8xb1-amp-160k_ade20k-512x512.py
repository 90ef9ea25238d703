# UperNet BEiT-large/16 on ADE20K at 512x512 (unilm's 512 recipe): the 512 data and test
# settings of the base 512 config with the large model and schedule of the large 640 config
# (8 GPUs x 1 image, accumulation 2, 160k updates = 320k iterations, AdamW 2e-5, decay 0.95).
_base_ = './upernet_beit-base_8xb2-160k_ade20k-512x512.py'

model = dict(
    backbone=dict(
        arch='large',
        out_indices=(7, 11, 15, 23),
        drop_path_rate=0.2,
        layer_scale_init_value=1e-6,
        init_cfg=dict(
            checkpoint='https://huggingface.co/microsoft/beit-large-patch16-224-pt22k-ft22k/'
            'resolve/main/pytorch_model.bin')),
    neck=dict(embed_dim=1024),
    decode_head=dict(in_channels=[1024, 1024, 1024, 1024], channels=1024),
    auxiliary_head=dict(in_channels=1024))

optim_wrapper = dict(
    type='AmpOptimWrapper',
    accumulative_counts=2,
    optimizer=dict(lr=2e-5),
    paramwise_cfg=dict(layer_decay_rate=0.95))

param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=3000),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=3000, end=320000),
]
train_cfg = dict(max_iters=320000, val_interval=32000)
default_hooks = dict(checkpoint=dict(interval=32000))

train_dataloader = dict(batch_size=1)
# tools/train.py --auto-scale-lr rescales lr by (GPUs x per-GPU batch) / base_batch_size;
# mmengine leaves the accumulation out of that ratio, so the base is 8 (8 x 1), not
# the total batch of 16: on 8 GPUs the lr stays the recipe's 2e-5
auto_scale_lr = dict(enable=False, base_batch_size=8)
