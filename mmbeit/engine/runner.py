"""The Runner that mmbeit's tools use: mmengine's, with checkpoints of any BEiT format."""
from mmengine.runner import Runner

from mmbeit.registry import RUNNERS


@RUNNERS.register_module()
class BEiTRunner(Runner):
    """mmengine's Runner; ``load_from`` accepts any checkpoint format mmbeit converts."""
