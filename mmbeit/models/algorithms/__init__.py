"""Whole models that train end to end (BEiT's masked-image-modeling pretraining)."""
from .beit_pretrain import BEiTPretrain

__all__ = ['BEiTPretrain']
