"""Which BEiT modules become their own FSDP unit (for mmengine's ``FSDPStrategy``).

One unit per transformer layer (what the layer needs is gathered just before
it runs and freed right after), one for the frozen tokenizer (DALL-E or
VQ-KD, so no unit mixes frozen and trainable weights), the rest (patch embedding, tokens,
shared relative position bias, heads) in the root unit. Configs name it by
its full path, which mmengine's ``FUNCTIONS`` registry imports::

    strategy = dict(type='FSDPStrategy', model_wrapper=dict(
        auto_wrap_policy=dict(type='mmbeit.engine.fsdp_wrap_policy.beit_fsdp_wrap_policy'),
        use_orig_params=True))
"""
from torch import nn

__all__ = ['beit_fsdp_wrap_policy']


def _unit_classes() -> set:
    from mmbeit.layers.transformer_layer import BEiTTransformerLayer
    from mmbeit.models.target_generators.dalle_encoder import DALLEEncoder
    from mmbeit.models.target_generators.vqkd import VQKD
    return {BEiTTransformerLayer, DALLEEncoder, VQKD}


def beit_fsdp_wrap_policy(module: nn.Module, recurse: bool, nonwrapped_numel: int) -> bool:
    """FSDP's ``auto_wrap_policy`` protocol: descend everywhere (``recurse``),
    wrap BEiT layers and the frozen tokenizer.

    A VQ-KD tokenizer in training (``frozen=False``, inside ``mmbeit.VQKDTrainer``) is not a
    unit of its own: its layers are; its EMA codebook writes buffers in the forward, so
    train it with DDP (the VQ-KD configs do).
    """
    from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy

    from mmbeit.models.target_generators.vqkd import VQKD
    if not recurse and isinstance(module, VQKD) and not module.frozen:
        return False
    return transformer_auto_wrap_policy(
        module, recurse, nonwrapped_numel, transformer_layer_cls=_unit_classes())
