"""Compatibility fixes for the OpenMMLab stack on today's PyTorch.

``import mmbeit`` calls :func:`apply_compat`, which applies each fix only where
the environment needs it, and each at the latest moment it can, so that
``import mmbeit`` imports neither mmcv, mmseg, mmpretrain nor mmengine's Runner:

* ``mmcv.ops`` stand-in: where mmcv's compiled ops (``mmcv._ext``) cannot be
  imported (mmcv-lite), ``import mmcv.ops`` gives a pure-PyTorch module with the
  names mmseg imports at module level, so ``mmseg.models`` & co. import
  (:mod:`mmbeit.utils.mmcv_ops_fallback`). A finder in ``sys.meta_path`` swaps it
  in when ``mmcv.ops`` is first imported (at once if mmcv is already imported).
  ``mmcv._ext`` is never faked.
* Safe ``torch.load``: the types mmengine's checkpoints carry are allowlisted
  for ``weights_only=True`` (resume and ``load_checkpoint`` work without
  turning it off); ``torch.hub.load_state_dict_from_url`` defaults to
  ``weights_only=True``. mmengine's local and http(s) checkpoint loaders go
  through :mod:`mmbeit.utils.checkpoint_io` (atomic, hash-checked downloads):
  they are registered right after ``mmengine.runner.checkpoint`` is imported
  (importing it imports the whole Runner, which ``import mmbeit`` must not).
* The ``pkg_resources is deprecated`` warning that setuptools < 81 (which
  mmengine needs for ``mmseg::`` configs) prints is silenced.

mmseg's models, datasets, apis and visualization import only after
``import mmbeit`` (in configs: ``custom_imports=dict(imports=['mmbeit'])``).
"""
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import warnings
from typing import Callable, Dict, List, Tuple

__all__ = ['apply_compat', 'applied_fixes']

_applied: List[str] = []
_done = False


def applied_fixes() -> Tuple[str, ...]:
    """Names of the fixes :func:`apply_compat` found necessary and applied (or armed, for
    those that wait for their module's import)."""
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
    _after_import('mmengine.runner.checkpoint', lambda _: checkpoint_io.register_mmengine_loaders())
    _applied.append('mmengine checkpoint loaders')
    _done = True


# ---------------------------------------------------------------------------
# Post-import hooks: run a function right after a module has been imported.


class _PostImportFinder(importlib.abc.MetaPathFinder):
    """Finds the modules in ``hooks`` with the other finders and wraps their
    loaders so that the hook runs once the module's code has run."""

    def __init__(self) -> None:
        self.hooks: Dict[str, Callable] = {}

    def find_spec(self, fullname, path=None, target=None):
        hook = self.hooks.get(fullname)
        if hook is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, 'find_spec'):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is None or not hasattr(spec.loader, 'exec_module'):
            return spec
        spec.loader = _HookedLoader(spec.loader, self.hooks.pop(fullname))
        return spec


class _HookedLoader(importlib.abc.Loader):
    """Delegates to ``loader``, then calls ``hook(module)``."""

    def __init__(self, loader, hook: Callable) -> None:
        self.loader, self.hook = loader, hook

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        self.loader.exec_module(module)
        self.hook(module)

    def __getattr__(self, name: str):  # get_source, is_package, ... for tracebacks and pkgutil
        return getattr(self.loader, name)


_post_import = _PostImportFinder()


def _after_import(name: str, hook: Callable) -> None:
    """Call ``hook(module)`` now if ``name`` is imported, else right after its import."""
    if name in sys.modules:
        hook(sys.modules[name])
        return
    _post_import.hooks[name] = hook
    if _post_import not in sys.meta_path:
        sys.meta_path.insert(0, _post_import)


# ---------------------------------------------------------------------------
# mmcv.ops


def _compiled_mmcv_ops_available() -> bool:
    try:
        importlib.import_module('mmcv._ext')
    except ImportError:
        return False
    return True


def _has_compiled_extension(package: str) -> bool:
    """Whether ``package``'s folder holds a compiled ``_ext`` (found without importing it)."""
    spec = importlib.util.find_spec(package)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            if os.path.isfile(os.path.join(folder, '_ext' + suffix)):
                return True
    return False


class _MmcvOpsFinder(importlib.abc.MetaPathFinder):
    """Gives the pure-PyTorch stand-in for ``import mmcv.ops`` where ``mmcv._ext`` does not
    import; where it does, the real ``mmcv.ops`` loads."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != 'mmcv.ops' or _compiled_mmcv_ops_available():
            return None
        return importlib.machinery.ModuleSpec('mmcv.ops', _MmcvOpsStandinLoader(), is_package=True)


class _MmcvOpsStandinLoader(importlib.abc.Loader):

    def create_module(self, spec):
        from mmbeit.utils.mmcv_ops_fallback import build_mmcv_ops_standin
        return build_mmcv_ops_standin()

    def exec_module(self, module) -> None:
        _install_submodule_finder()


def _install_submodule_finder() -> None:
    from mmbeit.utils.mmcv_ops_fallback import StandinSubmoduleFinder
    if not any(isinstance(f, StandinSubmoduleFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, StandinSubmoduleFinder())


def _install_mmcv_ops_standin() -> bool:
    """Install the ``mmcv.ops`` stand-in where mmcv lacks its compiled ops.

    mmcv already imported: decided and installed now. Otherwise a finder waits for
    ``import mmcv.ops`` (importing mmcv costs seconds that ``import mmbeit`` must not).
    """
    if importlib.util.find_spec('mmcv') is None:
        return False  # no mmcv at all: mmseg cannot import anyway
    if 'mmcv.ops' in sys.modules:
        return False
    if 'mmcv' not in sys.modules:
        if not any(isinstance(f, _MmcvOpsFinder) for f in sys.meta_path):
            sys.meta_path.insert(0, _MmcvOpsFinder())
        # the finder decides at import time (a compiled _ext may still fail to load)
        return not _has_compiled_extension('mmcv')
    if _compiled_mmcv_ops_available():
        return False
    import mmcv

    from mmbeit.utils.mmcv_ops_fallback import build_mmcv_ops_standin
    standin = build_mmcv_ops_standin()
    sys.modules['mmcv.ops'] = standin
    mmcv.ops = standin
    _install_submodule_finder()
    return True


def _silence_pkg_resources_warning() -> bool:
    """mmengine imports ``pkg_resources`` (setuptools < 81) to resolve
    ``mmseg::``/``mmpretrain::`` configs; it warns that it is deprecated."""
    if importlib.util.find_spec('pkg_resources') is None:
        return False
    warnings.filterwarnings('ignore', message='pkg_resources is deprecated', category=UserWarning)
    return True
