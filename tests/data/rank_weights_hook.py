"""A hook for tests/test_distributed.py: every rank writes what it trained on and its weights."""
import os.path as osp

import torch
from mmengine.dist import get_dist_info
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS


@HOOKS.register_module()
class RankWeightsDumpHook(Hook):
    """Writes ``<work_dir>/rank<r>.pth``: the rank, the world size, the name of
    the model wrapper, the image paths this rank trained on, and its weights
    before and after training."""

    priority = 'LOWEST'

    def before_train(self, runner) -> None:
        self.seen = []
        self.initial = self._state(runner)

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self.seen += [s.img_path for s in data_batch['data_samples']]

    def after_train(self, runner) -> None:
        rank, world_size = get_dist_info()
        torch.save(
            dict(
                rank=rank,
                world_size=world_size,
                wrapper=type(runner.model).__name__,
                seen=self.seen,
                initial=self.initial,
                final=self._state(runner)), osp.join(runner.work_dir, f'rank{rank}.pth'))

    @staticmethod
    def _state(runner) -> dict:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        return {k: v.detach().clone() for k, v in model.state_dict().items()}
