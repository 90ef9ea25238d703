"""Audit of every config in configs/ against the published BEiT recipes.

``RECIPES`` is the one table: a row per config with the values of the recipe it
follows, from unilm (the paper's code: beit/README.md, get_started_for_image_
classification.md, run_*.py defaults, semantic_segmentation/configs) and the paper,
or from mmpretrain / mmseg where a config reproduces their port. ``FACTS`` reads the
same quantities out of the loaded config (``_base_`` fragments are checked through
the configs that inherit them). A deliberate deviation is written in the row's
``deviations`` as ``key: (the config's value, the reason)``; the sample configs'
rows are deviations throughout, with their reason.

Batch and learning rate, exactly:
- total batch = GPUs (from the file name, ``{N}xb{B}``) x per-GPU batch (the config's
  ``train_dataloader.batch_size``, which must equal ``B``) x gradient accumulation
  (``optim_wrapper.accumulative_counts``).
- ``lr`` is the config's ``optimizer.lr``. unilm's BEiT scripts take ``--lr`` as the
  absolute learning rate at the recipe's total batch (run_beit_pretraining.py and
  run_class_finetuning.py print it unscaled; run_linear_eval.py scales
  ``base_lr * batch / 256`` only when ``--lr`` is not given, and the recipe gives it).
  So the effective lr of every recipe here is the stated lr at the stated batch.
- ``tools/train.py --auto-scale-lr`` multiplies lr by (GPUs x per-GPU batch) /
  ``auto_scale_lr.base_batch_size``: mmengine leaves accumulation out of that ratio,
  so ``base_batch_size`` must be GPUs x per-GPU batch (not the total batch) for the
  lr to stay the recipe's on the recipe's machines. Checked for every training config.
"""
import glob
import os.path as osp
import re
from typing import Any, Callable, Dict, List, Optional

import pytest
from mmengine.config import Config

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG_DIR = osp.join(ROOT, 'configs')
CONFIGS = sorted(
    osp.relpath(p, CONFIG_DIR)
    for p in glob.glob(osp.join(CONFIG_DIR, '**', '*.py'), recursive=True)
    if f'{osp.sep}_base_{osp.sep}' not in p)

IMAGENET_MEAN = (123.675, 116.28, 103.53)
HALF_MEAN = (127.5, 127.5, 127.5)  # unilm's default mean = std = 0.5 outside ImageNet-1k
# multi-scale + flip test: scales of the training rescale, each as is and flipped
TTA = ((0.5, 0.75, 1.0, 1.25, 1.5, 1.75), (0.0, 1.0))

# ---------------------------------------------------------------- published recipes
# unilm README "Pre-training BEiT-base on ImageNet-22k" / "... on ImageNet-1k" and
# run_beit_pretraining.py defaults (75 masked patches, blocks >= 16, second input 112,
# min_lr 1e-5, weight decay 0.05); paper: AdamW betas (0.9, 0.999), layer scale 0.1
# (1e-5 large). (run_beit_pretraining.py's own --opt_betas default is (0.9, 0.98), which
# the README commands do not override; the configs follow the paper and mmpretrain.)
_MIM = dict(
    kind='mim',
    lr=1.5e-3,
    total_batch=2048,
    betas=(0.9, 0.999),
    wd=0.05,
    clip=3.0,
    drop_path=0.1,
    layer_scale=0.1,
    min_lr=1e-5,
    decay='cosine',
    mask=(75, 16, 14),
    views=(224, 112),
    amp=True,
    arch='base')
_MIM_22K = dict(_MIM, epochs=150, warmup=('iter', 10000), mean=HALF_MEAN)
# unilm get_started_for_image_classification.md and run_class_finetuning.py defaults
# (label smoothing 0.1, RandAugment rand-m9-mstd0.5-inc1, erasing 0.25, min_lr 1e-6,
# crop_pct 224/256 below 384 and 1.0 from 384 up); --enable_deepspeed = fp16.
_FT = dict(
    kind='cls',
    label_smooth=0.1,
    randaug=(9, 0.5),
    erasing=0.25,
    min_lr=1e-6,
    decay='cosine',
    clip=None,
    amp=True,
    mean=HALF_MEAN,
    num_classes=1000)
_FT_224 = dict(_FT, img_size=224, crop=224, test_resize=256, test_crop=224)
_FT_PT22K_BASE = dict(
    _FT_224,
    arch='base',
    total_batch=1024,
    lr=4e-3,
    epochs=100,
    warmup=('epoch', 20),
    layer_decay=0.65,
    drop_path=0.1,
    wd=0.05,
    layer_scale=0.1,
    mixup=0.8,
    cutmix=1.0)
_FT_22K_1K_BASE = dict(
    _FT_224,
    arch='base',
    total_batch=512,
    lr=2e-5,
    epochs=30,
    warmup=('epoch', 5),
    layer_decay=0.85,
    drop_path=0.1,
    wd=1e-8,
    layer_scale=0.1,
    mixup=None,
    cutmix=None)
_FT_22K_1K_LARGE = dict(
    _FT_22K_1K_BASE, arch='large', layer_decay=0.9, drop_path=0.4, layer_scale=1e-5)
# inference-only configs: what the released fine-tuned weights were evaluated with
_INFER = dict(kind='infer', mean=HALF_MEAN, drop_path=0.0)
# unilm semantic_segmentation/configs/beit/upernet/upernet_beit_{base_12,large_24}_*:
# AdamW betas (0.9, 0.999) wd 0.05, LayerDecayOptimizerConstructor, linear warmup from
# 1e-6, poly power 1 to 0, UPerHead pool scales (1, 2, 3, 6), FCN auxiliary head on
# feature 2 with 256 channels and weight 0.4, ImageNet mean / std, apex fp16.
_SEG = dict(
    kind='seg',
    betas=(0.9, 0.999),
    wd=0.05,
    warmup_start=1e-6,
    poly=(1.0, 0.0),
    pool_scales=(1, 2, 3, 6),
    aux=(2, 256, 0.4),
    decode_weight=1.0,
    mean=IMAGENET_MEAN,
    amp=True,
    ratio_range=(0.5, 2.0),
    cat_max_ratio=0.75)
_SEG_BASE = dict(
    _SEG,
    arch='base',
    lr=3e-5,
    layer_decay=0.9,
    warmup=('iter', 1500),
    total_batch=16,
    updates=160000,
    drop_path=0.1,
    layer_scale=0.1,
    out_indices=(3, 5, 7, 11),
    channels=768)
_SEG_LARGE = dict(
    _SEG,
    arch='large',
    lr=2e-5,
    layer_decay=0.95,
    total_batch=16,
    updates=160000,
    drop_path=0.2,
    layer_scale=1e-6,
    out_indices=(7, 11, 15, 23),
    channels=1024)
_SEG_512 = dict(crop=512, img_scale=(2048, 512), test=('slide', 512, 341))
_SEG_640 = dict(crop=640, img_scale=(2560, 640), test=('slide', 640, 426))

_AMP_FLAG = ('mmseg\'s port of this recipe (its file name has no "amp") trains in float32; '
             'unilm used apex fp16: add tools/train.py --amp for it')
_LARGE_8X1 = ('8 GPUs x 1 image x accumulation 2 (the 640 recipe) instead of unilm\'s 8 x 2: '
              'the same 16 images and 160k updates per run, warmup 3000 iterations = 1500 '
              'updates as unilm\'s, so one setting fits 16 GB GPUs at 512 and 640; SyncBN '
              'sees 8 images per step instead of 16')
# BEiT v2 (unilm beit2/): PRETRAINING.md base and large commands and
# run_beitv2_pretraining.py defaults (--min_lr 1e-5, --weight_decay 0.05,
# --min_mask_patches_per_block 16, max None); "--opt_betas: 0.98 for 300 epochs and 0.999
# for 1600 epochs", "--drop_path: 0. for 300 epochs and 0.1 for 1600 epochs"; VQ-KD's view
# in [-1, 1] (modeling_vqkd.py pre_process 'default'), ImageNet mean / std for the
# backbone's (--imagenet_default_mean_and_std).
_MIM2 = dict(
    _MIM,
    kind='mim2',
    warmup=('epoch', 10),
    views=(224, 224),
    crop_scale=(0.2, 1.0),
    interp=('bicubic', 'bicubic'),
    mean=IMAGENET_MEAN,
    second_mean=HALF_MEAN,
    early_layers=9,
    neck_layers=2,
    out_indices=(-4, -1),
    tokenizer='mmbeit.VQKD')
_MIM2_300 = dict(_MIM2, epochs=300, betas=(0.9, 0.98), drop_path=0.0)
_MIM2_1600 = dict(_MIM2, epochs=1600, betas=(0.9, 0.999), drop_path=0.1)
_MIM2_LARGE = dict(arch='large', layer_scale=1e-5, early_layers=21)
# unilm beit2/get_started_for_image_classification.md: lr 5e-4 "for pretrained models", 100
# epochs (base; 50 large), Mixup 0.8, CutMix 1.0, ImageNet mean / std, fp16 (--enable_deepspeed)
_FT_V2_BASE = dict(
    _FT_224,
    arch='base',
    total_batch=1024,
    lr=5e-4,
    epochs=100,
    warmup=('epoch', 20),
    wd=0.05,
    layer_scale=0.1,
    mixup=0.8,
    cutmix=1.0,
    mean=IMAGENET_MEAN)
_SAMPLE = 'tiny sample config: trains on 2 CPU cores in minutes on the bundled sample data'

# unilm beit2/TOKENIZER.md (8 V100 x 64) and run_vqkd_training.py: --lr 5e-5 scaled by the
# total batch / 128 = 2e-4, warmup_lr 1e-6, min_lr 1e-5, --opt_betas 0.9 0.99, --weight_decay
# 1e-4, no clip_grad, 100 epochs, 10 warmup, amp; --min_crop_scale 0.08; process_type
# default ([-1, 1]); CLIP ViT-B/16 teacher, 8192 x 32 codebook, 3-layer decoder
_VQKD = dict(
    kind='vqkd',
    arch='base',
    lr=2e-4,
    total_batch=512,
    betas=(0.9, 0.99),
    wd=1e-4,
    clip=None,
    epochs=100,
    warmup=('epoch', 10),
    warmup_start=1e-6 / 2e-4,
    min_lr=1e-5,
    decay='cosine',
    amp=True,
    mean=HALF_MEAN,
    crop_scale=(0.08, 1.0),
    codebook=(8192, 32),
    decoder_depth=3,
    teacher=('clip', 'https://huggingface.co/timm/vit_base_patch16_clip_quickgelu_224.openai/'
             'resolve/main/model.safetensors'))

RECIPES: Dict[str, Dict[str, Any]] = {
    # ------------------------------------------------ masked image modeling
    'beit/beit_beit-base-p16_8xb256-amp-coslr-300e_in1k.py':
    dict(
        _MIM,
        source='mmpretrain configs/beit/beit_beit-base-p16_8xb256-amp-coslr-300e_in1k',
        epochs=300,
        warmup=('epoch', 10),
        mean=IMAGENET_MEAN),
    'beit/beit_beit-base-p16_8xb256-3rdparty_in21k.py':
    dict(
        _MIM,
        source='inference config of unilm beit_base_patch16_224_pt22k (transformers '
        'microsoft/beit-base-patch16-224-pt22k): the 300-epoch config it inherits, with the '
        '22k weights\' normalization',
        epochs=300,
        warmup=('epoch', 10),
        mean=HALF_MEAN,
        deviations=dict(drop_path=(0.0, 'inference of released weights: no stochastic depth'))),
    'beit/beit_beit-base-p16_16xb128-amp-coslr-800e_in1k.py':
    dict(
        _MIM,
        source='unilm beit/README.md, pre-training BEiT-base on ImageNet-1k',
        epochs=800,
        warmup=('epoch', 10),
        mean=IMAGENET_MEAN),
    'beit/beit_beit-base-p16_16xb128-amp-coslr-150e_in21k.py':
    dict(_MIM_22K, source='unilm beit/README.md, pre-training BEiT-base on ImageNet-22k'),
    'beit/beit_beit-large-p16_16xb128-amp-coslr-150e_in21k.py':
    dict(
        _MIM_22K,
        source='unilm README (base command; "1e-5 for large")',
        arch='large',
        layer_scale=1e-5),
    'beit/beit_beit-large-p16_16xb128-amp-fsdp-coslr-150e_in21k.py':
    dict(
        _MIM_22K,
        source='as the large 22k pretrain, sharded; FSDP: global-norm clip and '
        'weight decay as under DDP (mmbeit/engine/fsdp_optim_wrapper*.py)',
        arch='large',
        layer_scale=1e-5,
        clip_type='mmbeit.FSDPAmpOptimWrapper',
        constructor='mmbeit.FSDPOptimWrapperConstructor'),
    'beit/beit_beit-tiny-p8_1xb32-10e_sample.py':
    dict(
        _MIM,
        source='the 300-epoch base recipe scaled down',
        epochs=300,
        warmup=('epoch', 10),
        mean=IMAGENET_MEAN,
        deviations=dict(
            arch=('tiny', _SAMPLE),
            total_batch=(32, _SAMPLE),
            amp=(False, 'CPU: float32'),
            drop_path=(0.0, _SAMPLE + ': no regularization needed'),
            epochs=(10, _SAMPLE),
            warmup=(('epoch', 1), _SAMPLE),
            mask=((24, 4, 8), '64-pixel images = 8x8 patches: 3/8 of them, blocks >= 4'),
            views=((64, 64), '64-pixel images; the tiny tokenizer sees them whole'),
            mean=(HALF_MEAN, 'as the sample fine-tuning configs normalize'))),
    # ------------------------------------------------ VQ-KD tokenizer (BEiT v2)
    'vqkd/vqkd_vit-base-p16_8xb64-amp-coslr-100e_in1k.py':
    dict(
        _VQKD,
        source='unilm beit2/TOKENIZER.md (vqkd_encoder_base_decoder_3x768x12_clip) '
        'and run_vqkd_training.py defaults'),
    'vqkd/vqkd_vit-tiny-p8_1xb32-4e_sample.py':
    dict(
        _VQKD,
        source='the ImageNet VQ-KD recipe scaled down',
        deviations=dict(
            arch=('tiny', _SAMPLE),
            codebook=((128, 16), _SAMPLE + ': a small codebook for 32000 patches'),
            decoder_depth=(1, _SAMPLE),
            teacher=(('clip', None), 'no teacher weights can be downloaded here: a tiny '
                     'random fixed-seed CLIP-like ViT'),
            total_batch=(32, _SAMPLE),
            lr=(1e-3, _SAMPLE + ': few steps'),
            amp=(False, 'CPU: float32'),
            epochs=(4, _SAMPLE),
            warmup=(('epoch', 1), _SAMPLE),
            warmup_start=(1e-2, _SAMPLE),
            crop_scale=((0.35, 1.0), '64-pixel drawn shapes: crops keep a shape in view'))),
    # ------------------------------------------------ ImageNet classification
    'beit/benchmarks/beit-base-p16_8xb128-coslr-100e_in1k.py':
    dict(
        _FT_PT22K_BASE,
        source='mmpretrain benchmarks/beit-base-p16_8xb128-coslr-100e_in1k '
        '= unilm get_started base command from a pretrain',
        deviations=dict(
            amp=(False, 'mmpretrain\'s recipe (83.1) is float32; tools/train.py --amp'))),
    'beit/benchmarks/beit-base-p16_8xb128-ema-coslr-100e_in1k.py':
    dict(
        _FT_PT22K_BASE,
        source='the 100e recipe + unilm --model_ema (decay 0.9999)',
        ema=1e-4,
        deviations=dict(
            amp=(False, 'mmpretrain\'s recipe (83.1) is float32; tools/train.py --amp'))),
    'beit/benchmarks/beit-base-p16_8xb128-linear-coslr-100e_in1k.py':
    dict(
        kind='linear',
        source='unilm run_linear_eval.py (--lr 4e-3 absolute, 8 x 128)',
        arch='base',
        total_batch=1024,
        lr=4e-3,
        wd=1e-4,
        epochs=100,
        warmup=None,
        min_lr=0.0,
        decay='cosine',
        frozen=12,
        crop=224,
        test_resize=256,
        test_crop=224,
        mean=HALF_MEAN),
    'beit/benchmarks/beit-base-p16_8xb64_in1k-384px.py':
    dict(
        _INFER,
        source='unilm beit_base_patch16_384_pt22k_ft22kto1k',
        arch='base',
        img_size=384,
        test_resize=384,
        test_crop=384,
        num_classes=1000),
    'beit/benchmarks/beit-base-p16_8xb64_in1k.py':
    dict(
        _INFER,
        source='unilm beit_base_patch16_224_pt22k_ft22kto1k',
        arch='base',
        img_size=224,
        test_resize=256,
        test_crop=224,
        num_classes=1000),
    'beit/benchmarks/beit-base-p16_8xb64_in21k.py':
    dict(
        _INFER,
        source='unilm beit_base_patch16_224_pt22k_ft22k',
        arch='base',
        img_size=224,
        test_resize=256,
        test_crop=224,
        num_classes=21841),
    'beit/benchmarks/beit-base-p16_in21k-ft-pre_8xb64-amp-coslr-30e_in1k.py':
    dict(_FT_22K_1K_BASE, source='unilm get_started, BEiT-base from pt22k_ft22k'),
    'beit/benchmarks/beit-base-p16_in21k-ft-pre_8xb64-amp-coslr-30e_in1k-384px.py':
    dict(
        _FT_22K_1K_BASE,
        source='unilm get_started, BEiT-base from pt22k_ft22k, --input_size 384',
        img_size=384,
        crop=384,
        test_resize=384,
        test_crop=384),
    'beit/benchmarks/beit-base-p16_in21k-pre_16xb256-amp-coslr-90e_in21k.py':
    dict(
        _FT_224,
        source='unilm README, fine-tuning BEiT-base on ImageNet-22k',
        arch='base',
        total_batch=4096,
        lr=3e-3,
        epochs=90,
        warmup=('epoch', 5),
        layer_decay=0.65,
        drop_path=0.2,
        wd=0.05,
        layer_scale=0.1,
        clip=3.0,
        mixup=None,
        cutmix=None,
        num_classes=21841),
    'beit/benchmarks/beit-large-p16_in21k-ft-pre_8xb16-accu4-amp-coslr-30e_in1k-512px.py':
    dict(
        _FT_22K_1K_LARGE,
        source='unilm get_started, BEiT-large from pt22k_ft22k, '
        '--input_size 512 with accumulation (total batch kept at 512)',
        img_size=512,
        crop=512,
        test_resize=512,
        test_crop=512),
    'beit/benchmarks/beit-large-p16_in21k-ft-pre_8xb32-accu2-amp-coslr-30e_in1k.py':
    dict(_FT_22K_1K_LARGE, source='unilm get_started, BEiT-large from pt22k_ft22k'),
    'beit/benchmarks/beit-large-p16_in21k-pre_8xb64-accu2-amp-coslr-50e_in1k.py':
    dict(
        _FT_224,
        source='unilm get_started, BEiT-large from pt22k (mixup, cutmix)',
        arch='large',
        total_batch=1024,
        lr=1e-3,
        epochs=50,
        warmup=('epoch', 5),
        layer_decay=0.75,
        drop_path=0.2,
        wd=0.05,
        layer_scale=1e-5,
        mixup=0.8,
        cutmix=1.0),
    'beit/benchmarks/beit-tiny-p8_1xb32-20e_sample.py':
    dict(
        _FT_PT22K_BASE,
        source='the base fine-tuning recipe scaled down',
        deviations=dict(
            arch=('tiny', _SAMPLE),
            img_size=(64, _SAMPLE),
            crop=(64, _SAMPLE),
            test_resize=(64, _SAMPLE),
            test_crop=(64, _SAMPLE),
            total_batch=(32, _SAMPLE),
            lr=(2e-3, _SAMPLE + ': tuned for 500 images'),
            epochs=(20, _SAMPLE),
            warmup=(('epoch', 2), _SAMPLE),
            layer_decay=(0.75, 'a 4-layer backbone'),
            drop_path=(0.0, _SAMPLE),
            min_lr=(1e-5, _SAMPLE),
            num_classes=(5, _SAMPLE),
            mixup=(None, 'no Mixup / CutMix on 500 images'),
            cutmix=(None, 'as mixup'),
            randaug=(None, 'drawn shapes: no RandAugment'),
            erasing=(None, 'as randaug'),
            amp=(False, 'CPU: float32'))),
    # ------------------------------------------------ ADE20K segmentation
    'upernet_beit/upernet_beit-base_8xb2-160k_ade20k-512x512.py':
    dict(
        _SEG_BASE,
        **_SEG_512,
        source='unilm upernet_beit_base_12_512_slide_160k_ade20k',
        deviations=dict(amp=(False, _AMP_FLAG))),
    'upernet_beit/upernet_beit-base_8xb2-160k_ade20k-640x640.py':
    dict(
        _SEG_BASE,
        **_SEG_640,
        source='unilm upernet_beit_base_12_640_slide_160k_ade20k',
        deviations=dict(amp=(False, _AMP_FLAG))),
    'upernet_beit/upernet_beit-base_8xb2-160k_ade20k-640x640_ms.py':
    dict(
        _SEG_BASE,
        **_SEG_640,
        source='unilm ..._640_slide_160k_ade20k_ms (ms + flip test)',
        tta=TTA,
        deviations=dict(amp=(False, _AMP_FLAG))),
    'upernet_beit/upernet_beit-large_fp16_8xb1-amp-160k_ade20k-512x512.py':
    dict(
        _SEG_LARGE,
        **_SEG_512,
        source='unilm upernet_beit_large_24_512_slide_160k_ade20k',
        accum=1,
        warmup=('iter', 1500),
        deviations=dict(accum=(2, _LARGE_8X1), warmup=(('iter', 3000), _LARGE_8X1))),
    'upernet_beit/upernet_beit-large_fp16_8xb1-amp-160k_ade20k-640x640.py':
    dict(
        _SEG_LARGE,
        **_SEG_640,
        source='unilm upernet_beit_large_24_640_slide_160k_ade20k '
        '(8 x 1, update_interval 2, schedule_320k: "the total update step keep 160k")',
        accum=2,
        warmup=('iter', 3000)),
    'upernet_beit/upernet_beit-large_fp16_8xb1-amp-160k_ade20k-640x640_ms.py':
    dict(
        _SEG_LARGE,
        **_SEG_640,
        source='unilm ..._large_24_640_slide_160k_ade20k_ms',
        accum=2,
        warmup=('iter', 3000),
        tta=TTA),
    'upernet_beit/upernet_beit-large_hf-ade20k-640x640.py':
    dict(
        kind='seg_infer',
        source='transformers microsoft/beit-large-finetuned-ade-640-640 '
        '(unilm beit_large_patch16_640_pt22k_ft22ktoade20k)',
        arch='large',
        out_indices=(7, 11, 15, 23),
        channels=1024,
        pool_scales=(1, 2, 3, 6),
        aux=(2, 256, 0.4),
        crop=640,
        img_scale=(2560, 640),
        test=('slide', 640, 426),
        mean=IMAGENET_MEAN,
        drop_path=0.0),
    'upernet_beit/upernet_beit-tiny_1xb8-500_sample-64x64.py':
    dict(
        _SEG_BASE,
        **_SEG_640,
        source='the base recipe scaled down',
        deviations=dict(
            arch=('tiny', _SAMPLE),
            total_batch=(8, _SAMPLE),
            updates=(500, _SAMPLE),
            lr=(1e-3, _SAMPLE + ': from scratch, not from a pretrain'),
            warmup=(('iter', 50), _SAMPLE),
            warmup_start=(1e-3, _SAMPLE),
            drop_path=(0.0, _SAMPLE),
            out_indices=((0, 1, 2, 3), 'a 4-layer backbone'),
            channels=(64, _SAMPLE),
            aux=((2, 32, 0.4), _SAMPLE),
            crop=(64, _SAMPLE),
            img_scale=((64, 64), _SAMPLE),
            ratio_range=((0.75, 1.5), _SAMPLE),
            test=(('whole', None, None), '64-pixel images fit whole'),
            amp=(False, 'CPU: float32'))),
    # ------------------------------------------------ BEiT v2
    'beitv2/beitv2_beit-base-p16_8xb256-amp-coslr-300e_in1k.py':
    dict(
        _MIM2_300,
        source='unilm beit2/PRETRAINING.md base command with its 300-epoch values = mmpretrain '
        'configs/beitv2/beitv2_beit-base-p16_8xb256-amp-coslr-300e_in1k'),
    'beitv2/beitv2_beit-base-p16_8xb256-amp-coslr-1600e_in1k.py':
    dict(
        _MIM2_1600,
        source='unilm beit2/PRETRAINING.md base command = mmpretrain '
        'configs/beitv2/beitv2_beit-base-p16_8xb256-amp-coslr-1600e_in1k'),
    'beitv2/beitv2_beit-large-p16_64xb32-amp-coslr-1600e_in1k.py':
    dict(_MIM2_1600, **_MIM2_LARGE, source='unilm beit2/PRETRAINING.md large command'),
    'beitv2/beitv2_beit-large-p16_64xb32-amp-coslr-300e_in1k.py':
    dict(
        _MIM2_300,
        **_MIM2_LARGE,
        source='unilm beit2/PRETRAINING.md large command with its 300-epoch values'),
    'beitv2/beitv2_beit-tiny-p8_1xb32-10e_sample.py':
    dict(
        _MIM2_300,
        source='the 300-epoch base v2 recipe scaled down',
        deviations=dict(
            arch=('tiny', _SAMPLE),
            total_batch=(32, _SAMPLE),
            amp=(False, 'CPU: float32'),
            epochs=(10, _SAMPLE),
            warmup=(('epoch', 1), _SAMPLE),
            mask=((24, 4, 8), '64-pixel images = 8x8 patches: 3/8 of them, blocks >= 4'),
            views=((64, 64), '64-pixel images; the tiny tokenizer sees them whole'),
            crop_scale=((0.35, 1.0), 'crops of drawn 64-pixel shapes keep the shape'),
            early_layers=(3, 'layer 3 of the 4 tiny ones (base: 9 of 12)'),
            out_indices=((-2, -1), 'layer 3 of 4 and the last'))),
    'beitv2/benchmarks/beit-base-p16_8xb128-coslr-100e_in1k.py':
    dict(
        _FT_V2_BASE,
        source='mmpretrain configs/beitv2/benchmarks/beit-base-p16_8xb128-coslr-100e_in1k '
        '= unilm get_started values for 300-epoch pretrains (layer decay 0.65, drop path 0.1)',
        layer_decay=0.65,
        drop_path=0.1,
        deviations=dict(
            amp=(False, 'mmpretrain\'s recipe (85.0) is float32; tools/train.py --amp'))),
    'beitv2/benchmarks/beit-base-p16_8xb128-amp-coslr-100e_in1k.py':
    dict(
        _FT_V2_BASE,
        source='unilm get_started values for 1600-epoch pretrains (layer decay 0.6, drop '
        'path 0.2)',
        layer_decay=0.6,
        drop_path=0.2),
    'beitv2/benchmarks/beit-large-p16_8xb64-accu2-amp-coslr-50e_in1k.py':
    dict(
        _FT_V2_BASE,
        source='unilm get_started large: lr 2e-4 for 1600-epoch pretrains, 50 epochs, layer '
        'decay 0.8, drop path 0.2 "for pretrained models", warmup 5 and 8 x 64 x 2 of its '
        'large command',
        arch='large',
        lr=2e-4,
        epochs=50,
        warmup=('epoch', 5),
        layer_decay=0.8,
        drop_path=0.2,
        layer_scale=1e-5),
    'beitv2/upernet_beitv2-base_8xb2-amp-160k_ade20k-512x512.py':
    dict(
        _SEG_BASE,
        **_SEG_512,
        source='unilm beit2/semantic_segmentation upernet_beit_base_12_512_slide_160k_ade20k',
        lr=5e-5,
        layer_decay=0.75,
        drop_path=0.15,
        warmup=('iter', 1500)),
    'beitv2/upernet_beitv2-large_8xb2-amp-160k_ade20k-512x512.py':
    dict(
        _SEG_LARGE,
        **_SEG_512,
        source='unilm beit2/semantic_segmentation upernet_beit_large_24_512_slide_160k_ade20k',
        lr=4e-5,
        layer_decay=0.9,
        drop_path=0.2,
        layer_scale=1e-6,
        accum=1,
        warmup=('iter', 1500)),
}

# ---------------------------------------------------------------- what a config says


def _find(pipeline: Optional[List], typ: str) -> Optional[dict]:
    """The first transform of type ``typ`` (also inside TestTimeAug), or None."""
    for t in pipeline or []:
        if isinstance(t, (list, tuple)):
            found = _find(t, typ)
        elif t.get('type') == typ:
            found = t
        else:
            found = _find(t.get('transforms'), typ)
        if found is not None:
            return found
    return None


def _pipeline(cfg: Config, loader: str) -> List:
    dl = cfg.get(loader)
    return list(dl.dataset.pipeline) if dl else []


def _backbone(cfg: Config) -> dict:
    if cfg.model.type == 'mmbeit.VQKDTrainer':
        return cfg.model.tokenizer.encoder  # the tokenizer's ViT
    return cfg.model.backbone


def _schedulers(cfg: Config):
    scheds = list(cfg.get('param_scheduler') or [])
    warm = [s for s in scheds if s.type == 'LinearLR']
    main = [s for s in scheds if s.type != 'LinearLR']
    return (warm[0] if warm else None), (main[0] if main else None)


def _warmup(cfg: Config):
    warm, _ = _schedulers(cfg)
    if warm is None:
        return None
    return ('epoch' if warm.get('by_epoch', True) else 'iter', warm.end)


def _decay(cfg: Config) -> Optional[str]:
    _, main = _schedulers(cfg)
    return {'CosineAnnealingLR': 'cosine', 'PolyLR': 'poly'}.get(main.type) if main else None


def _gpus_and_per_gpu(path: str):
    m = re.search(r'_(\d+)xb(\d+)', osp.basename(path))
    return (int(m.group(1)), int(m.group(2))) if m else (None, None)


def _accum(cfg: Config) -> int:
    return cfg.optim_wrapper.get('accumulative_counts', 1)


def _total_batch(cfg: Config, path: str) -> int:
    gpus, _ = _gpus_and_per_gpu(path)
    return gpus * cfg.train_dataloader.batch_size * _accum(cfg)


def _augment(cfg: Config, typ: str):
    augments = (cfg.model.get('train_cfg') or {}).get('augments') or []
    return next((a.alpha for a in augments if a.type == typ), None)


def _randaug(cfg: Config):
    t = _find(_pipeline(cfg, 'train_dataloader'), 'RandAugment')
    return (t.magnitude_level, t.magnitude_std) if t else None


def _heads(cfg: Config):
    return cfg.model.decode_head, cfg.model.auxiliary_head


def _test_cfg(cfg: Config):
    t = cfg.model.test_cfg
    if t.mode == 'whole':
        return ('whole', None, None)
    assert t.crop_size[0] == t.crop_size[1] and t.stride[0] == t.stride[1]
    return (t.mode, t.crop_size[0], t.stride[0])


def _tta(cfg: Config):
    """(scales relative to the training rescale, flip probabilities) of the ms test."""
    if 'tta_pipeline' not in cfg:
        return None
    resizes, flips = _find(cfg.tta_pipeline, 'TestTimeAug').transforms[:2]
    base = _img_scale(cfg)
    return (tuple(r.scale[0] / base[0] for r in resizes), tuple(sorted(f.prob for f in flips)))


def _img_scale(cfg: Config):
    return tuple(_find(_pipeline(cfg, 'train_dataloader'), 'RandomResize').scale)


def _mean(cfg: Config):
    pre = cfg.model.get('data_preprocessor') or cfg.get('data_preprocessor')
    return tuple(pre.mean)


def _clip(cfg: Config):
    clip = cfg.optim_wrapper.get('clip_grad')
    return clip.max_norm if clip else None


FACTS: Dict[str, Callable[[Config, str], Any]] = {
    'arch':
    lambda c, p: _backbone(c).arch,
    'img_size':
    lambda c, p: _backbone(c).img_size,
    'drop_path':
    lambda c, p: _backbone(c).get('drop_path_rate', 0.0),
    'layer_scale':
    lambda c, p: _backbone(c).layer_scale_init_value,
    'out_indices':
    lambda c, p: tuple(_backbone(c).out_indices),
    'frozen':
    lambda c, p: _backbone(c).get('frozen_stages'),
    'total_batch':
    _total_batch,
    'accum':
    lambda c, p: _accum(c),
    'lr':
    lambda c, p: c.optim_wrapper.optimizer.lr,
    'betas':
    lambda c, p: tuple(c.optim_wrapper.optimizer.betas),
    'wd':
    lambda c, p: c.optim_wrapper.optimizer.weight_decay,
    'clip':
    lambda c, p: _clip(c),
    'clip_type':
    lambda c, p: c.optim_wrapper.type,
    'constructor':
    lambda c, p: c.optim_wrapper.get('constructor'),
    'amp':
    lambda c, p: 'Amp' in c.optim_wrapper.get('type', 'OptimWrapper'),
    'layer_decay':
    lambda c, p: (c.optim_wrapper.get('paramwise_cfg') or {}).get('layer_decay_rate'),
    'epochs':
    lambda c, p: c.train_cfg.max_epochs,
    'updates':
    lambda c, p: c.train_cfg.max_iters // _accum(c),
    'warmup':
    lambda c, p: _warmup(c),
    'warmup_start':
    lambda c, p: _schedulers(c)[0].start_factor,
    'decay':
    lambda c, p: _decay(c),
    'min_lr':
    lambda c, p: _schedulers(c)[1].eta_min,
    'poly':
    lambda c, p: (_schedulers(c)[1].power, _schedulers(c)[1].eta_min),
    'ema':
    lambda c, p: next((h.momentum for h in c.get('custom_hooks', []) if h.type == 'EMAHook'), None),
    'mean':
    lambda c, p: _mean(c),
    # masked image modeling
    'mask':
    lambda c, p: (lambda t: (t.num_masking_patches, t.min_num_patches, t.input_size[0]))
    (_find(_pipeline(c, 'train_dataloader'), 'mmbeit.BEiTMaskGenerator')),
    'views':
    lambda c, p: (lambda t: (t.size, t.second_size))
    (_find(_pipeline(c, 'train_dataloader'), 'mmbeit.TwoViewRandomResizedCrop')),
    # BEiT v2
    'interp':
    lambda c, p: (lambda t: (t.interpolation, t.second_interpolation))
    (_find(_pipeline(c, 'train_dataloader'), 'mmbeit.TwoViewRandomResizedCrop')),
    'second_mean':
    lambda c, p: tuple(
        (c.model.get('data_preprocessor') or c.get('data_preprocessor')).second_mean),
    'early_layers':
    lambda c, p: c.model.neck.early_layers,
    'neck_layers':
    lambda c, p: c.model.neck.num_layers,
    'tokenizer':
    lambda c, p: c.model.target_generator.type,
    # classification
    'num_classes':
    lambda c, p: c.model.head.num_classes,
    'label_smooth':
    lambda c, p: c.model.head.loss.get('label_smooth_val'),
    'mixup':
    lambda c, p: _augment(c, 'Mixup'),
    'cutmix':
    lambda c, p: _augment(c, 'CutMix'),
    'randaug':
    lambda c, p: _randaug(c),
    'erasing':
    lambda c, p: (lambda t: t.erase_prob
                  if t else None)(_find(_pipeline(c, 'train_dataloader'), 'RandomErasing')),
    'crop':
    lambda c, p: (_find(_pipeline(c, 'train_dataloader'), 'RandomCrop').crop_size[0]
                  if c.get('default_scope') == 'mmseg' else _find(
                      _pipeline(c, 'train_dataloader'), 'RandomResizedCrop').scale),
    'test_resize':
    lambda c, p: _find(_pipeline(c, 'test_dataloader'), 'ResizeEdge').scale,
    'test_crop':
    lambda c, p: _find(_pipeline(c, 'test_dataloader'), 'CenterCrop').crop_size,
    # segmentation
    'img_scale':
    lambda c, p: _img_scale(c),
    'ratio_range':
    lambda c, p: tuple(_find(_pipeline(c, 'train_dataloader'), 'RandomResize').ratio_range),
    'cat_max_ratio':
    lambda c, p: _find(_pipeline(c, 'train_dataloader'), 'RandomCrop').cat_max_ratio,
    'channels':
    lambda c, p: _uper_width(c),
    'pool_scales':
    lambda c, p: tuple(_heads(c)[0].pool_scales),
    'aux':
    lambda c, p:
    (_heads(c)[1].in_index, _heads(c)[1].channels, _heads(c)[1].loss_decode.loss_weight),
    'decode_weight':
    lambda c, p: _heads(c)[0].loss_decode.loss_weight,
    'test':
    lambda c, p: _test_cfg(c),
    'tta':
    lambda c, p: _tta(c),
    # VQ-KD
    'codebook':
    lambda c, p: (c.model.tokenizer.num_embed, c.model.tokenizer.embed_dims),
    'decoder_depth':
    lambda c, p: c.model.decoder.arch.num_layers,
    'teacher':
    lambda c, p: (c.model.teacher.kind, c.model.teacher.get('checkpoint')),
    'crop_scale':
    lambda c, p: _crop_scale(c),
}


def _crop_scale(c: Config):
    """The random crop's area range: the two-view crop's (MIM) or RandomResizedCrop's."""
    two_view = _find(_pipeline(c, 'train_dataloader'), 'mmbeit.TwoViewRandomResizedCrop')
    if two_view is not None:
        return tuple(two_view.scale)
    return tuple(_find(_pipeline(c, 'train_dataloader'), 'RandomResizedCrop').crop_ratio_range)


def _uper_width(c: Config):
    """UperNet's width: neck, UPerHead in/out and FCN input all equal (else all of them)."""
    decode, aux = _heads(c)
    widths = (c.model.neck.embed_dim, decode.channels, *decode.in_channels, aux.in_channels)
    return widths[0] if len(set(widths)) == 1 else widths


# keys that every row of a kind must state (so a row cannot skip a check silently)
REQUIRED = {
    'mim': {
        'arch', 'lr', 'total_batch', 'betas', 'wd', 'clip', 'drop_path', 'layer_scale', 'epochs',
        'warmup', 'min_lr', 'decay', 'mask', 'views', 'amp', 'mean'
    },
    'mim2': {
        'arch', 'lr', 'total_batch', 'betas', 'wd', 'clip', 'drop_path', 'layer_scale', 'epochs',
        'warmup', 'min_lr', 'decay', 'mask', 'views', 'amp', 'mean', 'crop_scale', 'interp',
        'second_mean', 'early_layers', 'neck_layers', 'out_indices', 'tokenizer'
    },
    'cls': {
        'arch', 'img_size', 'lr', 'total_batch', 'wd', 'clip', 'layer_decay', 'drop_path',
        'layer_scale', 'epochs', 'warmup', 'min_lr', 'decay', 'mixup', 'cutmix', 'label_smooth',
        'randaug', 'erasing', 'crop', 'test_resize', 'test_crop', 'amp', 'mean', 'num_classes'
    },
    'linear': {
        'arch', 'lr', 'total_batch', 'wd', 'epochs', 'warmup', 'min_lr', 'decay', 'frozen', 'crop',
        'test_resize', 'test_crop', 'mean'
    },
    'infer': {'arch', 'img_size', 'test_resize', 'test_crop', 'num_classes', 'mean', 'drop_path'},
    'seg': {
        'arch', 'lr', 'total_batch', 'betas', 'wd', 'layer_decay', 'drop_path', 'layer_scale',
        'updates', 'warmup', 'warmup_start', 'poly', 'crop', 'img_scale', 'ratio_range',
        'cat_max_ratio', 'out_indices', 'channels', 'pool_scales', 'aux', 'decode_weight', 'test',
        'mean', 'amp'
    },
    'vqkd': {
        'arch', 'lr', 'total_batch', 'betas', 'wd', 'clip', 'epochs', 'warmup', 'warmup_start',
        'min_lr', 'decay', 'amp', 'mean', 'crop_scale', 'codebook', 'decoder_depth', 'teacher'
    },
    'seg_infer': {
        'arch', 'out_indices', 'channels', 'pool_scales', 'aux', 'crop', 'img_scale', 'test',
        'mean', 'drop_path'
    },
}
TRAINING_KINDS = {'mim', 'mim2', 'cls', 'linear', 'seg', 'vqkd'}
ROW_KEYS = {'kind', 'source', 'deviations'}


def audit(cfg: Config, path: str, row: Dict[str, Any]) -> List[str]:
    """Every way ``cfg`` (at ``path``, relative to configs/) differs from ``row``."""
    problems = []
    deviations = row.get('deviations', {})
    for key, (value, reason) in deviations.items():
        if not reason:
            problems.append(f'{key}: a deviation without its reason')
        if key in row and row[key] == value:
            problems.append(f'{key}: listed as a deviation but equals the recipe ({value!r})')
    for key in sorted(set(row) - ROW_KEYS):
        expected = deviations[key][0] if key in deviations else row[key]
        try:
            actual = FACTS[key](cfg, path)
        except (AttributeError, KeyError, TypeError) as e:
            problems.append(f'{key}: cannot be read from the config ({type(e).__name__}: {e})')
            continue
        if actual != expected:
            what = 'the deviation written in the table' if key in deviations else 'the recipe'
            problems.append(f'{key} = {actual!r}, {what} says {expected!r}')
    for key in sorted(set(deviations) - set(row)):
        problems.append(f'{key}: a deviation of a value the row does not state')
    if row['kind'] in TRAINING_KINDS:
        problems += _audit_training(cfg, path)
    return problems


def _audit_training(cfg: Config, path: str) -> List[str]:
    """Checks that follow from the config itself: name, batch, lr scaling, schedule ends."""
    problems = []
    gpus, per_gpu = _gpus_and_per_gpu(path)
    if gpus is None:
        return [f'{path}: a training config names GPUs x batch as {{N}}xb{{B}}']
    if cfg.train_dataloader.batch_size != per_gpu:
        problems.append(f'train_dataloader.batch_size = {cfg.train_dataloader.batch_size}, '
                        f'the file name says {per_gpu}')
    accu = re.search(r'-accu(\d+)', osp.basename(path))
    if accu and int(accu.group(1)) != _accum(cfg):
        problems.append(f'accumulative_counts = {_accum(cfg)}, the file name says '
                        f'{accu.group(1)}')
    scale = cfg.get('auto_scale_lr')
    if scale is None or scale.get('base_batch_size') != gpus * per_gpu:
        problems.append(
            f'auto_scale_lr.base_batch_size = {scale and scale.get("base_batch_size")}: '
            f'mmengine scales lr by (GPUs x per-GPU batch) / base_batch_size, without '
            f'accumulation, so it must be {gpus} x {per_gpu} = {gpus * per_gpu}')
    _, main = _schedulers(cfg)
    by_epoch = cfg.train_cfg.get('by_epoch', 'max_epochs' in cfg.train_cfg)
    length = cfg.train_cfg.max_epochs if by_epoch else cfg.train_cfg.max_iters
    if main is not None and main.end != length:
        problems.append(f'{main.type} ends at {main.end}, training lasts {length}')
    return problems


def _load(path: str) -> Config:
    return Config.fromfile(osp.join(CONFIG_DIR, path))


def test_every_config_has_a_row_and_every_row_a_config():
    assert CONFIGS
    assert sorted(RECIPES) == CONFIGS


@pytest.mark.parametrize('path', sorted(RECIPES))
def test_row_states_every_value_of_its_kind(path):
    row = RECIPES[path]
    missing = REQUIRED[row['kind']] - set(row)
    assert not missing, f'{path}: the row does not state {sorted(missing)}'
    assert set(row) - ROW_KEYS <= set(FACTS), set(row) - ROW_KEYS - set(FACTS)
    assert row.get('source'), f'{path}: the row names no source'


@pytest.mark.parametrize('path', CONFIGS)
def test_config_follows_its_recipe(path):
    problems = audit(_load(path), path, RECIPES[path])
    assert not problems, f'configs/{path}:\n  ' + '\n  '.join(problems)


# ---------------------------------------------------------------- the audit can fail

MUTATIONS = [
    # (config, the value to change, how, the key that must catch it)
    ('beitv2/beitv2_beit-large-p16_64xb32-amp-coslr-1600e_in1k.py', 'early layers',
     lambda c: c.model.neck.update(early_layers=9), 'early_layers'),
    ('beitv2/beitv2_beit-base-p16_8xb256-amp-coslr-300e_in1k.py', 'crop scale',
     lambda c: _find(c.train_dataloader.dataset.pipeline, 'mmbeit.TwoViewRandomResizedCrop').update(
         scale=(0.08, 1.0)), 'crop_scale'),
    ('beitv2/beitv2_beit-base-p16_8xb256-amp-coslr-300e_in1k.py', 'tokenizer range',
     lambda c: c.data_preprocessor.update(second_mean=[-31.875] * 3), 'second_mean'),
    ('beit/beit_beit-base-p16_16xb128-amp-coslr-150e_in21k.py', 'lr',
     lambda c: c.optim_wrapper.optimizer.update(lr=3e-3), 'lr'),
    ('beit/beit_beit-base-p16_16xb128-amp-coslr-150e_in21k.py', 'clip',
     lambda c: c.optim_wrapper.clip_grad.update(max_norm=1.0), 'clip'),
    ('beit/beit_beit-base-p16_16xb128-amp-coslr-150e_in21k.py', 'mask', lambda c: _find(
        c.train_dataloader.dataset.pipeline, 'mmbeit.BEiTMaskGenerator').update(min_num_patches=4),
     'mask'),
    ('beit/beit_beit-base-p16_16xb128-amp-coslr-150e_in21k.py', 'views',
     lambda c: _find(c.train_dataloader.dataset.pipeline, 'mmbeit.TwoViewRandomResizedCrop').update(
         second_size=224), 'views'),
    ('beit/beit_beit-base-p16_16xb128-amp-coslr-150e_in21k.py', 'warmup',
     lambda c: c.param_scheduler[0].update(end=5000), 'warmup'),
    ('beit/beit_beit-base-p16_16xb128-amp-coslr-150e_in21k.py', 'batch',
     lambda c: c.train_dataloader.update(batch_size=64), 'total_batch'),
    ('beit/benchmarks/beit-base-p16_8xb128-coslr-100e_in1k.py', 'layer decay',
     lambda c: c.optim_wrapper.paramwise_cfg.update(layer_decay_rate=0.75), 'layer_decay'),
    ('beit/benchmarks/beit-base-p16_8xb128-coslr-100e_in1k.py', 'drop path',
     lambda c: c.model.backbone.update(drop_path_rate=0.2), 'drop_path'),
    ('beit/benchmarks/beit-base-p16_8xb128-coslr-100e_in1k.py', 'weight decay',
     lambda c: c.optim_wrapper.optimizer.update(weight_decay=0.1), 'wd'),
    ('beit/benchmarks/beit-base-p16_8xb128-coslr-100e_in1k.py', 'epochs',
     lambda c: c.train_cfg.update(max_epochs=90), 'epochs'),
    ('beit/benchmarks/beit-base-p16_8xb128-coslr-100e_in1k.py', 'test size',
     lambda c: _find(c.test_dataloader.dataset.pipeline, 'CenterCrop').update(crop_size=256),
     'test_crop'),
    ('beit/benchmarks/beit-base-p16_8xb128-coslr-100e_in1k.py', 'crop',
     lambda c: _find(c.train_dataloader.dataset.pipeline, 'RandomResizedCrop').update(scale=192),
     'crop'),
    ('beit/benchmarks/beit-large-p16_in21k-ft-pre_8xb32-accu2-amp-coslr-30e_in1k.py',
     'accumulation', lambda c: c.optim_wrapper.update(accumulative_counts=1), 'total_batch'),
    ('upernet_beit/upernet_beit-base_8xb2-160k_ade20k-640x640.py', 'UperNet channels',
     lambda c: c.model.decode_head.update(channels=512), 'channels'),
    ('upernet_beit/upernet_beit-base_8xb2-160k_ade20k-640x640.py', 'pool scales',
     lambda c: c.model.decode_head.update(pool_scales=(1, 2, 3)), 'pool_scales'),
    ('upernet_beit/upernet_beit-base_8xb2-160k_ade20k-640x640.py', 'out_indices',
     lambda c: c.model.backbone.update(out_indices=(2, 5, 8, 11)), 'out_indices'),
    ('upernet_beit/upernet_beit-base_8xb2-160k_ade20k-640x640.py', 'aux weight',
     lambda c: c.model.auxiliary_head.loss_decode.update(loss_weight=1.0), 'aux'),
    ('upernet_beit/upernet_beit-base_8xb2-160k_ade20k-640x640.py', 'aux index',
     lambda c: c.model.auxiliary_head.update(in_index=3), 'aux'),
    ('upernet_beit/upernet_beit-base_8xb2-160k_ade20k-640x640.py', 'slide stride',
     lambda c: c.model.test_cfg.update(stride=(320, 320)), 'test'),
    ('upernet_beit/upernet_beit-base_8xb2-160k_ade20k-640x640.py', 'poly end value',
     lambda c: c.param_scheduler[1].update(eta_min=1e-6), 'poly'),
    ('upernet_beit/upernet_beit-base_8xb2-160k_ade20k-640x640.py', 'iterations',
     lambda c: c.train_cfg.update(max_iters=80000), 'updates'),
    ('upernet_beit/upernet_beit-base_8xb2-160k_ade20k-640x640_ms.py', 'tta scales',
     lambda c: _find(c.tta_pipeline, 'TestTimeAug').transforms[0].pop(), 'tta'),
    ('upernet_beit/upernet_beit-large_fp16_8xb1-amp-160k_ade20k-640x640.py', 'lr',
     lambda c: c.optim_wrapper.optimizer.update(lr=3e-5), 'lr'),
]


@pytest.mark.parametrize(
    'path,what,mutate,key', MUTATIONS, ids=[f'{osp.basename(m[0])}-{m[1]}' for m in MUTATIONS])
def test_the_audit_catches_a_changed_value(path, what, mutate, key):
    cfg = _load(path)
    assert not audit(cfg, path, RECIPES[path])
    mutate(cfg)
    problems = audit(cfg, path, RECIPES[path])
    assert any(p.startswith(key) for p in problems), (what, problems)


def test_the_audit_catches_schedule_and_lr_scaling_mistakes():
    path = 'upernet_beit/upernet_beit-large_fp16_8xb1-amp-160k_ade20k-640x640.py'
    cfg = _load(path)
    cfg.param_scheduler[1].update(end=160000)  # mmseg's port: poly reaches 0 half-way
    assert any('PolyLR ends at 160000' in p for p in audit(cfg, path, RECIPES[path]))
    cfg = _load(path)
    cfg.auto_scale_lr.update(base_batch_size=16)  # the total batch, accumulation included
    assert any('auto_scale_lr' in p for p in audit(cfg, path, RECIPES[path]))


def test_the_audit_catches_a_stale_or_unexplained_deviation():
    path = 'upernet_beit/upernet_beit-base_8xb2-160k_ade20k-640x640.py'
    cfg = _load(path)
    row = dict(RECIPES[path], deviations=dict(amp=(False, '')))
    assert any('without its reason' in p for p in audit(cfg, path, row))
    row = dict(RECIPES[path], deviations=dict(amp=(False, 'x'), lr=(3e-5, 'x')))
    assert any('equals the recipe' in p for p in audit(cfg, path, row))
    row = dict(RECIPES[path])
    row.pop('deviations')
    assert any(p.startswith('amp') for p in audit(cfg, path, row))


@pytest.mark.parametrize('path', CONFIGS)
def test_every_value_of_a_row_is_compared(path):
    """A value no config can hold, put in the table for each key in turn, is reported."""
    cfg, row = _load(path), RECIPES[path]
    sentinel = object()
    for key in sorted(set(row) - ROW_KEYS):
        deviations = {k: v for k, v in row.get('deviations', {}).items() if k != key}
        changed = dict(row, deviations=deviations)
        changed[key] = sentinel
        assert any(p.startswith(key) for p in audit(cfg, path, changed)), (path, key)
