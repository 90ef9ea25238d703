# BEiT v2-base/16 masked image modeling on ImageNet-1k, 300 epochs: unilm's recipe
# (beit2/PRETRAINING.md, base command, with its 300-epoch settings) = mmpretrain's
# configs/beitv2/beitv2_beit-base-p16_8xb256-amp-coslr-300e_in1k.py: 8 GPUs x 256 = 2048
# images per step, AdamW lr 1.5e-3, betas (0.9, 0.98) ("0.98 for 300 epochs"), weight decay
# 0.05 (none on 1-D parameters, the class token and the position embedding), gradient clipping
# 3.0, 10 warmup epochs then cosine to 1e-5 (run_beitv2_pretraining.py --min_lr), float16
# mixed precision; drop path 0 ("0. for 300 epochs"), layer scale 0.1.
# Each image gives two 224x224 bicubic views of one random crop of scale (0.2, 1.0)
# (--second_input_size 224 --second_interpolation bicubic --min_crop_scale 0.2): the backbone's,
# with 75 masked patches (blocks >= 16), and VQ-KD's, whose 14x14 tokens are the targets.
# The patch-aggregation neck (--early_layers 9 --head_layers 2 --shared_lm_head True) runs two
# layers over [last CLS, layer-9 patches]; the loss is the sum of both paths' cross-entropies.
# The other v2 pretraining configs inherit this file.
_base_ = '../_base_/default_runtime.py'

data_root = 'data/imagenet'
data_preprocessor = dict(
    type='mmbeit.TwoViewDataPreprocessor',
    # backbone view: ImageNet statistics (unilm --imagenet_default_mean_and_std)
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    # tokenizer view: x / 127.5 - 1 in [-1, 1], VQ-KD's input (unilm modeling_vqkd.py
    # pre_process 'default' on ToTensor's [0, 1]; mmpretrain second_mean = second_std = 127.5)
    second_mean=[127.5, 127.5, 127.5],
    second_std=[127.5, 127.5, 127.5],
    to_rgb=True,  # images are loaded as BGR
)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ColorJitter', brightness=0.4, contrast=0.4, saturation=0.4, hue=0.),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(
        type='mmbeit.TwoViewRandomResizedCrop',
        size=224,
        second_size=224,
        scale=(0.2, 1.0),
        interpolation='bicubic',
        second_interpolation='bicubic',
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
        drop_path_rate=0.0,
        layer_scale_init_value=0.1,
        use_mask_token=True,
        use_abs_pos_emb=False,
        use_rel_pos_bias=False,
        use_shared_rel_pos_bias=True,
        final_norm=False,  # the neck's norm is shared by both paths
        out_indices=[-4, -1],  # layer 9 of 12 (early_layers 9) and the last
        out_type='raw'),
    neck=dict(
        type='mmbeit.BEiTV2Neck',
        num_layers=2,
        early_layers=9,
        drop_path_rate=0.0,
        layer_scale_init_value=0.1),
    # the lm head shared by both paths (widths come from the backbone and tokenizer)
    head=dict(type='mmbeit.BEiTMIMHead'),
    target_generator=dict(
        type='mmbeit.VQKD',
        # unilm's recommended tokenizer (PRETRAINING.md --tokenizer_model
        # vqkd_encoder_base_decoder_3x768x12_clip); OpenMMLab's copy works too:
        # https://download.openmmlab.com/mmselfsup/1.x/target_generator_ckpt/vqkd_encoder.pth
        checkpoint='https://github.com/addf400/files/releases/download/BEiT-v2/'
        'vqkd_encoder_base_decoder_3x768x12_clip-d5036aa7.pth'),
)

optim_wrapper = dict(
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    optimizer=dict(type='AdamW', lr=1.5e-3, betas=(0.9, 0.98), eps=1e-8, weight_decay=0.05),
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

randomness = dict(seed=0, diff_rank_seed=True)

# tools/train.py --auto-scale-lr rescales lr by (actual total batch) / 2048
auto_scale_lr = dict(base_batch_size=2048)
