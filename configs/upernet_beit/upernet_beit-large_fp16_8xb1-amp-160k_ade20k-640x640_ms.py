# Multi-scale + flip test of UperNet BEiT-large at 640 (mmseg reports 56.84 mIoU):
#   python tools/test.py \
#       configs/upernet_beit/upernet_beit-large_fp16_8xb1-amp-160k_ade20k-640x640_ms.py \
#       CHECKPOINT --tta
# Scales 0.5 to 1.75 of the 2560x640 rescale, each as is and flipped (see the base _ms config).
_base_ = [
    './upernet_beit-large_fp16_8xb1-amp-160k_ade20k-640x640.py',
]

img_ratios = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='TestTimeAug',
        transforms=[
            [
                dict(type='Resize', scale=(int(2560 * r), int(640 * r)), keep_ratio=True)
                for r in img_ratios
            ],
            [
                dict(type='RandomFlip', prob=0., direction='horizontal'),
                dict(type='RandomFlip', prob=1., direction='horizontal')
            ],
            [dict(type='LoadAnnotations', reduce_zero_label=True)],
            [dict(type='PackSegInputs')],
        ]),
]
