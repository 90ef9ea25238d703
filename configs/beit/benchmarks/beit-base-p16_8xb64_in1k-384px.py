# Inference config: BEiT-base/16 self-supervised on ImageNet-22k, fine-tuned on ImageNet-22k and
# then on ImageNet-1k at 384 (unilm beit_base_patch16_384_pt22k_ft22kto1k; transformers
# microsoft/beit-base-patch16-384; model-index name
# beit-base-p16_beit-in21k-pre_3rdparty_in1k-384px, 86.8 top-1 reported by unilm).
# Evaluation resizes the short side to 384 and crops 384; mean = std = 0.5.
_base_ = [
    '../../_base_/models/beit-base-p16.py',
    '../../_base_/datasets/imagenet_bs32_beit_384.py',
    '../../_base_/schedules/imagenet_bs1024_adamw_beit.py',
    '../../_base_/default_runtime.py',
]

model = dict(backbone=dict(img_size=384, drop_path_rate=0.0))
train_dataloader = dict(batch_size=64)
val_dataloader = dict(batch_size=64)
test_dataloader = dict(batch_size=64)
