# Inference config: BEiT-base/16 self-supervised and then fine-tuned on ImageNet-22k (21,841
# classes) at 224 (unilm beit_base_patch16_224_pt22k_ft22k; transformers
# microsoft/beit-base-patch16-224-pt22k-ft22k; model-index name
# beit-base-p16_beit-in21k-pre_3rdparty_in21k). mean = std = 0.5.
# Class names: mmbeit.apis names the 21,841 classes with the ImageNet-22k WordNet lemmas in
# label order (from a transformers config.json id2label when the weights come with one,
# otherwise from the list that timm ships; see mmbeit/apis/inference.py).
_base_ = [
    '../../_base_/models/beit-base-p16.py',
    '../../_base_/datasets/imagenet21k_bs256_beit_224.py',
    '../../_base_/schedules/imagenet_bs1024_adamw_beit.py',
    '../../_base_/default_runtime.py',
]

model = dict(backbone=dict(drop_path_rate=0.0), head=dict(num_classes=21841))
train_dataloader = dict(batch_size=64)
val_cfg = None
