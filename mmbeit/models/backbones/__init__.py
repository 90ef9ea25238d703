"""Backbones: the one BEiT, used by classification, pretraining and segmentation."""
from .beit import BEiT

__all__ = ['BEiT']
