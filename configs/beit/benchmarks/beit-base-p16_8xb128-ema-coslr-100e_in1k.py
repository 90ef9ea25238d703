# beit-base-p16_8xb128-coslr-100e_in1k.py with an exponential moving average of the weights
# (unilm --model_ema, decay 0.9999): mmengine's EMAHook updates it every iteration,
# validates and saves with the averaged weights (the raw weights stay in the checkpoint too).
_base_ = './beit-base-p16_8xb128-coslr-100e_in1k.py'

custom_hooks = [
    dict(type='mmbeit.NonFiniteCheckHook'),
    dict(type='mmbeit.ResumableRandomnessHook'),
    # ema = (1 - momentum) * ema + momentum * weights, i.e. decay 1 - momentum
    dict(type='EMAHook', momentum=1e-4, priority='ABOVE_NORMAL'),
]
