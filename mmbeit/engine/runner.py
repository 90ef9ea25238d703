"""The Runner that mmbeit's configs name (``runner_type='mmbeit.BEiTRunner'``).

mmengine's Runner, whose ``load_from`` and ``resume`` read checkpoints through
mmbeit's loading pipeline (:mod:`mmbeit.converters`): any BEiT format, file, URL
or transformers folder, converted and fitted completely, or an error naming the
format and the keys. mmbeit's own checkpoints (what this Runner saves) load
exactly, so resume is exact.
"""
from typing import Callable, Union

from mmengine.model import BaseTTAModel, is_model_wrapper
from mmengine.runner import Runner

from mmbeit.registry import RUNNERS


@RUNNERS.register_module()
class BEiTRunner(Runner):
    """mmengine's Runner; ``load_from`` / ``resume`` accept any checkpoint format mmbeit converts.

    The load is complete or refused whatever ``strict`` mmengine passes (it passes
    False): what a checkpoint legitimately lacks (a head of another task) keeps
    its initialization and is named in the log; anything else raises
    :class:`mmbeit.converters.CheckpointMismatchError`.
    """

    def load_checkpoint(self,
                        filename: str,
                        map_location: Union[str, Callable] = 'cpu',
                        strict: bool = False,
                        revise_keys: list = [(r'^module.', '')]) -> dict:
        from mmbeit.converters import load_converted_state_dict, read_checkpoint, unwrap_checkpoint
        from mmbeit.converters.load import state_dict_fits

        checkpoint = read_checkpoint(filename, map_location)
        self.call_hook('after_load_checkpoint', checkpoint=checkpoint)
        model = self.model
        while is_model_wrapper(model) or isinstance(model, BaseTTAModel):  # DDP, TTA: inner
            model = model.module
        # `module.` prefixes (revise_keys' default) are stripped by the read stage
        state_dict, _ = unwrap_checkpoint(checkpoint)
        if state_dict_fits(state_dict, model.state_dict()) or getattr(model, 'converts_on_load',
                                                                      False):
            # this very model's own checkpoint (resume): nothing to convert; or a model whose
            # load_state_dict converts the other layouts it takes itself, completely or
            # raising (mmbeit.VQKDTrainer: unilm's VQ-KD files)
            model.load_state_dict(state_dict, strict=True)
        else:
            load_converted_state_dict(model, checkpoint, source=str(filename), logger=self.logger)
        self._has_loaded = True
        self.logger.info(f'Load checkpoint from {filename}')
        return checkpoint
