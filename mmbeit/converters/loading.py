"""Old name of the load stage (:mod:`.load`, with :mod:`.read`), kept for imports."""
from .load import (CheckpointMismatchError, LoadReport, convert_file, load_converted_state_dict,
                   load_pretrained)
from .read import read_checkpoint

__all__ = [
    'CheckpointMismatchError', 'LoadReport', 'read_checkpoint', 'load_pretrained',
    'load_converted_state_dict', 'convert_file'
]
