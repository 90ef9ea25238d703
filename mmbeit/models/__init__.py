"""mmbeit.models: importing it registers every model component in ``mmbeit.registry.MODELS``.

The layers (:mod:`.layers`) and pure helpers (:mod:`.utils`) sit one level
below the components and register nothing.
"""
from .algorithms import BEiTPretrain
from .backbones import BEiT
from .data_preprocessors import TwoViewDataPreprocessor
from .heads import BEiTMIMHead
from .necks import BEiTV2Neck
from .target_generators import DALLEEncoder
from .target_generators.vqkd import VQKD

__all__ = [
    'BEiT', 'BEiTMIMHead', 'BEiTPretrain', 'BEiTV2Neck', 'DALLEEncoder', 'TwoViewDataPreprocessor'
]
