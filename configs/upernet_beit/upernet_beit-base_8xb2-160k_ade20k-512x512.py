# UperNet BEiT-base/16 on ADE20K at 512x512 (unilm's 512 recipe): as the 640 config with
# 512 crops of the 2048x512 rescale, and a sliding-window test with 512 crops, stride 341.
_base_ = [
    '../_base_/models/upernet_beit.py',
    '../_base_/datasets/ade20k.py',
    '../_base_/schedules/schedule_160k.py',
    '../_base_/default_runtime_seg.py',
]
crop_size = (512, 512)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        img_size=512,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://huggingface.co/microsoft/beit-base-patch16-224-pt22k-ft22k/'
            'resolve/main/pytorch_model.bin',
            prefix='backbone.')),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(341, 341)))

train_dataloader = dict(batch_size=2)
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader

auto_scale_lr = dict(enable=False, base_batch_size=16)
