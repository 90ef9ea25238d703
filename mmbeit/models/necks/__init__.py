"""Necks: BEiT v2's patch aggregation between the backbone and the MIM head."""
from .beitv2_neck import BEiTV2Neck

__all__ = ['BEiTV2Neck']
