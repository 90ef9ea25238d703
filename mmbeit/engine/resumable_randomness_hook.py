"""Random numbers drawn from the training position, so a resumed run repeats them."""
import random

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.runner import IterBasedTrainLoop

from mmbeit.datasets.beit_mask_generator import BEiTMaskGenerator
from mmbeit.registry import HOOKS

_EPOCH, _ITER = 0, 1


@HOOKS.register_module()
class ResumableRandomnessHook(Hook):
    """Reseed Python, NumPy and torch at every epoch and iteration from (seed, position).

    mmengine seeds the random generators once, when the Runner starts, and does
    not save their states in checkpoints; so after ``--resume`` dropout, drop
    path and masking in the model, and the augmentations of a main-process data
    pipeline (``num_workers=0``), draw other numbers than the run that went
    straight through. With this hook they draw the numbers of their position:
    the generators are reseeded before every epoch and every iteration from the
    Runner's seed (``randomness=dict(seed=...)``) and the epoch or iteration.
    Transforms with generators of their own restart them before every epoch
    too (:meth:`BEiTMaskGenerator.set_epoch`).

    Exact resume then holds for epoch-based loops (any ``num_workers``, without
    ``persistent_workers``, whose worker streams run on across epochs) and for
    iteration-based loops with ``num_workers >= 1`` (mmengine replays the data
    up to the resumed iteration); the hook warns about the other cases.
    Add ``deterministic=True`` to ``randomness`` for bitwise-equal kernels.

    ``custom_hooks = [dict(type='mmbeit.ResumableRandomnessHook')]``
    """

    priority = 'VERY_HIGH'  # reseed before any other hook draws a number

    def before_train(self, runner) -> None:
        if runner.seed is None:
            raise ValueError('ResumableRandomnessHook needs a seed: set randomness=dict(seed=0)')
        loader = runner.train_dataloader
        workers = getattr(loader, 'num_workers', 0)
        iter_based = isinstance(runner.train_loop, IterBasedTrainLoop)
        if iter_based and workers == 0:
            print_log(
                'ResumableRandomnessHook: an iteration-based loop with num_workers=0 does '
                'not repeat data augmentation exactly after a resume (the skipped batches '
                'are drawn from the main process); use num_workers >= 1',
                logger='current',
                level=30)
        elif not iter_based and workers > 0 and getattr(loader, 'persistent_workers', False):
            print_log(
                'ResumableRandomnessHook: persistent_workers=True in an epoch-based loop '
                'does not repeat data augmentation exactly after a resume (the workers\' '
                'random streams run on across epochs); set persistent_workers=False',
                logger='current',
                level=30)

    def before_train_epoch(self, runner) -> None:
        _reseed(runner.seed, _EPOCH, runner.epoch)
        # its own generator would run on across epochs in the main process
        BEiTMaskGenerator.set_epoch(runner.epoch)

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        _reseed(runner.seed, _ITER, runner.iter)


def _reseed(seed: int, kind: int, position: int) -> None:
    state = np.random.SeedSequence([seed % 2**32, kind, position]).generate_state(2)
    random.seed(int(state[0]))
    np.random.seed(int(state[1]))
    torch.manual_seed(int(state[0]) << 32 | int(state[1]))  # seeds every CUDA device too
