"""mmbeit.visualization: what a pretrained BEiT predicts for masked patches
(:mod:`.mim_visualizer`). It registers nothing."""
