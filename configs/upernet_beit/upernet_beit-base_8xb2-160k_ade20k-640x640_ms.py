# Multi-scale + flip test of UperNet BEiT-base at 640 (mmseg reports 53.84 mIoU):
#   python tools/test.py configs/upernet_beit/upernet_beit-base_8xb2-160k_ade20k-640x640_ms.py \
#       CHECKPOINT --tta
# Each image is rescaled into the 2560x640 box times 0.5, 0.75, 1.0, 1.25, 1.5 and 1.75,
# each scale is run as is and flipped (12 views, each by sliding window), and the softmax
# scores are averaged at the original size (mmseg's SegTTAModel).
_base_ = './upernet_beit-base_8xb2-160k_ade20k-640x640.py'

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
