"""Class names of a model: from its checkpoint, its config, a transformers ``config.json``.

:func:`resolve_classes` picks, in order, the names stored with the weights (an
mmengine checkpoint's ``meta.dataset_meta.classes``, mmcls 0.x ``meta.CLASSES``, a
transformers ``config.json`` ``id2label``), then the config's test dataset (its
``classes`` / ``metainfo``, else the dataset class's ``METAINFO``: ImageNet-1k for
mmpretrain's ``ImageNet``, ADE20K for mmseg's ``ADE20KDataset``), then the
ImageNet-22k names for a 21,841-class head. A list of the wrong length is skipped
with a warning, never truncated.
"""
import functools
import json
import os
import os.path as osp
import warnings
from typing import Any, List, Mapping, Optional, Sequence, Tuple

from mmbeit.converters import transformers as hf_format

__all__ = [
    'IMAGENET22K_NUM_CLASSES', 'imagenet1k_class_names', 'imagenet22k_class_names',
    'ade20k_class_names', 'classes_from_config', 'classes_from_checkpoint',
    'classes_from_transformers_config', 'transformers_config_beside', 'resolve_classes'
]

#: Number of ImageNet-22k (fall11) classes, as BEiT's and transformers' 22k heads have.
IMAGENET22K_NUM_CLASSES = 21841
#: File names of transformers weights, beside which a config.json names the labels.
TRANSFORMERS_WEIGHT_FILES = hf_format.WEIGHT_FILES


@functools.lru_cache(maxsize=1)
def imagenet22k_class_names() -> Tuple[str, ...]:
    """The 21,841 ImageNet-22k class names in label order.

    The order is that of the fall11 class folders sorted by WordNet id (what
    torchvision's ``ImageFolder`` gives, and BEiT's 22k head uses); the names are
    the synsets' WordNet lemmas (``'organism, being'``, ...), read from the lists
    that timm ships (``timm.data.ImageNetInfo('imagenet-22k')``).

    Raises:
        ImportError: timm is not installed (``pip install timm``).
    """
    try:
        from timm.data import ImageNetInfo
    except ImportError as e:
        raise ImportError("the ImageNet-22k class names are read from timm's synset lists: "
                          'pip install timm') from e
    info = ImageNetInfo('imagenet-22k')
    return tuple(info.index_to_description(i) for i in range(info.num_classes()))


def imagenet1k_class_names() -> Tuple[str, ...]:
    """The 1,000 ImageNet-1k class names of mmpretrain's ``ImageNet`` dataset."""
    from mmpretrain.datasets.categories import IMAGENET_CATEGORIES
    return tuple(IMAGENET_CATEGORIES)


def ade20k_class_names() -> Tuple[str, ...]:
    """The 150 ADE20K class names of mmseg's ``ADE20KDataset``."""
    from mmseg.datasets import ADE20KDataset

    import mmbeit  # noqa: F401  (compatibility fixes before mmseg is imported)
    return tuple(ADE20KDataset.METAINFO['classes'])


def _dataset_meta_of_type(cfg: Any, dataset_type: str) -> Mapping:
    from mmengine.registry import DATASETS
    scope = cfg.get('default_scope') or 'mmpretrain'
    try:
        with DATASETS.switch_scope_and_registry(scope) as registry:
            dataset_cls = registry.get(dataset_type)
    except Exception:  # noqa: BLE001  (an unregistered dataset type: no names)
        dataset_cls = None
    return getattr(dataset_cls, 'METAINFO', None) or {}


def classes_from_config(cfg: Any, with_palette: bool = False) -> Optional[dict]:
    """``dict(classes=..., palette=...)`` of the config's test (else val, train) dataset:
    its ``classes``, its ``metainfo``, else the dataset class's ``METAINFO``; None if none."""
    for key in ('test_dataloader', 'val_dataloader', 'train_dataloader'):
        loader = cfg.get(key)
        dataset = loader.get('dataset') if loader else None
        if not dataset:
            continue
        meta = dict(dataset.get('metainfo') or {})
        classes = dataset.get('classes') or meta.get('classes')
        if dataset.get('type') == 'ImageNet21k' and not classes:
            return None  # the 21k dataset has no class list; see resolve_classes
        if not classes and dataset.get('type'):
            meta = dict(_dataset_meta_of_type(cfg, dataset['type']))
            classes = meta.get('classes')
        if classes:
            out = dict(classes=tuple(classes))
            if with_palette and meta.get('palette') is not None:
                out['palette'] = [list(c) for c in meta['palette']]
            return out
    return None


def classes_from_checkpoint(checkpoint: Any) -> Optional[dict]:
    """``dict(classes=..., palette=...)`` stored in a loaded mmengine checkpoint
    (``meta.dataset_meta``) or an mmcls 0.x one (``meta.CLASSES``); None if none."""
    meta = checkpoint.get('meta') if isinstance(checkpoint, Mapping) else None
    if not isinstance(meta, Mapping):
        return None
    dataset_meta = meta.get('dataset_meta') or {}
    classes = dataset_meta.get('classes') or meta.get('CLASSES')
    if not classes:
        return None
    out = dict(classes=tuple(classes))
    palette = dataset_meta.get('palette') or meta.get('PALETTE')
    if palette is not None:
        out['palette'] = [list(c) for c in palette]
    return out


def classes_from_transformers_config(config: Mapping) -> Optional[Tuple[str, ...]]:
    """The label names of a transformers ``config.json`` (``id2label`` in id order);
    None when it has none, or only transformers' placeholders ``LABEL_0, LABEL_1, ...``.
    Also reads timm's ``config.json`` (``label_names``)."""
    if config.get('label_names'):  # timm's hub config
        return tuple(config['label_names'])
    labels = hf_format.label_names(config)
    if not labels or all(str(v) == f'LABEL_{i}' for i, v in enumerate(labels)):
        return None
    return tuple(labels)


def transformers_config_beside(source: str) -> Optional[dict]:
    """The parsed transformers ``config.json`` that goes with a weights ``source``: in its
    folder (a model folder, or beside ``pytorch_model.bin`` / ``model.safetensors``), or at
    the same URL folder (``.../resolve/<rev>/config.json``); None when there is none."""
    from mmbeit.utils.checkpoint_io import download_checkpoint, is_url
    source = os.fspath(source)
    if osp.isdir(source):
        path = osp.join(source, hf_format.CONFIG_FILE)
    elif is_url(source):
        import urllib.parse
        parts = urllib.parse.urlsplit(source)
        folder, name = parts.path.rsplit('/', 1)
        if name not in TRANSFORMERS_WEIGHT_FILES:
            return None
        url = urllib.parse.urlunsplit(parts._replace(path=f'{folder}/{hf_format.CONFIG_FILE}'))
        try:
            path = download_checkpoint(url, check_hash=False)
        except Exception:  # noqa: BLE001  (no config.json published there: not an error)
            return None
    elif osp.basename(source) in TRANSFORMERS_WEIGHT_FILES:
        path = osp.join(osp.dirname(osp.abspath(source)), hf_format.CONFIG_FILE)
    else:
        return None
    if not osp.isfile(path):
        return None
    try:
        with open(path, encoding='utf-8') as f:
            config = json.load(f)
    except (OSError, ValueError):
        return None
    return config if isinstance(config, dict) else None


def resolve_classes(num_classes: Optional[int],
                    candidates: Sequence[Tuple[str, Any]]) -> Optional[List[str]]:
    """The first candidate list of class names whose length fits the head.

    Args:
        num_classes: the model's number of outputs; None accepts any length.
        candidates: ``(where from, names or None)`` in order of preference.

    Returns:
        The names, else the ImageNet-22k names for a 21,841-class head, else None.
    """
    for source, classes in candidates:
        if not classes:
            continue
        if num_classes is None or len(classes) == num_classes:
            return list(classes)
        warnings.warn(
            f'{len(classes)} class names from the {source} do not match the '
            f"model's {num_classes} classes; not using them",
            stacklevel=3)
    if num_classes == IMAGENET22K_NUM_CLASSES:
        try:
            return list(imagenet22k_class_names())
        except ImportError as e:
            warnings.warn(f'no ImageNet-22k class names: {e}', stacklevel=3)
    return None
