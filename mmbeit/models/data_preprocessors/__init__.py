"""Data preprocessors (normalise and batch both views of a pretraining sample)."""
from .two_view_data_preprocessor import TwoViewDataPreprocessor

__all__ = ['TwoViewDataPreprocessor']
