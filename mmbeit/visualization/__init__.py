"""mmbeit.visualization: every module below registers its components on import."""
from mmbeit.utils.import_all import import_submodules

import_submodules(__name__)
