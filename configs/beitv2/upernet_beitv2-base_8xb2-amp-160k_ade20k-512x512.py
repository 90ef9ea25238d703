# UperNet BEiT-base/16 on ADE20K at 512x512 from the BEiT v2 1600-epoch pretrain (unilm
# beitv2_base_patch16_224_pt1k.pth): unilm's beit2/semantic_segmentation/configs/beit/upernet/
# upernet_beit_base_12_512_slide_160k_ade20k.py. 8 GPUs x 2 = 16 images per step, 160k
# iterations, AdamW lr 5e-5, weight decay 0.05, layer decay 0.75, 1500 warmup iterations from
# 1e-6 then poly to 0, drop path 0.15, layer scale 0.1, features of layers 3, 5, 7, 11, fp16
# (apex); 512 crops of the 2048x512 rescale, sliding-window test (512, stride 341), ImageNet
# mean / std. unilm reports 53.1 mIoU (its beitv2_base_patch16_224_pt1k_ftade20k.pth).
# The pretraining file's shared relative position table is expanded into every layer's table
# and resized to the 32x32 window; its neck, lm head and tokenizer are left out (named).
_base_ = '../upernet_beit/upernet_beit-base_8xb2-160k_ade20k-512x512.py'

model = dict(
    backbone=dict(
        drop_path_rate=0.15,
        layer_scale_init_value=0.1,
        init_cfg=dict(checkpoint='https://github.com/addf400/files/releases/download/BEiT-v2/'
                      'beitv2_base_patch16_224_pt1k.pth')))

optim_wrapper = dict(
    type='AmpOptimWrapper', optimizer=dict(lr=5e-5), paramwise_cfg=dict(layer_decay_rate=0.75))
