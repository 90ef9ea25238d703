"""Checkpoint converters: every public BEiT format to mmbeit's layout, and mmbeit to transformers.

Pure ``state_dict -> state_dict`` functions driven by regex rule tables
(:mod:`.rules`), one module per source format; :mod:`.layout` says what they
produce. Importing this package imports torch and the standard library only.
"""
from .formats import FORMATS, convert_checkpoint, detect_format
from .layout import TARGETS
from .loading import (CheckpointMismatchError, LoadReport, convert_file, load_pretrained,
                      read_checkpoint)
from .transformers import save_transformers, to_transformers

__all__ = ['FORMATS', 'TARGETS', 'detect_format', 'convert_checkpoint', 'load_pretrained',
           'read_checkpoint', 'convert_file', 'CheckpointMismatchError', 'LoadReport', 'to_transformers',
           'save_transformers']
