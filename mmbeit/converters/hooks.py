"""The pipeline where weights meet the model: a state-dict pre-hook.

``register_conversion_hook(module, target)`` makes every ``load_state_dict`` of
``module`` (torch's, mmengine's ``load_checkpoint`` / Runner / ``init_model`` /
``get_model``, which all end in ``_load_from_state_dict``) run the loading
pipeline on the keys under the module's prefix: a checkpoint in any format is
converted and fitted to the module completely, or the load raises
:class:`~.load.CheckpointMismatchError` naming the format and the keys, whatever
``strict`` the caller passed. A state dict that already has exactly the module's
keys and shapes (mmbeit's own checkpoints, resume) passes untouched.

torch and mmengine hand each child module only the keys under its prefix, so a
hook on the backbone converts foreign layouts found under ``backbone.``
(mmpretrain's, mmseg's) but never sees top-level foreign keys (timm's
``blocks.*``, transformers' ``beit.*``): those need the hook on the root model
(``mmbeit.BEiTClassifier``, ``mmbeit.BEiTSegmentor``, ``mmbeit.BEiTPretrain``).
"""
import functools
from collections import OrderedDict
from typing import List, Optional

import torch.nn as nn
from torch.utils.hooks import RemovableHandle

from .load import (fit_checkpoint, is_fitted_load, log_fit, mismatch_error, source_name,
                   state_dict_fits)

__all__ = ['register_conversion_hook', 'convert_on_load']


def register_conversion_hook(module: nn.Module, target: Optional[str] = None) -> RemovableHandle:
    """Run the loading pipeline on every ``load_state_dict`` of ``module``.

    Args:
        module: the model (or backbone, or tokenizer) to load into.
        target: what it is (:data:`~.layout.TARGETS`); inferred from its keys when None.

    Returns:
        torch's handle; ``handle.remove()`` takes the hook off again.
    """
    return module.register_load_state_dict_pre_hook(
        functools.partial(convert_on_load, target=target))


def convert_on_load(module: nn.Module,
                    state_dict: dict,
                    prefix: str,
                    local_metadata: dict,
                    strict: bool,
                    missing_keys: List[str],
                    unexpected_keys: List[str],
                    error_msgs: List[str],
                    target: Optional[str] = None) -> None:
    """torch's load-state-dict pre-hook: replace ``module``'s keys by the fitted ones, in place.

    ``strict`` is not consulted: a partial load is never silent (mmengine's loaders pass
    ``strict=False`` and would only print a warning).
    """
    if is_fitted_load():  # the pipeline itself is loading what it fitted
        return
    local = OrderedDict((k[len(prefix):], v) for k, v in state_dict.items() if k.startswith(prefix))
    if not local:  # nothing for this module: the caller's strictness decides
        return
    model_state = module.state_dict()
    if state_dict_fits(local, model_state):
        return
    where = source_name(local)
    if prefix:
        where = f'the keys under {prefix!r} of {where}'
    fit, fmt, target = fit_checkpoint(
        module, local, target=target, model_state=model_state, source=where)
    name = type(module).__name__
    if not fit.complete:
        raise mismatch_error(fit, where, fmt, name, target)
    for k in [k for k in state_dict if k.startswith(prefix)]:
        del state_dict[k]
    state_dict.update((prefix + k, v) for k, v in fit.state_dict.items())
    log_fit(fit, where, name, fmt, target)
