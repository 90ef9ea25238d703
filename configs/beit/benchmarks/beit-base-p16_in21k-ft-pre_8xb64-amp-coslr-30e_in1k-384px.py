# beit-base-p16_in21k-ft-pre_8xb64-amp-coslr-30e_in1k.py at 384x384 (unilm
# --input_size 384): the 224 checkpoint's relative position tables are resized from 14x14
# to 24x24 patches when it is loaded. unilm reports 86.8 top-1
# (beit_base_patch16_384_pt22k_ft22kto1k, transformers microsoft/beit-base-patch16-384).
_base_ = './beit-base-p16_in21k-ft-pre_8xb64-amp-coslr-30e_in1k.py'

model = dict(backbone=dict(img_size=384))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=384, backend='pillow', interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(
        type='RandAugment',
        policies='timm_increasing',
        num_policies=2,
        total_level=10,
        magnitude_level=9,
        magnitude_std=0.5,
        hparams=dict(pad_val=[128, 128, 128], interpolation='bicubic')),
    dict(
        type='RandomErasing',
        erase_prob=0.25,
        mode='rand',
        min_area_ratio=0.02,
        max_area_ratio=1 / 3,
        fill_color=[127.5, 127.5, 127.5],
        fill_std=[127.5, 127.5, 127.5]),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=384, edge='short', backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=384),
    dict(type='PackInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
