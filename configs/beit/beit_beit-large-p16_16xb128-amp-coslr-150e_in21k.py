# BEiT-large/16 masked image modeling on ImageNet-22k, the recipe behind the released
# beit_large_patch16_224_pt22k: as BEiT-base on ImageNet-22k with the large arch (24 layers,
# 1024 wide, 16 heads) and layer scale 1e-5 (unilm: "0.1 for base, 1e-5 for large").
_base_ = './beit_beit-base-p16_16xb128-amp-coslr-150e_in21k.py'

model = dict(backbone=dict(arch='large', layer_scale_init_value=1e-5))
