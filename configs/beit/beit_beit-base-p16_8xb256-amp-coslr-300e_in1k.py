# BEiT-base/16 masked image modeling on ImageNet-1k, mmpretrain's recipe (its
# configs/beit/beit_beit-base-p16_8xb256-amp-coslr-300e_in1k.py): 8 GPUs x 256 = 2048 images
# per step, AdamW lr 1.5e-3, betas (0.9, 0.999), weight decay 0.05 (none on 1-D parameters,
# the class token and the position embedding), gradient clipping 3.0, 10 warmup epochs then
# cosine to 1e-5, 300 epochs, float16 mixed precision; drop path 0.1, layer scale 0.1.
# Each image gives two views of one random crop: 224x224 (bicubic) for the backbone and
# 112x112 (lanczos, antialiased) for the DALL-E tokenizer, whose 14x14 tokens are the
# targets of the 75 masked patches (blocks of >= 16, exactly 75 every time).
# The other pretraining configs of this folder inherit this file.
_base_ = '../_base_/default_runtime.py'

data_root = 'data/imagenet'
data_preprocessor = dict(
    type='mmbeit.TwoViewDataPreprocessor',
    # backbone view: ImageNet statistics (unilm --imagenet_default_mean_and_std)
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    # tokenizer view: x / 318.75 + 0.1 == map_pixels(x / 255), DALL-E's [0.1, 0.9]
    second_mean=[-31.875, -31.875, -31.875],
    second_std=[318.75, 318.75, 318.75],
    to_rgb=True,  # images are loaded as BGR
)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ColorJitter', brightness=0.4, contrast=0.4, saturation=0.4, hue=0.),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(
        type='mmbeit.TwoViewRandomResizedCrop',
        size=224,
        second_size=112,
        scale=(0.08, 1.0),
        interpolation='bicubic',
        second_interpolation='lanczos',
        backend='pillow'),
    dict(
        type='mmbeit.BEiTMaskGenerator',
        input_size=(14, 14),
        num_masking_patches=75,
        min_num_patches=16,
        max_num_patches=None,
        min_aspect=0.3),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=256,
    num_workers=8,
    persistent_workers=True,
    pin_memory=True,
    drop_last=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),  # stacks the views in the workers
    dataset=dict(type='ImageNet', data_root=data_root, split='train', pipeline=train_pipeline))

model = dict(
    type='mmbeit.BEiTPretrain',
    backbone=dict(
        type='mmbeit.BEiT',
        arch='base',
        img_size=224,
        patch_size=16,
        drop_path_rate=0.1,
        layer_scale_init_value=0.1,
        use_mask_token=True,
        use_abs_pos_emb=False,
        use_rel_pos_bias=False,
        use_shared_rel_pos_bias=True,
        final_norm=True,
        out_type='raw'),
    # a linear layer to the 8192 visual tokens (widths come from the backbone and tokenizer)
    head=dict(type='mmbeit.BEiTMIMHead'),
    target_generator=dict(
        type='mmbeit.DALLEEncoder',
        # float16 body, float32 last layer: OpenAI's own CUDA precision
        fast=True,
        # OpenAI's weights, read without unpickling code; OpenMMLab's copy works too:
        # https://download.openmmlab.com/mmselfsup/1.x/target_generator_ckpt/dalle_encoder.pth
        checkpoint='https://cdn.openai.com/dall-e/encoder.pkl'),
)

optim_wrapper = dict(
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    optimizer=dict(type='AdamW', lr=1.5e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05),
    clip_grad=dict(max_norm=3.0),
    paramwise_cfg=dict(
        # no weight decay on biases, norms, q/v biases and layer scales (1-D), nor on the
        # class token and the position embedding, as unilm and mmpretrain
        flat_decay_mult=0.0,
        custom_keys={
            '.cls_token': dict(decay_mult=0.0),
            '.pos_embed': dict(decay_mult=0.0),
        }),
)

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

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=300)
val_cfg = None
val_dataloader = None
val_evaluator = None
test_cfg = None
test_dataloader = None
test_evaluator = None

default_hooks = dict(
    # only keeps the latest 3 checkpoints
    checkpoint=dict(type='mmbeit.AtomicCheckpointHook', interval=1, max_keep_ckpts=3))
# custom_hooks from default_runtime: stop at a non-finite loss and never save non-finite
# weights (the MIM head checks too); resumable randomness

randomness = dict(seed=0, diff_rank_seed=True)

# tools/train.py --auto-scale-lr rescales lr by (actual total batch) / 2048
auto_scale_lr = dict(base_batch_size=2048)
