# VQ-KD tokenizer of BEiT v2 on ImageNet-1k, unilm's recipe (beit2/TOKENIZER.md, the
# vqkd_encoder_base_decoder_3x768x12_clip command, run_vqkd_training.py defaults):
# ViT-B/16 encoder, 8192 x 32 codebook (k-means init, EMA decay 0.99), a 3-layer 768-wide
# decoder, CLIP ViT-B/16 teacher, cosine loss; 8 GPUs x 64 = 512 images per step, AdamW
# lr 5e-5 x 512 / 128 = 2e-4 (run_vqkd_training.py scales --lr by batch / 128), betas
# (0.9, 0.99), weight decay 1e-4 (none on 1-D parameters, class tokens and position
# embeddings), no gradient clipping, 10 warmup epochs from 1e-6 then cosine to 1e-5,
# 100 epochs, float16 mixed precision. Random resized crops (scale 0.08-1, bicubic) and
# flips, no color jitter; images mapped to [-1, 1] (process_type='default').
_base_ = '../_base_/default_runtime.py'

data_root = 'data/imagenet'
# single view in [-1, 1]; images are loaded as BGR
data_preprocessor = dict(
    type='ImgDataPreprocessor', mean=[127.5] * 3, std=[127.5] * 3, bgr_to_rgb=True)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='RandomResizedCrop',
        scale=224,
        crop_ratio_range=(0.08, 1.0),
        interpolation='bicubic',
        backend='pillow'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=64,
    num_workers=10,
    persistent_workers=True,
    pin_memory=True,
    drop_last=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='ImageNet', data_root=data_root, split='train', pipeline=train_pipeline))

model = dict(
    type='mmbeit.VQKDTrainer',
    tokenizer=dict(
        type='mmbeit.VQKD',
        encoder=dict(type='mmbeit.BEiT', arch='base', img_size=224, patch_size=16),
        num_embed=8192,
        embed_dims=32,
        decay=0.99,
        kmeans_init=True),
    decoder=dict(
        type='mmbeit.BEiT',
        arch=dict(embed_dims=768, num_layers=3, num_heads=12, feedforward_channels=3072)),
    teacher=dict(
        type='mmbeit.ViTTeacher',
        kind='clip',
        img_size=224,
        # OpenAI CLIP ViT-B/16's image tower as a weights-only file: timm's copy
        # (vit_base_patch16_clip_quickgelu_224.openai), or OpenAI's state dict (visual.*)
        checkpoint='https://huggingface.co/timm/vit_base_patch16_clip_quickgelu_224.openai/'
        'resolve/main/model.safetensors'),
)

optim_wrapper = dict(
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    optimizer=dict(type='AdamW', lr=2e-4, betas=(0.9, 0.99), eps=1e-8, weight_decay=1e-4),
    paramwise_cfg=dict(
        flat_decay_mult=0.0,
        custom_keys={
            '.cls_token': dict(decay_mult=0.0),
            '.pos_embed': dict(decay_mult=0.0),
        }),
)

param_scheduler = [
    # unilm: linear from warmup_lr 1e-6 to lr over 10 epochs, per step
    dict(
        type='LinearLR',
        start_factor=1e-6 / 2e-4,
        by_epoch=True,
        begin=0,
        end=10,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        eta_min=1e-5,
        by_epoch=True,
        begin=10,
        end=100,
        convert_to_iter_based=True),
]

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=100)
val_cfg = None
val_dataloader = None
val_evaluator = None
test_cfg = None
test_dataloader = None
test_evaluator = None

default_hooks = dict(
    checkpoint=dict(type='mmbeit.AtomicCheckpointHook', interval=20, max_keep_ckpts=3))
# codes_unused counts the codes not chosen in the current epoch (unilm resets at each epoch)
custom_hooks = [
    dict(type='mmbeit.NonFiniteCheckHook'),
    dict(type='mmbeit.ResumableRandomnessHook'),
    dict(type='mmbeit.CodeUsageResetHook'),
]

randomness = dict(seed=0, diff_rank_seed=True)
# unilm trains with DDP find_unused_parameters=True; every trainable parameter here gets a
# gradient (the codebook is updated by EMA, not by the optimizer)

# tools/train.py --auto-scale-lr rescales lr by (actual total batch) / 512
auto_scale_lr = dict(base_batch_size=512)
