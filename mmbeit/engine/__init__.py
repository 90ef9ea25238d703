"""mmbeit.engine: every module below registers its components on import."""
from mmbeit.utils.import_all import import_submodules

from .fsdp_optim_wrapper import FSDPAmpOptimWrapper, FSDPOptimWrapper
from .fsdp_optim_wrapper_constructor import FSDPOptimWrapperConstructor

__all__ = ['FSDPOptimWrapper', 'FSDPAmpOptimWrapper', 'FSDPOptimWrapperConstructor']

import_submodules(__name__)
