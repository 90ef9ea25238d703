"""mmbeit.datasets: data transforms and BEiT's mask generator.

Importing it registers them in ``mmbeit.registry.TRANSFORMS``. The data sets
themselves are mmpretrain's and mmseg's; the generator of the bundled sample
data is :mod:`mmbeit.utils.sample_data` (a tool, not a component).
"""
from .beit_mask_generator import BEiTMaskGenerator
from .load_color_image_from_file import LoadColorImageFromFile
from .two_view_random_resized_crop import TwoViewRandomResizedCrop

__all__ = ['BEiTMaskGenerator', 'LoadColorImageFromFile', 'TwoViewRandomResizedCrop']
