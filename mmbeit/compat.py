"""Compatibility fixes for the OpenMMLab stack on today's PyTorch.

``import mmbeit`` calls :func:`apply_compat`, which applies each fix only where
the environment needs it:

* ``mmcv.ops`` stand-in: where mmcv's compiled ops (``mmcv._ext``) cannot be
  imported (mmcv-lite), a pure-PyTorch ``mmcv.ops`` with the names mmseg
  imports at module level, so ``mmseg.models`` & co. import
  (:mod:`mmbeit.utils.mmcv_ops_fallback`). ``mmcv._ext`` is never faked.
* Safe ``torch.load``: the types mmengine's checkpoints carry are allowlisted
  for ``weights_only=True`` (resume and ``load_checkpoint`` work without
  turning it off); ``torch.hub.load_state_dict_from_url`` defaults to
  ``weights_only=True``; mmengine's local and http(s) loaders go through
  :mod:`mmbeit.utils.checkpoint_io` (atomic, hash-checked downloads).
* The ``pkg_resources is deprecated`` warning that setuptools < 81 (which
  mmengine needs for ``mmseg::`` configs) prints is silenced.

mmseg's models, datasets, apis and visualization import only after
``import mmbeit`` (in configs: ``custom_imports=dict(imports=['mmbeit'])``).
"""
import importlib
import importlib.util
import sys
import warnings
from typing import List, Tuple

_applied: List[str] = []
_done = False


def applied_fixes() -> Tuple[str, ...]:
    """Names of the fixes :func:`apply_compat` found necessary and applied."""
    return tuple(_applied)


def apply_compat() -> None:
    """Apply every fix that the current environment needs (idempotent)."""
    global _done
    if _done:
        return
    if _install_mmcv_ops_standin():
        _applied.append('mmcv.ops stand-in')
    if _silence_pkg_resources_warning():
        _applied.append('pkg_resources warning filter')

    from mmbeit.utils import checkpoint_io
    if checkpoint_io.register_safe_globals():
        _applied.append('torch.load safe globals')
    if checkpoint_io.make_hub_weights_only():
        _applied.append('torch.hub weights_only default')
    checkpoint_io.register_mmengine_loaders()
    _applied.append('mmengine checkpoint loaders')
    _done = True


def _compiled_mmcv_ops_available() -> bool:
    try:
        importlib.import_module('mmcv._ext')
    except ImportError:
        return False
    return True


def _install_mmcv_ops_standin() -> bool:
    """Install the ``mmcv.ops`` stand-in where mmcv lacks its compiled ops."""
    if importlib.util.find_spec('mmcv') is None:
        return False  # no mmcv at all: mmseg cannot import anyway
    if 'mmcv.ops' in sys.modules or _compiled_mmcv_ops_available():
        return False
    from mmbeit.utils.mmcv_ops_fallback import (StandinSubmoduleFinder,
                                                build_mmcv_ops_standin)
    import mmcv
    standin = build_mmcv_ops_standin()
    sys.modules['mmcv.ops'] = standin
    mmcv.ops = standin
    if not any(isinstance(f, StandinSubmoduleFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, StandinSubmoduleFinder())
    return True


def _silence_pkg_resources_warning() -> bool:
    """mmengine imports ``pkg_resources`` (setuptools < 81) to resolve
    ``mmseg::``/``mmpretrain::`` configs; it warns that it is deprecated."""
    if importlib.util.find_spec('pkg_resources') is None:
        return False
    warnings.filterwarnings('ignore', message='pkg_resources is deprecated',
                            category=UserWarning)
    return True
