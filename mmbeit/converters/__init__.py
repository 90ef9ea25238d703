"""Checkpoints of every public BEiT format, loaded into mmbeit's models; and export to transformers.

One loading pipeline, one module per stage, run in this order by every door::

    read (.read) -> detect (.detect) -> convert (.convert) -> fit (.fit) -> load (.load)

Each checkpoint format is one module (:mod:`.native`, :mod:`.mmpretrain`,
:mod:`.mmseg`, :mod:`.timm`, :mod:`.unilm`, :mod:`.transformers`, :mod:`.dalle`)
holding everything mmbeit knows of it: ``NAME``, ``DESCRIPTION``, its detection
``PRIORITY``, ``matches``, ``convert`` (pure ``state_dict -> state_dict``
functions over its rule tables, through one engine, :mod:`.rules`), its reading
quirks (``read``) and its export where it has one; :mod:`.detect` builds the
format table from them and :mod:`.layout` says what they produce. The shared ->
per-layer expansion and the resizing of position tables happen in the fit stage
only. :mod:`.hooks` runs the pipeline inside ``load_state_dict``.
Importing this package imports torch and the standard library only.
"""
from .convert import convert_checkpoint, to_canonical
from .detect import FORMATS, detect_format
from .export import save_transformers, to_transformers
from .fit import FitResult, fit_state_dict
from .hooks import register_conversion_hook
from .layout import TARGETS
from .load import (CheckpointMismatchError, LoadReport, UnknownCheckpointError, convert_file,
                   fit_checkpoint, load_converted_state_dict, load_pretrained, no_init)
from .read import read_checkpoint, unwrap_checkpoint

__all__ = [
    'FORMATS', 'TARGETS', 'read_checkpoint', 'unwrap_checkpoint', 'detect_format',
    'convert_checkpoint', 'to_canonical', 'fit_state_dict', 'FitResult', 'fit_checkpoint',
    'load_converted_state_dict', 'load_pretrained', 'register_conversion_hook', 'convert_file',
    'CheckpointMismatchError', 'UnknownCheckpointError', 'LoadReport', 'no_init', 'to_transformers',
    'save_transformers'
]
