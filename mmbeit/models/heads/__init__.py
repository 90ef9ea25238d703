"""Heads (the masked-image-modeling head; classification and segmentation heads are
mmpretrain's and mmseg's)."""
from .beit_mim_head import BEiTMIMHead

__all__ = ['BEiTMIMHead']
