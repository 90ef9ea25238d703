"""The model zoo: ``model-index.yml`` and the metafiles it imports.

Models are named as mmpretrain names them (``list_models``, ``get_model_info``).
An entry may list ``Aliases``: other names that resolve to it, such as the
Hugging Face hub id its weights were published under
(``microsoft/beit-base-patch16-224-pt22k-ft22k``); :func:`find_alias` looks them up.

Where ``model-index.yml`` is found (:func:`model_index_paths`): ``$MMBEIT_MODEL_INDEX``
if set, else the source tree the ``mmbeit`` package sits in (a clone, or
``pip install -e .``), else ``mmbeit/.mim/model-index.yml``, the copy that a wheel
ships (``setup.py`` copies ``model-index.yml`` and ``configs/`` there, as mmpretrain
ships its ``.mim``). Config paths in the metafiles are relative to the folder of
the ``model-index.yml`` that imports them, so both layouts resolve them alike.
:func:`register_model_index` adds more index files (another project's zoo).
"""
import copy
import fnmatch
import os
import os.path as osp
from typing import Any, Dict, List, Optional, Sequence, Tuple

__all__ = [
    'ModelInfo', 'MODEL_INDEX_ENV', 'model_index_paths', 'register_model_index', 'load_model_index',
    'list_models', 'get_model_info', 'find_alias', 'clear_cache'
]

MODEL_INDEX_ENV = 'MMBEIT_MODEL_INDEX'
MODEL_INDEX_FILE = 'model-index.yml'
_PACKAGE_DIR = osp.dirname(osp.dirname(osp.abspath(__file__)))  # .../mmbeit


class ModelInfo(dict):
    """One ``Models`` entry of a metafile, with ``Config`` made absolute.

    Keys as in the metafile (``Name``, ``Config``, ``Weights``, ``Results``,
    ``Metadata``, ``In Collection``, ``Converted From``, ``Aliases``); attribute
    access for the common ones.
    """

    name = property(lambda self: self['Name'])
    config = property(lambda self: self.get('Config'))
    weights = property(lambda self: self.get('Weights'))
    results = property(lambda self: self.get('Results') or [])
    metafile = property(lambda self: self.get('_metafile'))
    aliases = property(lambda self: list(self.get('Aliases') or []))

    @property
    def tasks(self) -> List[str]:
        """Tasks of the reported results (e.g. ``['Image Classification']``)."""
        return [r.get('Task') for r in self.results if r.get('Task')]


_EXTRA_INDEXES: List[str] = []
_INDEX_CACHE: Dict[Tuple[str, ...], Dict[str, ModelInfo]] = {}


def clear_cache() -> None:
    """Forget the index files read so far (after editing them, or changing the env)."""
    _INDEX_CACHE.clear()


def model_index_paths() -> List[str]:
    """The ``model-index.yml`` files to read, in order (see the module docstring).

    Raises:
        FileNotFoundError: none was found; the message lists where it looked.
    """
    env = os.environ.get(MODEL_INDEX_ENV)
    if env:
        if not osp.isfile(env):
            raise FileNotFoundError(f'${MODEL_INDEX_ENV}={env} is not a file')
        found = [osp.abspath(env)]
    else:
        repo = osp.dirname(_PACKAGE_DIR)
        candidates = [
            osp.join(repo, MODEL_INDEX_FILE),
            osp.join(_PACKAGE_DIR, '.mim', MODEL_INDEX_FILE)
        ]
        # a source tree (it has setup.py) wins over a copy left in mmbeit/.mim by a build
        in_tree = osp.isfile(candidates[0]) and osp.isfile(osp.join(repo, 'setup.py'))
        found = [candidates[0]] if in_tree else [p for p in candidates[1:] if osp.isfile(p)]
        if not found and not _EXTRA_INDEXES:
            raise FileNotFoundError(
                f'no {MODEL_INDEX_FILE} found; looked at {candidates}. Install mmbeit from its '
                f'repository or its wheel, or set ${MODEL_INDEX_ENV} to the file.')
    return found + [p for p in _EXTRA_INDEXES if p not in found]


def register_model_index(path: str) -> None:
    """Read the models of another ``model-index.yml`` (or a single metafile) too."""
    path = osp.abspath(os.fspath(path))
    if not osp.isfile(path):
        raise FileNotFoundError(f'model index not found: {path}')
    if path not in _EXTRA_INDEXES:
        _EXTRA_INDEXES.append(path)
    clear_cache()


def _read_yaml(path: str) -> Any:
    import yaml
    with open(path, encoding='utf-8') as f:
        return yaml.safe_load(f) or {}


def _read_metafile(path: str, config_root: str, models: Dict[str, ModelInfo]) -> None:
    data = _read_yaml(path)
    collections = {c['Name']: c for c in data.get('Collections') or [] if 'Name' in c}
    for entry in data.get('Models') or []:
        if 'Name' not in entry:
            raise ValueError(f'{path}: a Models entry has no Name: {entry}')
        info = ModelInfo(entry)
        if info.name.lower() in models:
            raise ValueError(f'model name {info.name!r} is defined twice: in {path} and in '
                             f'{models[info.name.lower()].metafile}')
        if info.config and not osp.isabs(info.config):
            info['Config'] = osp.normpath(osp.join(config_root, info.config))
        coll = collections.get(info.get('In Collection'))
        if coll is not None:
            meta = dict(coll.get('Metadata') or {})
            meta.update(info.get('Metadata') or {})
            info['Metadata'] = meta
        info['_metafile'] = path
        models[info.name.lower()] = info


def load_model_index(paths: Optional[Sequence[str]] = None) -> Dict[str, ModelInfo]:
    """``{lower-case model name: ModelInfo}`` of every metafile the index files import.

    Args:
        paths: ``model-index.yml`` files (or metafiles); :func:`model_index_paths` if None.

    Raises:
        ValueError: a name or alias defined twice, or an entry without a name.
        FileNotFoundError: an imported metafile that does not exist.
    """
    paths = tuple(osp.abspath(p) for p in (paths or model_index_paths()))
    if paths in _INDEX_CACHE:
        return _INDEX_CACHE[paths]
    models: Dict[str, ModelInfo] = {}
    for index in paths:
        root = osp.dirname(index)
        data = _read_yaml(index)
        for rel in data.get('Import') or []:
            metafile = osp.normpath(osp.join(root, rel))
            if not osp.isfile(metafile):
                raise FileNotFoundError(f'{index} imports {rel}, which does not exist')
            _read_metafile(metafile, root, models)
        if 'Models' in data:
            _read_metafile(index, root, models)
    seen: Dict[str, str] = {}
    for info in models.values():
        for alias in info.aliases:
            key = alias.lower()
            if key in models or key in seen:
                other = 'a model name' if key in models else f'an alias of {seen[key]}'
                raise ValueError(f'alias {alias!r} of {info.name} ({info.metafile}) is also '
                                 f'{other}')
            seen[key] = info.name
    _INDEX_CACHE[paths] = models
    return models


def list_models(pattern: Optional[str] = None, task: Optional[str] = None) -> List[str]:
    """Names of the models in the zoo, sorted.

    Args:
        pattern: shell-style wildcard, matched case-insensitively against the start of
            the names (as mmpretrain: ``'beit-base'`` lists every name starting with it).
        task: keep the models with a result for this task (``'Image Classification'``,
            ``'Semantic Segmentation'``).
    """
    models = load_model_index()
    names = sorted(info.name for info in models.values())
    if pattern is not None:
        names = [n for n in names if fnmatch.fnmatch(n.lower(), pattern.lower() + '*')]
    if task is not None:
        names = [n for n in names if task in models[n.lower()].tasks]
    return names


def find_alias(name: str) -> Optional[ModelInfo]:
    """The entry that lists ``name`` (case-insensitive) among its ``Aliases``, else None."""
    key = name.lower()
    for info in load_model_index().values():
        if key in (a.lower() for a in info.aliases):
            return copy.deepcopy(info)
    return None


def get_model_info(name: str) -> ModelInfo:
    """The metafile entry of a model name or alias (case-insensitive).

    Raises:
        ValueError: an unknown name; the message suggests close names.
    """
    models = load_model_index()
    info = models.get(name.lower()) or find_alias(name)
    if info is None:
        import difflib
        close = difflib.get_close_matches(name.lower(), list(models), n=5, cutoff=0.4)
        hint = f'; close names: {[models[c].name for c in close]}' if close else ''
        raise ValueError(f'unknown model name {name!r}{hint}. list_models() gives all names; '
                         'a Hugging Face hub id is written owner/name or hf-hub:owner/name.')
    return copy.deepcopy(info)
