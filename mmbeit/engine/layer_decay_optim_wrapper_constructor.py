"""Layer-wise learning-rate decay for any model whose BEiT says how deep each parameter is.

mmseg's ``LayerDecayOptimizerConstructor`` finds depths by the backbone's class
name and by parameter names, and its no-weight-decay check compares
``'cls_token'`` with ``'backbone.cls_token'`` (never equal, so the token is
decayed, in unilm's copy too). mmpretrain's constructor asks the model itself
for ``get_layer_depth``, which mmseg's ``EncoderDecoder`` does not have. This
one asks the model, or else its backbone (``mmbeit.BEiT.get_layer_depth``), so
one constructor serves classifiers and segmentors, with mmpretrain's keys.
"""
from typing import Callable, Dict, List, Tuple

import torch.nn as nn
from mmengine.logging import MMLogger
from mmengine.optim import DefaultOptimWrapperConstructor

from mmbeit.registry import OPTIM_WRAPPER_CONSTRUCTORS

PARAMWISE_KEYS = ('layer_decay_rate', 'flat_decay_mult', 'custom_keys')


def layer_depth_fn(model: nn.Module) -> Callable[[str], Tuple[int, int]]:
    """``name -> (depth, num_depths)`` for every parameter name of ``model``.

    Uses ``model.get_layer_depth`` (mmpretrain's classifiers) or, for models
    without one (mmseg's segmentors), ``model.backbone.get_layer_depth`` with the
    ``'backbone.'`` prefix: parameters outside the backbone get the top depth.
    """
    if hasattr(model, 'get_layer_depth'):
        return model.get_layer_depth
    backbone = getattr(model, 'backbone', None)
    if backbone is not None and hasattr(backbone, 'get_layer_depth'):
        return lambda name: backbone.get_layer_depth(name, prefix='backbone.')
    raise TypeError(f'layer-wise lr decay needs {type(model).__name__} or its backbone to have '
                    f'get_layer_depth(param_name, prefix) (as mmbeit.BEiT has)')


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class LayerDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """Parameter groups with lr ``base_lr * layer_decay_rate ** (num_depths - 1 - depth)``.

    With ``mmbeit.BEiT`` (L layers, L + 2 depths): heads, necks and the
    backbone's final norms get ``base_lr``, layer ``i`` gets
    ``base_lr * rate ** (L - i)``, patch embedding and tokens
    ``base_lr * rate ** (L + 1)``, the rules of unilm and mmseg.

    ``paramwise_cfg`` keys (mmpretrain's names):

    - ``layer_decay_rate`` (float): decay per depth. Defaults to 1 (none).
    - ``flat_decay_mult`` (float): weight-decay multiplier of 1-D parameters
      (biases, norms, layer scales, q/v biases). Defaults to 1.
    - ``custom_keys`` (dict): ``{substring: dict(decay_mult=m)}``; the longest
      substring found in a parameter's name sets its weight-decay multiplier
      (it wins over ``flat_decay_mult``).

    Parameters with the same depth and weight decay share one group; each group
    keeps ``param_names``, ``layer_id`` and ``lr_scale`` for logging and tests.
    """

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: dict = None) -> None:
        paramwise_cfg = dict(paramwise_cfg or {})
        unknown = sorted(set(paramwise_cfg) - set(PARAMWISE_KEYS))
        if unknown:
            raise ValueError(f'LayerDecayOptimWrapperConstructor: unknown paramwise_cfg keys '
                             f'{unknown}; allowed: {list(PARAMWISE_KEYS)}')
        for key, value in paramwise_cfg.get('custom_keys', {}).items():
            extra = sorted(set(value) - {'decay_mult'})
            if extra:
                raise ValueError(f'custom_keys[{key!r}] may only set decay_mult, got {extra}')
        super().__init__(optim_wrapper_cfg, paramwise_cfg)

    def add_params(self, params: List[dict], module: nn.Module, **kwargs) -> None:
        """Append the layer-decayed parameter groups of ``module`` to ``params``."""
        depth_of = layer_depth_fn(module)
        rate = float(self.paramwise_cfg.get('layer_decay_rate', 1.0))
        flat_mult = self.paramwise_cfg.get('flat_decay_mult', 1.0)
        custom = self.paramwise_cfg.get('custom_keys', {})
        keys = sorted(custom, key=lambda k: (-len(k), k))  # longest match first
        base_wd = self.base_wd or 0.

        groups: Dict[Tuple[int, float], dict] = {}
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue
            key = next((k for k in keys if k in name), None)
            if key is not None:
                wd = base_wd * custom[key].get('decay_mult', 1.)
            elif param.ndim == 1:
                wd = base_wd * flat_mult
            else:
                wd = base_wd
            depth, num_depths = depth_of(name)
            group = groups.get((depth, wd))
            if group is None:
                scale = rate**(num_depths - 1 - depth)
                group = groups[(depth, wd)] = dict(
                    params=[],
                    param_names=[],
                    lr=self.base_lr * scale,
                    lr_scale=scale,
                    weight_decay=wd,
                    layer_id=depth)
            group['params'].append(param)
            group['param_names'].append(name)

        ordered = [groups[k] for k in sorted(groups)]
        logger = MMLogger.get_current_instance()
        for g in ordered:
            logger.debug(f'layer {g["layer_id"]}: lr={g["lr"]:.3g} (x{g["lr_scale"]:.3g}), '
                         f'weight_decay={g["weight_decay"]:.3g}, {len(g["params"])} params')
        params.extend(ordered)
