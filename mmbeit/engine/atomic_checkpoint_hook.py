"""mmengine's CheckpointHook, with no moment at which a kill leaves no usable checkpoint."""
import os
import os.path as osp
import tempfile

from mmengine.dist import is_main_process
from mmengine.fileio import LocalBackend
from mmengine.hooks import CheckpointHook

from mmbeit.registry import HOOKS


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """``CheckpointHook`` that writes atomically and deletes old checkpoints only afterwards.

    mmengine's hook (0.10) first deletes the checkpoints beyond
    ``max_keep_ckpts``, then writes the new file in place, then the
    ``last_checkpoint`` pointer. A SIGKILL during the write (or an error raised
    while saving, e.g. :class:`~mmbeit.engine.non_finite_check_hook.NonFiniteCheckHook`
    refusing non-finite weights) leaves a truncated file and, with
    ``max_keep_ckpts=1``, no checkpoint to resume from. Here, on a local file
    system, the checkpoint is written to a temporary name and renamed into place,
    ``last_checkpoint`` is replaced atomically, and only then are old checkpoints
    deleted. Other file backends behave as in mmengine.

    Takes the same arguments as mmengine's ``CheckpointHook``:
    ``default_hooks = dict(checkpoint=dict(type='mmbeit.AtomicCheckpointHook', interval=1))``.
    """

    def _save_checkpoint_with_step(self, runner, step: int, meta: dict) -> None:
        if not isinstance(self.file_backend, LocalBackend):
            return super()._save_checkpoint_with_step(runner, step, meta)

        to_remove = []
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                to_remove.append(self.keep_ckpt_ids.popleft())
            self.keep_ckpt_ids.append(step)
            # saved inside the checkpoint: it lists the new file, not the ones about to go
            runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))

        ckpt_filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, ckpt_filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        tmp_filename = f'.{ckpt_filename}.tmp'
        try:
            runner.save_checkpoint(
                self.out_dir, tmp_filename, self.file_client_args,
                save_optimizer=self.save_optimizer, save_param_scheduler=self.save_param_scheduler,
                meta=meta, by_epoch=self.by_epoch, backend_args=self.backend_args, **self.args)
            if is_main_process():
                os.replace(osp.join(self.out_dir, tmp_filename), self.last_ckpt)
        except BaseException:
            if is_main_process() and osp.exists(osp.join(self.out_dir, tmp_filename)):
                os.remove(osp.join(self.out_dir, tmp_filename))
            raise
        if not is_main_process():
            return
        _write_atomically(osp.join(runner.work_dir, 'last_checkpoint'), self.last_ckpt)
        for old in to_remove:
            path = osp.join(self.out_dir, self.filename_tmpl.format(old))
            if osp.isfile(path):
                os.remove(path)


def _write_atomically(path: str, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=osp.dirname(path) or '.', prefix='.last_checkpoint.')
    try:
        with os.fdopen(fd, 'w') as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise
