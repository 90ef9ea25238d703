# A tiny UperNet BEiT trained from scratch on mmbeit's sample segmentation data: the same
# components as the ADE20K configs (mmbeit.BEiT, Feature2Pyramid, UPerHead, FCN auxiliary
# head, layer-wise lr decay, warmup + poly), small enough to train on a laptop CPU in a
# couple of minutes, to an mIoU far above chance. One process, so BN instead of SyncBN.
#   python -c "from mmbeit.utils.sample_data import ensure_sample_data; ensure_sample_data()"
#   python tools/train.py configs/upernet_beit/upernet_beit-tiny_1xb8-500_sample-64x64.py
#   python tools/test.py configs/upernet_beit/upernet_beit-tiny_1xb8-500_sample-64x64.py \
#       work_dirs/upernet_beit-tiny_1xb8-500_sample-64x64/iter_500.pth --show-dir overlays
_base_ = [
    '../_base_/models/upernet_beit.py',
    '../_base_/datasets/ade20k_sample-64x64.py',
    '../_base_/schedules/schedule_160k.py',
    '../_base_/default_runtime_seg.py',
]
norm_cfg = dict(type='BN', requires_grad=True)
crop_size = (64, 64)
num_classes = 5
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        arch='tiny',  # 64 channels, 4 layers, 4 heads
        img_size=64,
        patch_size=8,
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.0),
    neck=dict(embed_dim=64, norm_cfg=norm_cfg),
    decode_head=dict(
        in_channels=[64, 64, 64, 64], channels=64, num_classes=num_classes, norm_cfg=norm_cfg),
    auxiliary_head=dict(in_channels=64, channels=32, num_classes=num_classes, norm_cfg=norm_cfg),
    test_cfg=dict(mode='whole'))

optim_wrapper = dict(optimizer=dict(lr=1e-3), paramwise_cfg=dict(layer_decay_rate=0.9))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=50),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=50, end=500),
]
train_cfg = dict(max_iters=500, val_interval=500)
default_hooks = dict(logger=dict(interval=50), checkpoint=dict(interval=500, max_keep_ckpts=1))
env_cfg = dict(cudnn_benchmark=False)
randomness = dict(seed=0)
# tools/train.py --auto-scale-lr rescales lr by (actual total batch) / 8
auto_scale_lr = dict(enable=False, base_batch_size=8)
