"""Target generators: the DALL-E tokenizer that gives pretraining its visual tokens."""
from .dalle_encoder import DALLEEncoder
from .vit_teacher import ViTTeacher
from .vqkd import VQKD

__all__ = ['DALLEEncoder']
