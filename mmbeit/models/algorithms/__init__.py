"""Whole models: BEiT's masked-image-modeling pretraining, and the classifier and segmentor
roots of mmbeit's configs (mmpretrain's and mmseg's, with the loading pre-hook)."""
from .beit_pretrain import BEiTPretrain
from .roots import ROOTS, root_class
from .vqkd_trainer import VQKDTrainer

__all__ = ['BEiTPretrain', 'ROOTS', 'root_class']
