# BEiT fine-tuning schedule (unilm run_class_finetuning.py, base from a BEiT pretrain):
# AdamW lr 4e-3 for a total batch of 1024, weight decay 0.05, layer-wise lr decay 0.65,
# 20 warmup epochs then cosine to 1e-6, 100 epochs.
optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=4e-3, weight_decay=0.05, eps=1e-8, betas=(0.9, 0.999)),
    # lr of a parameter = lr * layer_decay_rate ** (num_layers + 1 - depth), with depth from
    # mmbeit.BEiT.get_layer_depth: embeddings 0, layer i i + 1, the rest (norms, head) on top.
    constructor='LearningRateDecayOptimWrapperConstructor',
    paramwise_cfg=dict(
        layer_decay_rate=0.65,
        # no weight decay on 1-D parameters (biases, norms, q/v biases, layer scales) nor on
        # the tokens and the absolute position embedding, as unilm
        flat_decay_mult=0.0,
        custom_keys={
            '.cls_token': dict(decay_mult=0.0),
            '.mask_token': dict(decay_mult=0.0),
            '.pos_embed': dict(decay_mult=0.0),
        }),
)

param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-4,
        by_epoch=True,
        begin=0,
        end=20,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        eta_min=1e-6,
        by_epoch=True,
        begin=20,
        end=100,
        convert_to_iter_based=True),
]

train_cfg = dict(by_epoch=True, max_epochs=100, val_interval=1)
val_cfg = dict()
test_cfg = dict()

# tools/train.py --auto-scale-lr rescales lr by (actual total batch) / 1024
auto_scale_lr = dict(base_batch_size=1024)
