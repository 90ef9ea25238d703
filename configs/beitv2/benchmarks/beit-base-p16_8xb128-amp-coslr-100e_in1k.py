# Fine-tune BEiT-base/16 on ImageNet-1k from the BEiT v2 1600-epoch pretrain (unilm
# beitv2_base_patch16_224_pt1k.pth), unilm's recipe (beit2/get_started_for_image_
# classification.md, run_class_finetuning.py with the values it gives "for 1600 epochs
# pretrained models"): as the 300-epoch config (8 x 128, lr 5e-4, 100 epochs, 20 warmup,
# Mixup 0.8, CutMix 1.0, ImageNet mean / std) with layer decay 0.6, drop path 0.2 and fp16
# (--enable_deepspeed). unilm reports 85.5 top-1 (its beitv2_base_patch16_224_pt1k_ft1k.pth).
_base_ = './beit-base-p16_8xb128-coslr-100e_in1k.py'

model = dict(
    backbone=dict(
        drop_path_rate=0.2,
        init_cfg=dict(checkpoint='https://github.com/addf400/files/releases/download/BEiT-v2/'
                      'beitv2_base_patch16_224_pt1k.pth')))

optim_wrapper = dict(
    type='AmpOptimWrapper', loss_scale='dynamic', paramwise_cfg=dict(layer_decay_rate=0.6))
