"""The Runner that mmbeit's tools use: mmengine's, with checkpoints of any BEiT format."""
from typing import Callable, Union

from mmengine.model import is_model_wrapper
from mmengine.runner import Runner
from mmengine.runner.checkpoint import _load_checkpoint_to_model

from mmbeit.registry import RUNNERS


@RUNNERS.register_module()
class BEiTRunner(Runner):
    """mmengine's Runner; ``load_from`` accepts any checkpoint format mmbeit converts.

    A checkpoint whose keys are the model's own (what this Runner saves, so
    resume among them) loads as in mmengine. Any other one (unilm, timm,
    transformers file or folder, mmpretrain, mmseg, DALL-E, a bare mmbeit
    backbone) is detected, converted for the model and loaded strictly by
    :func:`mmbeit.converters.load_pretrained`'s rules: what it legitimately
    lacks or has extra is named in the log, anything else is an error that
    names the keys and the format.
    """

    def load_checkpoint(self, filename: str, map_location: Union[str, Callable] = 'cpu',
                        strict: bool = False, revise_keys: list = [(r'^module.', '')]):
        from mmbeit.converters import read_checkpoint
        from mmbeit.converters.loading import load_converted_state_dict
        from mmbeit.converters.rules import unwrap_checkpoint

        checkpoint = read_checkpoint(filename, map_location)
        self.call_hook('after_load_checkpoint', checkpoint=checkpoint)
        from mmengine.model import BaseTTAModel
        model = self.model
        while is_model_wrapper(model) or isinstance(model, BaseTTAModel):  # DDP, TTA: the inner model
            model = model.module

        state_dict, _ = unwrap_checkpoint(checkpoint)
        if _is_native(state_dict, model.state_dict().keys()):
            checkpoint = _load_checkpoint_to_model(model, checkpoint, strict, revise_keys=revise_keys)
        else:
            load_converted_state_dict(model, checkpoint, source=str(filename))
        self._has_loaded = True
        self.logger.info(f'Load checkpoint from {filename}')
        return checkpoint


def _is_native(state_dict, model_keys) -> bool:
    """Whether mmengine's own loading fits: the checkpoint names the model's weights as the model does.

    A foreign checkpoint can share many keys with the model (mmseg's heads and neck
    have the same names in mmbeit) while its backbone is named differently, so the
    format decides, not the overlap.
    """
    from mmbeit.converters.formats import detect_state_dict_format
    model_keys = set(model_keys)
    if model_keys <= set(state_dict):
        return True
    try:
        fmt = detect_state_dict_format(state_dict)
    except ValueError:  # not a BEiT checkpoint at all: mmengine's business
        return True
    return fmt == 'mmbeit' and len(model_keys.intersection(state_dict)) >= 0.5 * len(model_keys)
