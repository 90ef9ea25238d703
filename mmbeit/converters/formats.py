"""Old name of the detect and convert stages (:mod:`.detect`, :mod:`.convert`), kept for imports."""
from .convert import canonical_state_dict, convert_checkpoint, to_canonical
from .detect import (FORMAT_DESCRIPTIONS, FORMATS, check_format, detect_format,
                     detect_state_dict_format, unknown_format_error)

__all__ = [
    'FORMATS', 'FORMAT_DESCRIPTIONS', 'detect_format', 'detect_state_dict_format', 'check_format',
    'unknown_format_error', 'canonical_state_dict', 'to_canonical', 'convert_checkpoint'
]
