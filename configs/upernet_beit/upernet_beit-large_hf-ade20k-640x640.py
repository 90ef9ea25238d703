# Inference with transformers' microsoft/beit-large-finetuned-ade-640-640 (unilm's UperNet
# BEiT-large fine-tuned on ADE20K at 640, converted by Hugging Face):
#   CKPT=https://huggingface.co/microsoft/beit-large-finetuned-ade-640-640/resolve/main/
#   python tools/test.py configs/upernet_beit/upernet_beit-large_hf-ade20k-640x640.py \
#       ${CKPT}pytorch_model.bin
# or mmbeit.apis.seg_inference.inference_segmentor(this config, image, checkpoint=that URL).
# The checkpoint is converted from transformers' layout on load.
#
# Evaluated as unilm trained it: ImageNet mean / std, the 2560x640 rescale, sliding window
# (640 crops, stride 426), features of layers 7, 11, 15, 23. (transformers' model card
# config says out_indices [7, 11, 15, 23] but its forward reads hidden_states[i - 1], the
# output of layer i - 2, and its image processor resizes to a 640x640 square with mean and
# std 0.5; to reproduce transformers' logits instead, use out_indices=(5, 9, 13, 21).)
_base_ = './upernet_beit-large_fp16_8xb1-amp-160k_ade20k-640x640.py'

model = dict(
    backbone=dict(drop_path_rate=0.0, init_cfg=None),
    test_cfg=dict(mode='slide', crop_size=(640, 640), stride=(426, 426)))
