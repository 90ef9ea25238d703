# ImageNet-22k (a.k.a. ImageNet-21k, 21,841 classes, the fall11 release) at 224 with BEiT's
# fine-tuning augmentation. Labels follow the sorted WordNet ids of the class folders, as
# torchvision's ImageFolder gives them (the order of BEiT's and transformers' 22k heads).
# ImageNet-22k has no official validation split: unilm fine-tunes on it without evaluation.
# test_dataloader reads a held-out split you prepare as data/imagenet21k/val + meta/val.txt.
dataset_type = 'ImageNet21k'
data_root = 'data/imagenet21k'
data_preprocessor = dict(
    num_classes=21841,
    mean=[127.5, 127.5, 127.5],
    std=[127.5, 127.5, 127.5],
    to_rgb=True,
)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=224, backend='pillow', interpolation='bicubic'),
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
    dict(type='ResizeEdge', scale=256, edge='short', backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]

train_dataloader = dict(
    batch_size=256,
    num_workers=10,
    persistent_workers=True,
    pin_memory=True,
    drop_last=True,
    dataset=dict(type=dataset_type, data_root=data_root, split='train', pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True),
)

# No validation during training (as unilm's --disable_eval_during_finetuning); a config that
# inherits this file sets val_cfg = None as well.
val_dataloader = None
val_evaluator = None

test_dataloader = dict(
    batch_size=64,
    num_workers=8,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix='val',
        ann_file='meta/val.txt',
        pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False),
)
test_evaluator = dict(type='Accuracy', topk=(1, 5))
