"""mmbeit.visualization: what a pretrained BEiT predicts for masked patches
(:mod:`.mim_visualizer`) and where it attends (:mod:`.attention_maps`: per-head maps,
attention rollout), on the pixel helpers of :mod:`.canvas`. It registers nothing."""
