# Inference config: unilm's BEiT-base/16 masked image modeling on ImageNet-22k
# (beit_base_patch16_224_pt22k; transformers microsoft/beit-base-patch16-224-pt22k, whose
# BeitForMaskedImageModeling weights are the backbone and the MIM head; model-index name
# beit_beit-base-p16_3rdparty_in21k). Its images are normalised with mean = std = 0.5.
# The DALL-E tokenizer is not part of those weights: it is OpenAI's encoder, loaded by
# init_weights(), and refuses to run until then.
#   model = mmbeit.apis.get_model('microsoft/beit-base-patch16-224-pt22k', pretrained=True)
#   logits = model.mim_logits(img, mask)  # [B, 196, 8192], as transformers' .logits
_base_ = './beit_beit-base-p16_8xb256-amp-coslr-300e_in1k.py'

data_preprocessor = dict(mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5])
model = dict(backbone=dict(drop_path_rate=0.0))
