# BEiT-large/16 masked image modeling on ImageNet-22k with fully sharded data parallel (FSDP):
# the recipe of beit_beit-large-p16_16xb128-amp-coslr-150e_in21k.py, but weights, gradients and
# AdamW states are sharded across the GPUs instead of replicated, for GPUs too small for
# DDP's full copy. Trained by mmengine's FlexibleRunner and FSDPStrategy:
#   bash tools/dist_train.sh configs/beit/beit_beit-large-p16_16xb128-amp-fsdp-coslr-150e_in21k.py 8
# Each transformer layer is one FSDP unit, the frozen DALL-E tokenizer another
# (mmbeit/engine/fsdp_wrap_policy.py). use_orig_params keeps the parameter names, and
# mmbeit.FSDPOptimWrapperConstructor reads their shapes unsharded, so the weight-decay rules of
# paramwise_cfg apply as without FSDP (mmengine's constructor would see every shard as 1-D
# and turn weight decay off everywhere through flat_decay_mult=0). Checkpoints are written
# whole by rank 0 (state_dict_cfg='full'): they load anywhere, with or without FSDP.
# Mixed precision stays torch autocast (as the AmpOptimWrapper of the base, with FSDP's sharded
# grad scaler), not FSDP's own MixedPrecision, which would also cast the tokenizer's weights.
# Gradient clipping (3.0) is by the norm over all shards, as under DDP: mmbeit.FSDPAmpOptimWrapper
# calls FullyShardedDataParallel.clip_grad_norm_ (mmengine's AmpOptimWrapper would clip each
# rank's shard by that shard's own norm, a weaker clip that differs from rank to rank).
# Not run by us (no multi-GPU machine): tests/test_configs.py builds it, tests/test_distributed.py
# checks the wrap policy, one FSDP step, and that an FSDP step with clipping equals the DDP step.
_base_ = './beit_beit-large-p16_16xb128-amp-coslr-150e_in21k.py'

runner_type = 'FlexibleRunner'
strategy = dict(
    type='FSDPStrategy',
    model_wrapper=dict(
        auto_wrap_policy=dict(type='mmbeit.engine.fsdp_wrap_policy.beit_fsdp_wrap_policy'),
        use_orig_params=True),
    state_dict_cfg='full')

optim_wrapper = dict(
    type='mmbeit.FSDPAmpOptimWrapper',
    use_fsdp=True,
    constructor='mmbeit.FSDPOptimWrapperConstructor')
