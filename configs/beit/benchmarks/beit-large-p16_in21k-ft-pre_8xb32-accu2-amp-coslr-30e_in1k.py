# Fine-tune BEiT-large/16 on ImageNet-1k from the checkpoint self-supervised on ImageNet-22k
# and then intermediate fine-tuned on ImageNet-22k (unilm beit_large_patch16_224_pt22k_ft22k,
# here its transformers copy microsoft/beit-large-patch16-224-pt22k-ft22k; the 21,841-class
# head is not loaded): 8 GPUs x 32 x 2 accumulated = 512 images per step, AdamW lr 2e-5,
# weight decay 1e-8, layer decay 0.9, 30 epochs (5 warmup), drop path 0.4, label smoothing
# 0.1, no Mixup or CutMix, mixed precision (unilm get_started_for_image_classification.md).
# unilm reports 87.4 top-1 (beit_large_patch16_224_pt22k_ft22kto1k; transformers
# microsoft/beit-large-patch16-224).
_base_ = './beit-base-p16_in21k-ft-pre_8xb64-amp-coslr-30e_in1k.py'

model = dict(
    backbone=dict(
        arch='large',
        drop_path_rate=0.4,
        layer_scale_init_value=1e-5,
        init_cfg=dict(
            checkpoint='https://huggingface.co/microsoft/beit-large-patch16-224-pt22k-ft22k/'
            'resolve/main/pytorch_model.bin')),
    head=dict(in_channels=1024))

train_dataloader = dict(batch_size=32)
val_dataloader = dict(batch_size=32)
test_dataloader = dict(batch_size=32)

optim_wrapper = dict(accumulative_counts=2, paramwise_cfg=dict(layer_decay_rate=0.9))

# tools/train.py --auto-scale-lr rescales lr by (GPUs x per-GPU batch) / base_batch_size;
# mmengine leaves the accumulation out of that ratio, so the base is 256 (8 x 32), not
# the total batch of 512: on 8 GPUs the lr stays the recipe's 2e-5
auto_scale_lr = dict(base_batch_size=256)
