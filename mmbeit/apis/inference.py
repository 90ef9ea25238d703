"""The model zoo and one-call inference: ``list_models``, ``get_model``, ``inference_model``.

Models are named in ``model-index.yml`` (the metafile of every algorithm it
imports), with mmpretrain's names and calls::

    from mmbeit.apis import get_model, inference_model, list_models

    list_models('beit-base*')
    model = get_model('beit_beit-base-p16_8xb256-amp-coslr-300e_in1k', pretrained=True)
    feats = model.extract_feat(torch.rand(1, 3, 224, 224))
    pred = inference_model('beit-base-p16_beit-pre_8xb128-coslr-100e_in1k', 'demo/bird.JPEG')
    pred['pred_class'], pred['pred_score']

Weights are read safely (no pickled code runs) from paths, URLs (cached) and
transformers model folders, in any checkpoint format :mod:`mmbeit.converters`
knows. Images are file paths or ``uint8`` arrays ``[H, W, 3]`` in BGR order
(as ``cv2.imread`` / ``mmcv.imread`` give them), OpenMMLab's convention.

Where ``model-index.yml`` is found (:func:`model_index_paths`): ``$MMBEIT_MODEL_INDEX``
if set, else the source tree the ``mmbeit`` package sits in (a clone, or
``pip install -e .``), else ``mmbeit/.mim/model-index.yml`` (a wheel built with
``model-index.yml`` and ``configs/`` copied into the package, as mmpretrain
ships its ``.mim``). Config paths in the metafiles are relative to the folder of
the ``model-index.yml`` that imports them.
:func:`register_model_index` adds more index files (another project's zoo).

Tasks: classification configs (mmpretrain scope) return ``pred_label``,
``pred_score``, ``pred_scores`` and ``pred_class``; segmentation configs
(``default_scope='mmseg'``) are handed to :mod:`mmbeit.apis.seg_inference`,
which returns ``pred_mask``. New tasks are one entry of :data:`TASK_INFERENCE`.
"""
import copy
import fnmatch
import functools
import os
import os.path as osp
import warnings
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

__all__ = ['ModelInfo', 'model_index_paths', 'register_model_index', 'load_model_index',
           'list_models', 'get_model_info', 'get_model', 'inference_model', 'task_of',
           'imagenet22k_class_names', 'TASK_INFERENCE']

MODEL_INDEX_ENV = 'MMBEIT_MODEL_INDEX'
MODEL_INDEX_FILE = 'model-index.yml'
_PACKAGE_DIR = osp.dirname(osp.dirname(osp.abspath(__file__)))  # .../mmbeit
#: Number of ImageNet-22k (fall11) classes, as BEiT's and transformers' 22k heads have.
IMAGENET22K_NUM_CLASSES = 21841
#: File names of transformers weights, beside which a config.json names the labels.
TRANSFORMERS_WEIGHT_FILES = ('pytorch_model.bin', 'model.safetensors')

ImageLike = Union[str, np.ndarray]


# --------------------------------------------------------------------------- model index
class ModelInfo(dict):
    """One ``Models`` entry of a metafile, with ``Config`` made absolute.

    Keys as in the metafile (``Name``, ``Config``, ``Weights``, ``Results``,
    ``Metadata``, ``In Collection``, ``Converted From``); attribute access for the
    common ones: ``name``, ``config``, ``weights``, ``results``, ``metafile``.
    """

    name = property(lambda self: self['Name'])
    config = property(lambda self: self.get('Config'))
    weights = property(lambda self: self.get('Weights'))
    results = property(lambda self: self.get('Results') or [])
    metafile = property(lambda self: self.get('_metafile'))

    @property
    def tasks(self) -> List[str]:
        """Tasks of the reported results (e.g. ``['Image Classification']``)."""
        return [r.get('Task') for r in self.results if r.get('Task')]


_EXTRA_INDEXES: List[str] = []
_INDEX_CACHE: Dict[Tuple[str, ...], Dict[str, ModelInfo]] = {}


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
        candidates = [osp.join(repo, MODEL_INDEX_FILE),
                      osp.join(_PACKAGE_DIR, '.mim', MODEL_INDEX_FILE)]
        # a source tree (it has setup.py) wins over a copy left in mmbeit/.mim by a build
        in_tree = osp.isfile(candidates[0]) and osp.isfile(osp.join(repo, 'setup.py'))
        found = [candidates[0]] if in_tree else [p for p in candidates[1:] if osp.isfile(p)]
        if not found and not _EXTRA_INDEXES:
            raise FileNotFoundError(
                f'no {MODEL_INDEX_FILE} found; looked at {candidates}. Install mmbeit from its '
                f'repository (pip install -e .), or set ${MODEL_INDEX_ENV} to the file.')
    return found + [p for p in _EXTRA_INDEXES if p not in found]


def register_model_index(path: str) -> None:
    """Read the models of another ``model-index.yml`` (or a single metafile) too."""
    path = osp.abspath(os.fspath(path))
    if not osp.isfile(path):
        raise FileNotFoundError(f'model index not found: {path}')
    if path not in _EXTRA_INDEXES:
        _EXTRA_INDEXES.append(path)
    _INDEX_CACHE.clear()


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
        name = info.name
        if name.lower() in models:
            raise ValueError(f'model name {name!r} is defined twice: in {path} and in '
                             f'{models[name.lower()].metafile}')
        if info.config and not osp.isabs(info.config):
            info['Config'] = osp.normpath(osp.join(config_root, info.config))
        coll = collections.get(info.get('In Collection'))
        if coll is not None:
            meta = dict(coll.get('Metadata') or {})
            meta.update(info.get('Metadata') or {})
            info['Metadata'] = meta
        info['_metafile'] = path
        models[name.lower()] = info


def load_model_index(paths: Optional[Sequence[str]] = None) -> Dict[str, ModelInfo]:
    """``{lower-case model name: ModelInfo}`` of every metafile the index files import.

    Args:
        paths: ``model-index.yml`` files (or metafiles); :func:`model_index_paths` if None.

    Raises:
        ValueError: a name defined twice, or an entry without a name.
        FileNotFoundError: an imported metafile that does not exist.
    """
    paths = tuple(osp.abspath(p) for p in (paths or model_index_paths()))
    if paths in _INDEX_CACHE:
        return _INDEX_CACHE[paths]
    models: Dict[str, ModelInfo] = {}
    for index in paths:
        root = osp.dirname(index)
        data = _read_yaml(index)
        if 'Import' in data:
            for rel in data['Import'] or []:
                metafile = osp.normpath(osp.join(root, rel))
                if not osp.isfile(metafile):
                    raise FileNotFoundError(f'{index} imports {rel}, which does not exist')
                _read_metafile(metafile, root, models)
        if 'Models' in data:
            _read_metafile(index, root, models)
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


def get_model_info(name: str) -> ModelInfo:
    """The metafile entry of a model name (case-insensitive).

    Raises:
        ValueError: an unknown name; the message suggests close names.
    """
    models = load_model_index()
    info = models.get(name.lower())
    if info is None:
        import difflib
        close = difflib.get_close_matches(name.lower(), list(models), n=5, cutoff=0.4)
        hint = f'; close names: {[models[c].name for c in close]}' if close else ''
        raise ValueError(f'unknown model name {name!r}{hint}. list_models() gives all names.')
    return copy.deepcopy(info)


# --------------------------------------------------------------------------- configs
def _load_config(model: Any) -> Tuple[Any, Optional[ModelInfo]]:
    """A model name, config path or Config -> (a copy of the Config, its ModelInfo or None)."""
    from mmengine.config import Config
    if isinstance(model, Config):
        return copy.deepcopy(model), None
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if path.endswith('.py'):
            if not osp.isfile(path):
                raise FileNotFoundError(f'config file not found: {path}')
            return Config.fromfile(path), None
        info = get_model_info(path)
        if not info.config:
            raise ValueError(f'model {info.name} has no Config in {info.metafile}')
        return Config.fromfile(info.config), info
    raise TypeError(f'model must be a model name, a config path or an mmengine Config, '
                    f'got {type(model).__name__}')


def task_of(cfg: Any) -> str:
    """``'segmentation'`` for mmseg configs (``default_scope='mmseg'``), else ``'classification'``
    for mmpretrain classifiers, else ``'other'`` (e.g. masked image modeling)."""
    if cfg.get('default_scope') == 'mmseg':
        return 'segmentation'
    model_type = str(cfg.model.get('type', ''))
    if model_type.split('.')[-1] in ('ImageClassifier', 'BEiTClassifier', 'TimmClassifier',
                                       'HuggingFaceClassifier'):
        return 'classification'
    return 'other'


def _build(cfg: Any):
    """Build ``cfg.model`` in the config's scope, without loading any pretrained weights."""
    from mmengine.registry import MODELS, DefaultScope
    import mmbeit.models  # noqa: F401  (registers mmbeit.* components)
    model_cfg = copy.deepcopy(cfg.model)
    if cfg.get('data_preprocessor') is not None:
        model_cfg.setdefault('data_preprocessor', copy.deepcopy(cfg.data_preprocessor))
    # weights come from `pretrained`; the backbone's own init_cfg (a pretrain URL) is not
    # loaded, as mmengine only loads it in init_weights(), which is not called here
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope') or 'mmpretrain'):
        return MODELS.build(model_cfg)


# --------------------------------------------------------------------------- class names
@functools.lru_cache(maxsize=1)
def imagenet22k_class_names() -> Tuple[str, ...]:
    """The 21,841 ImageNet-22k class names in label order.

    The order is that of the fall11 class folders sorted by WordNet id (what
    torchvision's ``ImageFolder`` gives, and BEiT's 22k head uses); the names are
    the synsets' WordNet lemmas (``'organism, being'``, ``'benthos'``, ...), read
    from the lists that timm ships (``timm.data.ImageNetInfo('imagenet-22k')``).

    Raises:
        ImportError: timm is not installed (``pip install timm``).
    """
    try:
        from timm.data import ImageNetInfo
    except ImportError as e:
        raise ImportError('the ImageNet-22k class names are read from timm\'s synset lists: '
                          'pip install timm') from e
    info = ImageNetInfo('imagenet-22k')
    return tuple(info.index_to_description(i) for i in range(info.num_classes()))


def _num_classes(model: Any) -> Optional[int]:
    head = getattr(model, 'head', None)
    return getattr(head, 'num_classes', None)


def _classes_from_config(cfg: Any) -> Optional[Sequence[str]]:
    """Class names of the config's test (else val) dataset: its ``classes``, its
    ``metainfo``, else the dataset class's ``METAINFO``."""
    for key in ('test_dataloader', 'val_dataloader', 'train_dataloader'):
        loader = cfg.get(key)
        dataset = loader.get('dataset') if loader else None
        if not dataset:
            continue
        classes = dataset.get('classes') or (dataset.get('metainfo') or {}).get('classes')
        if isinstance(classes, (list, tuple)):
            return list(classes)
        if dataset.get('type') == 'ImageNet21k':
            return None  # the 21k dataset has no class list; see _resolve_classes
        from mmengine.registry import DATASETS
        scope = cfg.get('default_scope') or 'mmpretrain'
        try:
            with DATASETS.switch_scope_and_registry(scope) as registry:
                dataset_cls = registry.get(dataset.get('type', ''))
        except Exception:  # noqa: BLE001  (an unregistered dataset type: no names)
            dataset_cls = None
        classes = (getattr(dataset_cls, 'METAINFO', None) or {}).get('classes')
        if classes:
            return list(classes)
    return None


def _resolve_classes(model: Any, cfg: Any, from_checkpoint: Optional[Sequence[str]]
                     ) -> Optional[List[str]]:
    """The class names for ``model``: the checkpoint's, else the config dataset's, else the
    ImageNet-22k names for a 21,841-class head. Lists of the wrong length are skipped."""
    num = _num_classes(model)
    candidates = [('checkpoint', from_checkpoint), ('config', _classes_from_config(cfg))]
    for source, classes in candidates:
        if classes is None:
            continue
        if num is None or len(classes) == num:
            return list(classes)
        warnings.warn(f'{len(classes)} class names from the {source} do not match the head\'s '
                      f'{num} classes; not using them', stacklevel=3)
    if num == IMAGENET22K_NUM_CLASSES:
        try:
            return list(imagenet22k_class_names())
        except ImportError as e:
            warnings.warn(f'no ImageNet-22k class names: {e}', stacklevel=3)
    return None


def _checkpoint_classes(checkpoint: Any) -> Optional[List[str]]:
    """Class names stored in a loaded mmengine (``meta.dataset_meta``) or mmcls 0.x
    (``meta.CLASSES``) checkpoint."""
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    if not isinstance(meta, dict):
        return None
    classes = (meta.get('dataset_meta') or {}).get('classes') or meta.get('CLASSES')
    return list(classes) if classes else None


def _transformers_config_classes(pretrained: str) -> Optional[List[str]]:
    """id2label of the transformers ``config.json`` next to ``pretrained``: in its folder,
    or at the same URL folder (``.../resolve/<rev>/config.json``); None when absent.

    Only transformers' weight files (``pytorch_model.bin``, ``model.safetensors``) are
    looked beside; other checkpoints carry their names in their meta or have none.
    """
    from mmbeit.utils.checkpoint_io import download_checkpoint, is_url
    if osp.isdir(pretrained):
        path = osp.join(pretrained, 'config.json')
    elif is_url(pretrained):
        import urllib.parse
        parts = urllib.parse.urlsplit(pretrained)
        folder, name = parts.path.rsplit('/', 1)
        if name not in TRANSFORMERS_WEIGHT_FILES:
            return None
        url = urllib.parse.urlunsplit(parts._replace(path=folder + '/config.json'))
        try:
            path = download_checkpoint(url, check_hash=False)
        except Exception:  # noqa: BLE001  (no config.json published there: not an error)
            return None
    elif osp.basename(pretrained) in TRANSFORMERS_WEIGHT_FILES:
        path = osp.join(osp.dirname(osp.abspath(pretrained)), 'config.json')
    else:
        return None
    if not osp.isfile(path):
        return None
    import json
    try:
        with open(path, encoding='utf-8') as f:
            config = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(config, dict) or config.get('model_type', 'beit') != 'beit':
        return None
    id2label = config.get('id2label') or {}
    try:
        labels = [id2label[k] for k in sorted(id2label, key=int)]
    except (TypeError, ValueError):
        return None
    # transformers writes LABEL_0, LABEL_1, ... when a model has no names
    if not labels or all(str(v) == f'LABEL_{i}' for i, v in enumerate(labels)):
        return None
    return labels


# --------------------------------------------------------------------------- get_model
def get_model(model: Any, pretrained: Union[bool, str] = False, device: str = 'cpu',
              **kwargs) -> Any:
    """Build a model of the zoo or of a config, optionally with weights.

    Args:
        model: a name from :func:`list_models`, a config file path or an mmengine Config.
        pretrained: False (the initial weights: nothing is downloaded), True (the
            model's ``Weights`` in the metafile, or a config's ``load_from``), or a path,
            http(s) URL or transformers model folder of a checkpoint in any format
            mmbeit converts. Loading is strict: keys that do not fit raise.
        device: where the model goes. Defaults to ``'cpu'``.
        **kwargs: merged into the config's ``model`` first, e.g.
            ``backbone=dict(out_indices=(3, 5, 7, 11))`` or ``head=dict(num_classes=10)``.

    Returns:
        The model in eval mode, with ``model.cfg`` (the config), ``model.dataset_meta``
        (``classes`` when they are known) and ``model.model_info`` (the metafile
        entry, a :class:`ModelInfo`, or None). Classification models keep mmpretrain's
        ``extract_feat``.

    Raises:
        ValueError: an unknown name, or ``pretrained=True`` for a model without weights.
    """
    cfg, info = _load_config(model)
    if kwargs:
        cfg.merge_from_dict(dict(model=kwargs))
    if pretrained is True:
        pretrained = (info.weights if info is not None else cfg.get('load_from')) or None
        if pretrained is None:
            what = f'model {info.name}' if info is not None else 'the config (no load_from)'
            raise ValueError(f'pretrained=True but {what} has no weights; pass a checkpoint '
                             f'path or URL as pretrained=')
    elif pretrained is False or pretrained is None:
        pretrained = None
    elif not isinstance(pretrained, (str, os.PathLike)):
        raise TypeError(f'pretrained must be a bool, a path or a URL, '
                        f'got {type(pretrained).__name__}')

    if task_of(cfg) == 'segmentation':
        from .seg_inference import init_segmentor
        net = init_segmentor(cfg, os.fspath(pretrained) if pretrained else None, device)
        net.model_info = info
        return net

    net = _build(cfg)
    ckpt_classes = None
    if pretrained is not None:
        from mmbeit.converters import read_checkpoint
        from mmbeit.converters.loading import load_converted_state_dict
        source = os.fspath(pretrained)
        checkpoint = read_checkpoint(source)
        ckpt_classes = _checkpoint_classes(checkpoint)
        if ckpt_classes is None:
            ckpt_classes = _transformers_config_classes(source)
        load_converted_state_dict(net, checkpoint, source=source)  # any format, strict
    classes = _resolve_classes(net, cfg, ckpt_classes)
    net.dataset_meta = dict(classes=tuple(classes)) if classes else {}
    net.cfg = cfg
    net.model_info = info
    return net.to(device).eval()


# --------------------------------------------------------------------------- inference
def _read_image(image: ImageLike) -> np.ndarray:
    """A file path or BGR array -> BGR ``uint8`` array [H, W, 3]."""
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f'image array must be [H, W, 3] (BGR), got shape {image.shape}')
        return image
    if isinstance(image, (str, os.PathLike)):
        path = os.fspath(image)
        if not osp.isfile(path):
            raise FileNotFoundError(f'image not found: {path}')
        import mmcv
        return mmcv.imread(path, channel_order='bgr')
    raise TypeError(f'image must be a file path or a numpy array, got {type(image).__name__}')


def _classification_pipeline(cfg: Any) -> Callable[[dict], dict]:
    """The config's test pipeline, minus image loading (done by :func:`_read_image`)."""
    from mmcv.transforms import Compose
    from mmengine.registry import TRANSFORMS, DefaultScope
    loader = cfg.get('test_dataloader') or cfg.get('val_dataloader')
    if not loader:
        raise ValueError('the config has no test_dataloader (nor val_dataloader) whose pipeline '
                         'says how to prepare an image')
    steps = [copy.deepcopy(t) for t in loader['dataset']['pipeline']
             if not str(t.get('type', '')).split('.')[-1].startswith('LoadImageFrom')]
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope') or 'mmpretrain'):
        return Compose([TRANSFORMS.build(t) for t in steps])


def _classify(model: Any, image: ImageLike) -> dict:
    """Classification of one image; see :func:`inference_model`."""
    import torch
    from mmengine.dataset import pseudo_collate
    img = _read_image(image)
    pipeline = _classification_pipeline(model.cfg)
    data = pipeline(dict(img=img, img_shape=img.shape[:2], ori_shape=img.shape[:2]))
    with torch.no_grad():
        sample = model.test_step(pseudo_collate([data]))[0]
    scores = sample.pred_score.detach().float().cpu().numpy()  # [num_classes]
    label = int(sample.pred_label.item())
    result = dict(pred_label=label, pred_score=float(scores[label]), pred_scores=scores)
    classes = (getattr(model, 'dataset_meta', None) or {}).get('classes')
    result['pred_class'] = classes[label] if classes else None
    return result


def _segment(model: Any, image: ImageLike) -> dict:
    from .seg_inference import inference_segmentor
    return inference_segmentor(model, image)


#: task (see :func:`task_of`) -> ``fn(built model, image) -> dict``
TASK_INFERENCE: Dict[str, Callable[[Any, ImageLike], dict]] = {
    'classification': _classify,
    'segmentation': _segment,
}


def inference_model(model: Any, image: ImageLike, checkpoint: Optional[str] = None,
                    device: str = 'cpu', config: Any = None) -> dict:
    """Predict one image with a model of the zoo, a config or a built model.

    Args:
        model: a name from :func:`list_models` (its metafile weights are loaded unless
            ``checkpoint`` is given), a config path or Config (weights from ``checkpoint``,
            else the config's ``load_from``, else the initial weights with a warning), or a
            model from :func:`get_model`.
        image: file path or BGR ``uint8`` array [H, W, 3].
        checkpoint: weights in any format mmbeit converts (path, URL, transformers folder).
        device: where a model that is built here runs. Defaults to ``'cpu'``.
        config: the config (path or Config) of an exported ``.onnx`` file given as
            ``model``; it runs in onnxruntime (:func:`mmbeit.deployment.build_onnx_model`).

    Returns:
        Classification: dict(pred_label=int, pred_score=float, pred_scores=ndarray
        [num_classes], pred_class=str or None when the class names are unknown).
        Segmentation: dict(pred_mask=int64 ndarray [H, W], seg_logits=...).
    """
    import torch.nn as nn
    if isinstance(model, (str, os.PathLike)) and os.fspath(model).endswith('.onnx'):
        if config is None:
            raise ValueError(f'{os.fspath(model)} is an ONNX file: pass its config=')
        from mmbeit.deployment import build_onnx_model
        model = build_onnx_model(model, config)
    if isinstance(model, nn.Module):
        if not hasattr(model, 'cfg'):
            raise ValueError('the model has no .cfg; build it with mmbeit.apis.get_model')
        if checkpoint is not None:
            warnings.warn('checkpoint is ignored: a built model was passed', stacklevel=2)
        net = model
    else:
        cfg, info = _load_config(model)
        pretrained: Union[bool, str, None] = checkpoint
        if pretrained is None:
            if info is not None and info.weights:
                pretrained = True
            elif cfg.get('load_from'):
                pretrained = cfg.load_from
            else:
                warnings.warn('no checkpoint given: predicting with the initial (untrained) '
                              'weights', stacklevel=2)
        net = get_model(info.name if info is not None else cfg, pretrained=pretrained or False,
                        device=device)
    task = task_of(net.cfg)
    if task not in TASK_INFERENCE:
        raise ValueError(f'no inference for {net.cfg.model.get("type")} models (task {task!r}); '
                         f'inference_model supports {sorted(TASK_INFERENCE)}')
    return TASK_INFERENCE[task](net, image)
