"""timm's ``beit_*`` and ``beitv2_*`` models (``timm/models/beit.py``).

timm keeps unilm's module names (``blocks.{i}.attn.qkv.weight``, ``gamma_1``,
``rel_pos_bias.relative_position_bias_table``, ``fc_norm``, ``head``) but its
``relative_position_index`` buffers are not saved and its files are not
wrapped; the conversion is unilm's (:mod:`.unilm`).
"""
from typing import Mapping

import torch

from . import unilm
from .rules import StateDict

NAME = 'timm'
DESCRIPTION = "timm's beit_* / beitv2_* (blocks.0.attn.qkv.weight, gamma_1, head)"
# detection order (lowest first): after unilm: what has unilm's names but is not a unilm file
PRIORITY = 60
RULES = unilm.RULES


def matches(state_dict: Mapping[str, torch.Tensor], wrapper=None) -> bool:
    return unilm.is_unilm_layout(state_dict) and not unilm.matches(state_dict, wrapper)


def convert(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """timm state dict -> mmbeit's canonical layout (see :mod:`.layout`)."""
    return unilm.convert(state_dict, fmt=NAME)
