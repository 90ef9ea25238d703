"""A hook for tests/test_doors.py: the loaded model's outputs on a fixed input, from a host tool.

Writes ``model(x, mode='tensor')`` to ``out_path`` once the Runner has loaded its weights
(``before_train`` / ``before_test``); in training it then stops the loop, so
``tools/train.py`` with ``load_from`` runs no iteration.
"""
import torch
from mmengine.hooks import Hook
from mmengine.model import BaseTTAModel, is_model_wrapper
from mmengine.registry import HOOKS


@HOOKS.register_module()
class DoorDumpHook(Hook):
    priority = 'LOWEST'

    def __init__(self, input_path: str, out_path: str) -> None:
        self.input_path, self.out_path = input_path, out_path

    def _dump(self, runner) -> None:
        model = runner.model
        while is_model_wrapper(model) or isinstance(model, BaseTTAModel):
            model = model.module
        was_training = model.training
        model.eval()
        with torch.no_grad():
            out = model(torch.load(self.input_path, weights_only=True), mode='tensor')
        torch.save(out, self.out_path)
        model.train(was_training)

    def before_train(self, runner) -> None:
        self._dump(runner)
        runner.train_loop.stop_training = True

    def before_test(self, runner) -> None:
        self._dump(runner)
