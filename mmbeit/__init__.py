"""mmbeit: BEiT for the OpenMMLab ecosystem.

Importing the package applies the compatibility fixes for today's PyTorch
(see :mod:`mmbeit.compat`); everything else is imported lazily, by the
registries' ``locations`` or explicitly.
"""
from .compat import apply_compat
from .version import __version__

apply_compat()

__all__ = ['__version__', 'apply_compat']
