# UperNet BEiT-base/16 on ADE20K at 640x640 (unilm's recipe; mmseg reports 53.08 mIoU,
# 53.84 with multi-scale + flip): from BEiT-base pretrained on ImageNet-22k and fine-tuned
# on it, 8 GPUs x 2 images, 160k iterations (AdamW 3e-5, layer decay 0.9, 1500 warmup,
# poly), sliding-window test (640 crops, stride 426) on the 2560x640 rescale.
# Multi-scale + flip test: upernet_beit-base_8xb2-160k_ade20k-640x640_ms.py with --tta.
_base_ = [
    '../_base_/models/upernet_beit.py',
    '../_base_/datasets/ade20k_640x640.py',
    '../_base_/schedules/schedule_160k.py',
    '../_base_/default_runtime_seg.py',
]
crop_size = (640, 640)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        img_size=640,
        # any BEiT checkpoint format mmbeit converts; the relative position tables of the
        # 224-pixel pretrain are resized to the 40x40 patch grid when they are loaded
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://huggingface.co/microsoft/beit-base-patch16-224-pt22k-ft22k/'
            'resolve/main/pytorch_model.bin',
            prefix='backbone.')),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(426, 426)))

train_dataloader = dict(batch_size=2)
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader

# tools/train.py --auto-scale-lr rescales lr by (actual total batch) / 16
auto_scale_lr = dict(enable=False, base_batch_size=16)
