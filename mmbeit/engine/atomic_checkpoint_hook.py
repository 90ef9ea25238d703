"""mmengine's CheckpointHook, with no moment at which a kill leaves no usable checkpoint.

Built on mmengine's public extension points only: a storage backend registered with
``mmengine.fileio.register_backend`` (which ``CheckpointHook`` and ``Runner.save_checkpoint``
take through ``backend_args``), the hook's ``file_backend`` and its ``after_*`` methods.
"""
import os
from typing import Any, List, Tuple, Union

from mmengine.dist import is_main_process
from mmengine.fileio import LocalBackend, register_backend
from mmengine.hooks import CheckpointHook

from mmbeit.registry import HOOKS
from mmbeit.utils.checkpoint_io import atomic_path

__all__ = ['AtomicCheckpointHook', 'AtomicLocalBackend', 'ATOMIC_LOCAL_BACKEND']

#: The name :class:`AtomicLocalBackend` is registered under (``backend_args=dict(backend=...)``).
ATOMIC_LOCAL_BACKEND = 'mmbeit_atomic_local'


class AtomicLocalBackend(LocalBackend):
    """``LocalBackend`` whose ``put``/``put_text`` write a temporary file in the target's
    folder and rename it into place (``os.replace``): a reader, or a kill, sees the old file
    or the complete new one, never a truncated one."""

    def put(self, obj: bytes, filepath: Union[str, os.PathLike]) -> None:
        _write_atomically(str(filepath), obj)

    def put_text(self,
                 obj: str,
                 filepath: Union[str, os.PathLike],
                 encoding: str = 'utf-8') -> None:
        _write_atomically(str(filepath), obj.encode(encoding))


register_backend(ATOMIC_LOCAL_BACKEND, AtomicLocalBackend, force=True)


class _DeferredRemoval:
    """Stands for the hook's file backend: ``remove``/``rmtree`` are queued until
    :meth:`flush`, everything else goes straight to ``backend``."""

    def __init__(self, backend: LocalBackend) -> None:
        self.backend = backend
        self.pending: List[Tuple[str, str]] = []

    def remove(self, filepath: str) -> None:
        self.pending.append(('remove', filepath))

    def rmtree(self, dir_path: str) -> None:
        self.pending.append(('rmtree', dir_path))

    def flush(self) -> None:
        pending, self.pending = self.pending, []
        for op, path in pending:
            if (self.backend.isfile(path) if op == 'remove' else self.backend.isdir(path)):
                getattr(self.backend, op)(path)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backend, name)


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """``CheckpointHook`` that writes atomically and deletes old checkpoints only afterwards.

    mmengine's hook (0.10) first deletes the checkpoints beyond
    ``max_keep_ckpts``, then writes the new file in place, then the
    ``last_checkpoint`` pointer. A SIGKILL during the write (or an error raised
    while saving, e.g. :class:`~mmbeit.engine.non_finite_check_hook.NonFiniteCheckHook`
    refusing non-finite weights) leaves a truncated file and, with
    ``max_keep_ckpts=1``, no checkpoint to resume from. Here, on a local file
    system, checkpoints are written through :class:`AtomicLocalBackend`
    (a temporary name renamed into place) and the old checkpoints are deleted
    only once the save, ``last_checkpoint`` included, has returned. Other file
    backends, or explicit ``backend_args``/``file_client_args``, behave as in mmengine.

    mmengine writes ``last_checkpoint`` (a path of a few bytes) with a plain
    ``open``: that short write is the one step this hook cannot make atomic.

    Takes the same arguments as mmengine's ``CheckpointHook``:
    ``default_hooks = dict(checkpoint=dict(type='mmbeit.AtomicCheckpointHook', interval=1))``.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        local = self.out_dir is None or '://' not in str(self.out_dir)
        if self.backend_args is None and self.file_client_args is None and local:
            self.backend_args = dict(backend=ATOMIC_LOCAL_BACKEND)

    def before_train(self, runner) -> None:
        super().before_train(runner)  # may prune checkpoints beyond max_keep_ckpts at once
        if isinstance(self.file_backend, AtomicLocalBackend):
            self.file_backend = _DeferredRemoval(self.file_backend)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        super().after_train_iter(runner, batch_idx, data_batch, outputs)
        self._remove_old_checkpoints()

    def after_train_epoch(self, runner) -> None:
        super().after_train_epoch(runner)
        self._remove_old_checkpoints()

    def after_val_epoch(self, runner, metrics=None) -> None:
        super().after_val_epoch(runner, metrics)
        self._remove_old_checkpoints()

    def after_train(self, runner) -> None:
        super().after_train(runner)
        self._remove_old_checkpoints()

    def _remove_old_checkpoints(self) -> None:
        """Delete what the save queued for deletion, now that the new checkpoint is in place."""
        if isinstance(self.file_backend, _DeferredRemoval) and is_main_process():
            self.file_backend.flush()


def _write_atomically(path: str, data: bytes) -> None:
    with atomic_path(path) as tmp, open(tmp, 'wb') as f:
        f.write(data)
