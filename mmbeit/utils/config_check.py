"""Config mistakes caught early and explained: unknown ``type`` names, missing data roots,
misspelled top-level keys and component arguments, and malformed ``img_size`` /
``out_indices``.

mmengine reports an unknown ``type`` as ``KeyError: 'Foo is not in the
mmpretrain::model registry...'`` without saying what *is* there.
:func:`suggest_registered_names` turns that error, wherever the Runner raises
it (while it is built or while it builds dataloaders, hooks and optimizers
lazily in ``train()``), into an :class:`UnknownTypeError` that lists the closest
names registered in the default scope, ``mmbeit``, ``mmpretrain`` and ``mmseg``,
spelled as the config must write them::

    with suggest_registered_names():
        runner = make_runner(cfg)
        runner.train()

:func:`check_data_roots` checks, before anything is built, that every
dataloader's ``data_root`` exists and says how to make the sample data.
"""
import contextlib
import difflib
import importlib
import os.path as osp
import re
from typing import Any, Dict, Iterator, List, Optional, Tuple

__all__ = [
    'UnknownTypeError', 'UnknownConfigKeyError', 'registered_names', 'suggest_types',
    'explain_unknown_type', 'suggest_registered_names', 'check_data_roots', 'check_top_level_keys',
    'suggest_arguments', 'check_img_size', 'check_out_indices', 'checkpoint_from_init_cfg'
]

#: Scopes searched for close names (besides the config's default scope).
SEARCH_SCOPES = ('mmbeit', 'mmpretrain', 'mmseg', 'mmengine')
# mmengine.registry.build_functions: "{type} is not in the {scope}::{name} registry."
_UNKNOWN_TYPE_RE = re.compile(
    r'(?P<type>[^\s\'"`]+) is not in the (?:(?P<scope>[\w]+)::)?(?P<registry>[\w ]+?) registry')
# the scopes whose registries mmbeit reaches, and the module that registers their content
_SCOPE_IMPORTS = {
    'mmbeit': 'mmbeit.registry',
    'mmpretrain': 'mmpretrain.registry',
    'mmseg': 'mmseg.registry'
}


class UnknownTypeError(KeyError):
    """A config names a ``type`` that no registry holds; the message lists close names."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ''


class UnknownConfigKeyError(UnknownTypeError):
    """A top-level config key that the Runner would ignore, close to one it reads."""


def _root_registry(registry_name: str):
    """mmengine's root registry called ``registry_name`` ('model', 'transform', ...)."""
    import mmengine.registry as mmengine_registry
    from mmengine.registry import Registry
    for value in vars(mmengine_registry).values():
        if isinstance(value, Registry) and value.parent is None and value.name == registry_name:
            return value
    return None


def _walk(registry) -> Iterator[Any]:
    yield registry
    for child in registry.children.values():
        yield from _walk(child)


def registered_names(registry_name: str,
                     scopes: Tuple[str, ...] = SEARCH_SCOPES) -> Dict[str, List[str]]:
    """Names registered in ``registry_name`` registries, by scope.

    The lazy ``locations`` of each scope's registry are imported first, so the
    names are complete (this imports mmpretrain's or mmseg's models; only call
    it on the error path).

    Args:
        registry_name: mmengine's name of the registry: 'model', 'transform',
            'hook', 'dataset', 'metric', 'optimizer wrapper constructor', ...
        scopes: which scopes to list; mmengine's root is scope 'mmengine'.

    Returns:
        ``{scope: sorted names}``; empty when no root registry has that name.
    """
    root = _root_registry(registry_name)
    if root is None:
        return {}
    for scope in scopes:  # make the scopes' children exist (importing mmseg needs mmbeit's compat)
        if scope in _SCOPE_IMPORTS and scope not in root.children:
            with contextlib.suppress(Exception):
                importlib.import_module(_SCOPE_IMPORTS[scope])
    names: Dict[str, List[str]] = {}
    for registry in _walk(root):
        if registry.scope not in scopes:
            continue
        with contextlib.suppress(Exception):  # an optional dependency of a location may be missing
            registry.import_from_location()
        names[registry.scope] = sorted(registry.module_dict)
    return names


def suggest_types(type_name: str,
                  registry_name: str,
                  default_scope: Optional[str] = None,
                  n: int = 5) -> List[str]:
    """The registered names closest to ``type_name``, as a config of ``default_scope`` writes them.

    A name of the default scope is written bare (``'ImageClassifier'``), any other
    with its scope (``'mmbeit.BEiT'``). Matching ignores case and a scope prefix
    on ``type_name``.
    """
    prefix, _, bare = type_name.rpartition('.')
    scopes = tuple(dict.fromkeys(s for s in (prefix, default_scope, *SEARCH_SCOPES) if s))
    candidates: Dict[str, str] = {}  # lowercase bare name -> the name
    spelled: Dict[str, List[str]] = {}
    # a name of the default scope or of mmengine's root (the parent of every scope) is written
    # bare; the scope the user wrote, then the default scope, come first
    for scope, names in sorted(
            registered_names(registry_name, scopes).items(),
            key=lambda item: scopes.index(item[0])):
        for name in names:
            spelling = name if scope in (default_scope, 'mmengine') else f'{scope}.{name}'
            if spelling not in spelled.setdefault(name.lower(), []):
                spelled[name.lower()].append(spelling)
            candidates.setdefault(name.lower(), name)
    close = difflib.get_close_matches(bare.lower(), list(candidates), n=n, cutoff=0.6)
    # also names that contain what was typed, or are contained in it ('BEiT' -> 'BEiTPretrain')
    if len(bare) >= 3:
        close += [
            k for k in candidates
            if (bare.lower() in k or k in bare.lower()) and k not in close and len(k) >= 3
        ][:max(0, n - len(close))]
    out: List[str] = []
    for key in close:
        for spelling in spelled[key]:
            if spelling not in out:
                out.append(spelling)
    return out[:n]


def explain_unknown_type(error: BaseException,
                         default_scope: Optional[str] = None) -> Optional[UnknownTypeError]:
    """An :class:`UnknownTypeError` with close names for mmengine's unknown-type
    ``KeyError``, or None when ``error`` is not one."""
    if isinstance(error, UnknownTypeError) or not isinstance(error, KeyError):
        return None
    text = str(error.args[0]) if error.args else ''
    match = _UNKNOWN_TYPE_RE.search(text)
    if match is None:
        return None
    type_name, registry_name = match.group('type'), match.group('registry')
    scope = match.group('scope') or default_scope
    close = suggest_types(type_name, registry_name, scope)
    where = f'{scope}::{registry_name}' if scope else registry_name
    msg = f'unknown type {type_name!r}: it is not in the {where} registry. '
    if close:
        msg += f'Closest registered names: {", ".join(repr(c) for c in close)}. '
    else:
        msg += 'No registered name is close to it. '
    msg += ("Components of another scope need its prefix (type='mmbeit.BEiT'); "
            "mmbeit's need custom_imports=dict(imports=['mmbeit']) in the config.")
    return UnknownTypeError(msg)


@contextlib.contextmanager
def suggest_registered_names(default_scope: Optional[str] = None) -> Iterator[None]:
    """Re-raise mmengine's unknown-type ``KeyError`` as :class:`UnknownTypeError`, naming the
    registered names that come close."""
    try:
        yield
    except KeyError as e:
        if default_scope is None:
            from mmengine.registry import DefaultScope
            current = DefaultScope.get_current_instance()
            default_scope = current.scope_name if current is not None else None
        better = explain_unknown_type(e, default_scope)
        if better is None:
            raise
        raise better from e


def _datasets(dataset_cfg: Any, where: str) -> Iterator[Tuple[str, dict]]:
    """Every dataset config under ``dataset_cfg`` (wrappers: dataset=, datasets=[...])."""
    if not isinstance(dataset_cfg, dict):
        return
    yield where, dataset_cfg
    if isinstance(dataset_cfg.get('dataset'), dict):
        yield from _datasets(dataset_cfg['dataset'], where + '.dataset')
    for i, sub in enumerate(dataset_cfg.get('datasets') or []):
        yield from _datasets(sub, f'{where}.datasets.{i}')


def check_data_roots(
    cfg: Any, loaders: Tuple[str, ...] = ('train_dataloader', 'val_dataloader', 'test_dataloader')
) -> None:
    """Raise ``FileNotFoundError`` for a dataloader whose local ``data_root`` does not exist.

    Checked: the ``loaders`` the config sets (``tools/test.py`` needs only
    ``('test_dataloader',)``), with dataset wrappers looked through. Roots on a
    remote backend (``s3://...``, or ``backend_args`` set) are not checked.

    Raises:
        FileNotFoundError: names the config key, the path, the working directory,
            and how to make the sample data or point the key elsewhere.
    """
    for loader in loaders:
        loader_cfg = cfg.get(loader)
        if not isinstance(loader_cfg, dict):
            continue
        for where, dataset in _datasets(loader_cfg.get('dataset'), f'{loader}.dataset'):
            root = dataset.get('data_root')
            if not isinstance(root, str) or not root or '://' in root:
                continue
            if dataset.get('backend_args') or osp.isdir(osp.expanduser(root)):
                continue
            hint = ''
            if any(part.startswith('sample') for part in root.replace('\\', '/').split('/')):
                hint = ('Make the bundled sample data with `python tools/make_sample_data.py` '
                        '(from the repository root), or ')
            raise FileNotFoundError(
                f'{where}.data_root {root!r} does not exist (resolved to '
                f'{osp.abspath(osp.expanduser(root))}, working directory {osp.abspath(".")}). '
                f'{hint}point it at your data with --cfg-options {where}.data_root=PATH.')


# Top-level config keys that mmengine's Runner, the OpenMMLab tools and mmbeit read, and the
# variable names the configs of OpenMMLab conventionally define. A top-level key close to one
# of them but not one of them is a typo that the Runner would ignore silently.
RUNNER_KEYS = ('model', 'work_dir', 'train_dataloader', 'val_dataloader', 'test_dataloader',
               'train_cfg', 'val_cfg', 'test_cfg', 'auto_scale_lr', 'optim_wrapper',
               'param_scheduler', 'val_evaluator', 'test_evaluator', 'default_hooks',
               'custom_hooks', 'data_preprocessor', 'load_from', 'resume', 'launcher', 'env_cfg',
               'log_processor', 'log_level', 'visualizer', 'default_scope', 'randomness',
               'experiment_name', 'cfg', 'runner_type', 'strategy', 'compile', 'tta_model',
               'tta_pipeline', 'custom_imports', 'model_wrapper_cfg', 'vis_backends')
CONVENTIONAL_KEYS = ('train_pipeline', 'val_pipeline', 'test_pipeline', 'dataset_type', 'data_root',
                     'metainfo', 'crop_size', 'img_scale', 'img_ratios', 'norm_cfg', 'num_classes',
                     'classes', 'checkpoint', 'pretrained', 'backend_args')


def check_top_level_keys(cfg: Any,
                         known: Tuple[str, ...] = RUNNER_KEYS + CONVENTIONAL_KEYS,
                         cutoff: float = 0.8) -> None:
    """Raise ``KeyError`` for a top-level key that looks like a misspelled Runner key.

    mmengine's Runner ignores top-level keys it does not read, so ``train_dataloder``
    leaves the ``train_dataloader`` of the ``_base_`` config in place without a word.
    A key that is not in ``known`` and whose closest known name (difflib ratio >=
    ``cutoff``) is a Runner key is refused. Config variables of your own stay free: any name not
    close to a Runner key, and any name starting with ``_``.

    Raises:
        UnknownConfigKeyError: (a ``KeyError``) names the key, the closest known key and
            how to keep a variable.
    """
    keys = [k for k in cfg.keys() if isinstance(k, str) and not k.startswith('_')]
    for key in keys:
        if key in known:
            continue
        # the closest of all known names: 'test_pipline' is the variable test_pipeline
        close = difflib.get_close_matches(key, known, n=1, cutoff=cutoff)
        if close and close[0] in RUNNER_KEYS:
            present = (' (the config also sets it, so this value would be ignored)'
                       if close[0] in keys else '')
            raise UnknownConfigKeyError(
                f'unknown top-level config key {key!r}: did you mean {close[0]!r}?{present} '
                f'The Runner ignores keys it does not read. A variable of your own that is '
                f'this close to a Runner key needs a leading underscore (_{key}).')


def suggest_arguments(cls: type) -> type:
    """Class decorator: an unknown keyword argument of ``cls(...)`` raises a ``TypeError``
    naming the closest argument (Python's own names none), e.g. ``drop_path_rat`` ->
    ``drop_path_rate``. The signature is kept (``inspect.signature`` follows the wrapper)."""
    import functools
    import inspect
    init = cls.__init__
    params = inspect.signature(init).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return cls  # takes any keyword
    names = [n for n, p in params.items() if n != 'self' and p.kind is not p.VAR_POSITIONAL]

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        unknown = [k for k in kwargs if k not in names]
        if unknown:
            parts = []
            for key in unknown:
                close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
                parts.append(f'{key!r}' + (f' (did you mean {close[0]!r}?)' if close else ''))
            raise TypeError(f'{cls.__name__} got unknown argument(s) {", ".join(parts)}; '
                            f'its arguments are: {", ".join(names)}')
        init(self, *args, **kwargs)

    cls.__init__ = __init__
    return cls


def check_img_size(img_size: Any) -> Tuple[int, int]:
    """``img_size`` as ``(H, W)``: an int or a sequence of two positive ints, else
    ``ValueError`` naming the value."""
    if isinstance(img_size, bool):
        values = None
    elif isinstance(img_size, int):
        values = (img_size, img_size)
    elif isinstance(img_size, (list, tuple)) and len(img_size) == 2:
        values = tuple(img_size)
    else:
        values = None
    if values is None or not all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values):
        raise ValueError(f'img_size must be a positive int or (H, W), two positive ints; '
                         f'got {img_size!r}')
    return values


def check_out_indices(out_indices: Any, num_layers: int) -> List[int]:
    """``out_indices`` as layer indices in ``[0, num_layers)``: an int or a list / tuple of ints
    in ``[-num_layers, num_layers)`` (negative counts from the end), else ``ValueError``."""
    if isinstance(out_indices, int) and not isinstance(out_indices, bool):
        out_indices = [out_indices]
    expected = (f'an int or a list/tuple of ints in [-{num_layers}, {num_layers}) '
                f'({num_layers} layers)')
    if not isinstance(out_indices, (list, tuple)) or not out_indices:
        raise ValueError(f'out_indices must be {expected}; got {out_indices!r}')
    indices = []
    for i in out_indices:
        if not isinstance(i, int) or isinstance(i, bool):
            raise ValueError(f'out_indices entry {i!r} of {out_indices!r} is not an int; '
                             f'out_indices must be {expected}')
        if not -num_layers <= i < num_layers:
            raise ValueError(f'out_indices entry {i} of {out_indices!r} is out of range for '
                             f'{num_layers} layers; out_indices must be {expected}')
        indices.append(i + num_layers if i < 0 else i)
    return indices


def checkpoint_from_init_cfg(owner: str, init_cfg: Optional[dict],
                             checkpoint: Optional[str]) -> Optional[str]:
    """The checkpoint of a module that takes ``checkpoint=`` and, as mmpretrain's configs
    write it, ``init_cfg=dict(type='Pretrained', checkpoint=...)``; anything else in
    ``init_cfg`` is refused, naming ``owner`` (the class).
    """
    if init_cfg is None:
        return checkpoint
    if not isinstance(init_cfg, dict) or init_cfg.get('type') != 'Pretrained':
        raise ValueError(f"{owner}: init_cfg may only be dict(type='Pretrained', "
                         f'checkpoint=...) (or use checkpoint=...), got {init_cfg!r}')
    extra = set(init_cfg) - {'type', 'checkpoint'}
    if extra:
        raise ValueError(f'{owner}: unsupported init_cfg keys {sorted(extra)}; allowed: type, '
                         'checkpoint')
    if checkpoint is not None and checkpoint != init_cfg['checkpoint']:
        raise ValueError(f'{owner}: checkpoint={checkpoint!r} and init_cfg checkpoint='
                         f'{init_cfg["checkpoint"]!r} disagree')
    return init_cfg['checkpoint']
