"""From a name to a model with weights: config resolution, building, the weights step.

:func:`load_config` turns what a user names into a config:

============================== ===========================================================
an mmengine ``Config``          used as is (a copy)
a ``.py`` path                 ``Config.fromfile``
a model folder (config.json)   built from its ``config.json`` (:mod:`.folder_config`)
a zoo name                     its metafile ``Config``; weights: its ``Weights``
a hub id (``owner/name``,      a zoo entry that lists it in ``Aliases`` (config, class
``hf-hub:owner/name[@rev]``)   names of the zoo; weights from the hub repository), else the
                               repository's ``config.json``
============================== ===========================================================

:func:`load_weights` is the one read -> load -> meta sequence of the apis: read the
checkpoint (any format, path, URL, hub file, model folder), load it strictly through
:func:`mmbeit.converters.load_pretrained`, and return the class names (and palette)
that came with it.
"""
import copy
import os
import os.path as osp
from dataclasses import dataclass
from typing import Any, Optional, Tuple, Union

__all__ = [
    'ModelSource', 'load_config', 'task_of', 'build_model', 'resolve_weights', 'load_weights',
    'build_with_weights', 'get_model', 'build_from_source'
]


@dataclass
class ModelSource:
    """What a model name resolved to."""
    cfg: Any  # mmengine Config
    info: Any = None  # the zoo's ModelInfo, or None
    weights: Optional[str] = None  # path, URL, folder, or a hub id (hf-hub:owner/name@rev)


def _hub_ref(repo: str, revision: Optional[str]) -> str:
    from .hub import HF_HUB_PREFIX
    return f'{HF_HUB_PREFIX}{repo}' + (f'@{revision}' if revision else '')


def load_config(model: Any, revision: Optional[str] = None) -> ModelSource:
    """Resolve a model name, config path, Config, model folder or hub id (module docstring).

    Args:
        model: what to build.
        revision: hub revision (branch, tag, commit) for a hub id; ``@rev`` in the id
            wins.

    Raises:
        FileNotFoundError: a ``.py`` path that does not exist.
        ValueError: an unknown name (the message suggests close names).
    """
    from mmengine.config import Config

    from . import hub, model_zoo
    from .folder_config import config_from_folder, is_model_folder
    if isinstance(model, Config):
        return ModelSource(copy.deepcopy(model), None, model.get('load_from'))
    if not isinstance(model, (str, os.PathLike)):
        raise TypeError('model must be a model name, a hub id, a config path, a model folder '
                        f'or an mmengine Config, got {type(model).__name__}')
    path = os.fspath(model)
    if path.endswith('.py'):
        if not osp.isfile(path):
            raise FileNotFoundError(f'config file not found: {path}')
        cfg = Config.fromfile(path)
        return ModelSource(cfg, None, cfg.get('load_from'))
    if is_model_folder(path):
        return ModelSource(config_from_folder(path), None, path)
    if osp.isdir(path):
        raise FileNotFoundError(f'{path} is a folder without config.json; a model folder has '
                                'config.json and its weights (save_pretrained writes them)')
    index = model_zoo.load_model_index()
    if path.lower() in index:
        info = model_zoo.get_model_info(path)
        return ModelSource(_zoo_config(info), info, info.weights)
    parsed = hub.parse_hub_id(path)
    if parsed is None:
        model_zoo.get_model_info(path)  # raises, naming close names
    repo, rev = parsed
    rev = rev or revision
    info = model_zoo.find_alias(repo)
    if info is not None:  # a published id of a zoo entry: the zoo's config
        return ModelSource(_zoo_config(info), info, _hub_ref(repo, rev))
    folder = hub.download_model_folder(repo, rev, weights=False)
    return ModelSource(config_from_folder(folder), None, _hub_ref(repo, rev))


def _zoo_config(info: Any):
    from mmengine.config import Config
    if not info.config:
        raise ValueError(f'model {info.name} has no Config in {info.metafile}')
    return Config.fromfile(info.config)


def task_of(cfg: Any) -> str:
    """``'segmentation'`` for mmseg configs (``default_scope='mmseg'``), else
    ``'classification'`` for mmpretrain classifiers, else ``'other'`` (e.g. masked image
    modeling)."""
    if cfg.get('default_scope') == 'mmseg':
        return 'segmentation'
    model_type = str(cfg.model.get('type', ''))
    if model_type.split('.')[-1] in ('ImageClassifier', 'BEiTClassifier', 'TimmClassifier',
                                     'HuggingFaceClassifier'):
        return 'classification'
    return 'other'


def build_model(cfg: Any):
    """Build ``cfg.model`` in the config's scope, without loading any weights.

    Segmentors are built as mmseg's ``init_model`` builds them: no ``train_cfg``, the
    backbone's ``init_cfg`` dropped (weights come from :func:`load_weights`), SyncBN
    turned into BN. (mmengine loads an ``init_cfg`` only in ``init_weights()``, which
    is not called here.)
    """
    from mmengine.registry import MODELS, DefaultScope

    import mmbeit.models  # noqa: F401  (registers mmbeit.* components)
    scope = cfg.get('default_scope') or 'mmpretrain'
    model_cfg = copy.deepcopy(cfg.model)
    if cfg.get('data_preprocessor') is not None:
        model_cfg.setdefault('data_preprocessor', copy.deepcopy(cfg.data_preprocessor))
    if scope == 'mmseg':
        model_cfg['train_cfg'] = None
        model_cfg.get('backbone', {}).pop('init_cfg', None)
    with DefaultScope.overwrite_default_scope(scope):
        model = MODELS.build(model_cfg)
    if scope == 'mmseg':
        from mmengine.model import revert_sync_batchnorm
        model = revert_sync_batchnorm(model)
    return model


def resolve_weights(source: Union[str, os.PathLike], revision: Optional[str] = None) -> str:
    """A local path, URL or folder for ``source``; hub ids and ``huggingface.co`` file URLs
    are fetched through huggingface_hub first (its cache, ``HF_ENDPOINT``, offline mode)."""
    from mmbeit.converters.transformers import CONFIG_FILE
    from . import hub
    source = os.fspath(source)
    url = hub.parse_hub_url(source)
    if url is not None:
        repo, rev, file = url
        path = hub.download_file(repo, file, revision or rev)
        try:  # the labels and the image size beside the weights
            hub.download_file(repo, CONFIG_FILE, revision or rev)
        except FileNotFoundError:
            pass
        return path
    parsed = hub.parse_hub_id(source)
    if parsed is not None:
        repo, rev = parsed
        return hub.download_model_folder(repo, rev or revision)
    return source


def load_weights(model: Any,
                 source: Union[str, os.PathLike],
                 revision: Optional[str] = None,
                 assign: bool = False,
                 uninitialized: bool = False) -> dict:
    """Read ``source`` (any format), load it into ``model`` strictly, return its meta.

    ``assign``, ``uninitialized``: see :func:`mmbeit.converters.load.load_pretrained`
    (:func:`build_with_weights` passes both).

    Returns:
        ``dict(classes=..., palette=...)`` when the checkpoint (or the transformers
        ``config.json`` beside it) names them; else ``{}``.

    Raises:
        mmbeit.converters.CheckpointMismatchError: keys that do not fit, named with the
            file and its format.
    """
    from mmbeit.converters import load_converted_state_dict, read_checkpoint
    from .class_names import (classes_from_checkpoint, classes_from_transformers_config,
                              transformers_config_beside)
    local = resolve_weights(source, revision)
    checkpoint = read_checkpoint(local)
    meta = classes_from_checkpoint(checkpoint)
    if meta is None:
        config = transformers_config_beside(local)
        classes = classes_from_transformers_config(config) if config else None
        meta = dict(classes=classes) if classes else {}
    # detect -> convert -> fit -> load, strict; errors name the file as the user gave it
    load_converted_state_dict(
        model, checkpoint, source=str(source), assign=assign, uninitialized=uninitialized)
    return meta


def build_with_weights(cfg: Any,
                       source: Union[str, os.PathLike],
                       revision: Optional[str] = None) -> Tuple[Any, dict]:
    """Build ``cfg.model`` and load ``source`` into it, holding its weights once.

    The model is built without initial weights (:func:`~mmbeit.converters.load.no_init`)
    and takes the checkpoint's tensors (``assign=True``): those of a mapped file are the
    file's pages (copy-on-write: training writes private copies), read when used, as
    transformers' ``from_pretrained`` does. Do not overwrite the file in place while the
    model lives (write a new file and rename it, as mmbeit's checkpoint hook does). A
    checkpoint that lacks parts of the model (a backbone for a classifier) is loaded into
    a model built normally, so those parts keep their initialization.

    Returns:
        (the model, :func:`load_weights`'s meta)
    """
    from mmbeit.converters.load import PartsNotInCheckpointError, no_init
    with no_init():
        model = build_model(cfg)
    try:
        return model, load_weights(model, source, revision, assign=True, uninitialized=True)
    except PartsNotInCheckpointError:
        del model
    model = build_model(cfg)
    return model, load_weights(model, source, revision)


def get_model(model: Any,
              pretrained: Union[bool, str] = False,
              device: str = 'cpu',
              revision: Optional[str] = None,
              **kwargs) -> Any:
    """Build a model of the zoo, a hub id, a model folder or a config, optionally with weights.

    Args:
        model: a name from ``list_models``, a hub id (``microsoft/beit-base-patch16-224``,
            ``hf-hub:timm/beit_base_patch16_224.in22k_ft_in22k_in1k``), a transformers or
            timm model folder, a config file path or an mmengine Config.
        pretrained: False (the initial weights: nothing is downloaded), True (the weights
            the name resolves to: the metafile's ``Weights``, the hub repository's, the
            folder's, or a config's ``load_from``), or a path, URL, hub id or model folder of
            a checkpoint in any format mmbeit converts. Loading is strict.
        device: where the model goes. Defaults to ``'cpu'``.
        revision: hub revision for hub ids (``@rev`` in an id wins).
        **kwargs: merged into the config's ``model`` first, e.g.
            ``backbone=dict(out_indices=(3, 5, 7, 11))`` or ``head=dict(num_classes=10)``.

    Returns:
        The model in eval mode, with ``model.cfg`` (the config), ``model.dataset_meta``
        (``classes``, and ``palette`` for segmentors, when known) and ``model.model_info``
        (the zoo entry, or None).

    Raises:
        ValueError: an unknown name, or ``pretrained=True`` for a model without weights.
    """
    return build_from_source(load_config(model, revision), pretrained, device, revision, **kwargs)


def build_from_source(src: ModelSource,
                      pretrained: Union[bool, str] = False,
                      device: str = 'cpu',
                      revision: Optional[str] = None,
                      **kwargs) -> Any:
    """:func:`get_model` of a resolved :class:`ModelSource`."""
    from .class_names import classes_from_config, resolve_classes
    cfg = src.cfg
    if kwargs:
        cfg.merge_from_dict(dict(model=kwargs))
    if pretrained is True:
        if not src.weights:
            what = (f'model {src.info.name}'
                    if src.info is not None else 'the config (no load_from)')
            raise ValueError(f'pretrained=True but {what} has no weights; pass a checkpoint '
                             'path, URL or hub id as pretrained=')
        weights = src.weights
    elif pretrained is False or pretrained is None:
        weights = None
    elif isinstance(pretrained, (str, os.PathLike)):
        weights = os.fspath(pretrained)
    else:
        raise TypeError(f'pretrained must be a bool, a path, a URL or a hub id, '
                        f'got {type(pretrained).__name__}')

    if weights is None:
        net, meta = build_model(cfg), {}
    else:
        net, meta = build_with_weights(cfg, weights, revision)
    segmentation = task_of(cfg) == 'segmentation'
    from_config = classes_from_config(cfg, with_palette=segmentation) or {}
    num = _num_classes(net)
    classes = resolve_classes(num, [('checkpoint', meta.get('classes')),
                                    ('config', from_config.get('classes'))])
    dataset_meta = dict(classes=tuple(classes)) if classes else {}
    palette = meta.get('palette') if meta.get('classes') == dataset_meta.get('classes') else None
    if palette is None and from_config.get('classes') == dataset_meta.get('classes'):
        palette = from_config.get('palette')
    if palette is not None:
        dataset_meta['palette'] = palette
    net.dataset_meta = dataset_meta
    net.cfg = cfg
    net.model_info = src.info
    return net.to(device).eval()


def _num_classes(model: Any) -> Optional[int]:
    head = getattr(model, 'head', None) or getattr(model, 'decode_head', None)
    num = getattr(head, 'num_classes', None)
    if num is None and getattr(model, 'decode_head', None) is not None:
        num = getattr(model.decode_head, 'out_channels', None)
    return num
