# Inference config: BEiT-base/16 self-supervised on ImageNet-22k, fine-tuned on ImageNet-22k and
# then on ImageNet-1k at 224 (unilm beit_base_patch16_224_pt22k_ft22kto1k, converted by
# OpenMMLab; model-index name beit-base-p16_beit-in21k-pre_3rdparty_in1k, 85.28 / 97.59).
# Only for testing and inference: the training recipe of these weights is in
# beit-base-p16_in21k-ft-pre_8xb64-coslr-30e_in1k.py.
_base_ = [
    '../../_base_/models/beit-base-p16.py',
    '../../_base_/datasets/imagenet_bs64_beit_224.py',
    '../../_base_/schedules/imagenet_bs1024_adamw_beit.py',
    '../../_base_/default_runtime.py',
]

model = dict(backbone=dict(drop_path_rate=0.0))
